"""A real server process to attack, and the attacks themselves (``tests/test_exhaustion.py``).

The server runs in its own process so that its memory (``VmRSS``, and the peak ``VmHWM``
from ``/proc``) is measured alone, the way an operator would see it. Run as a module it is
that server: ``python -m tests.hostile '<json settings>'`` prints ``ready <port>``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import struct
import sys
from pathlib import Path
from typing import Any

__all__ = ["RawWebSocket", "ServerProcess", "mib", "raw_handshake"]

ROOT = Path(__file__).resolve().parents[1]


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def _status(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


class ServerProcess:
    """``metapuppet``'s server in a child process, with its token and port."""

    def __init__(self, config: dict[str, Any] | None = None, **settings: Any) -> None:
        self.settings = {"config": config or {}, **settings}
        self.token = "an-attack-test-token-of-some-length"
        self.settings.setdefault("token", self.token)
        self.process: asyncio.subprocess.Process | None = None
        self.port = 0
        self.lines: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss(self) -> int:
        """Resident memory now, in bytes."""
        return _status(self.pid, "VmRSS")

    def peak(self) -> int:
        """The largest resident memory since the start (or :meth:`reset_peak`)."""
        return _status(self.pid, "VmHWM")

    def reset_peak(self) -> None:
        with open(f"/proc/{self.pid}/clear_refs", "w") as refs:
            refs.write("5")

    def log_has(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    async def __aenter__(self) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("METAPUPPET_")}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.hostile",
            json.dumps(self.settings),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self.process.stdout is not None
        while True:
            line = await asyncio.wait_for(self.process.stdout.readline(), 30)
            if not line:
                raise RuntimeError("the server process ended:\n" + "\n".join(self.lines[-20:]))
            text = line.decode(errors="replace").rstrip()
            if text.startswith("ready "):
                self.port = int(text.split()[1])
                break
            self.lines.append(text)
        self._reader = asyncio.get_running_loop().create_task(self._read_log())
        await asyncio.sleep(0.3)  # let the interpreter settle before the first measurement
        return self

    async def _read_log(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.lines.append(line.decode(errors="replace").rstrip())

    async def __aexit__(self, *exc: Any) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


class RawWebSocket:
    """A websocket client written by hand, so a test can stop reading at will (a slow
    consumer) or send what no library would (one huge frame)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls,
        port: int,
        path: str = "/socket.io/?EIO=4&transport=websocket",
        headers: dict[str, str] | None = None,
    ) -> RawWebSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**24)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
            ).encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            writer.close()
            raise ConnectionRefusedError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        return cls(reader, writer)

    @staticmethod
    def header(length: int, opcode: int = 1) -> bytes:
        """A final client frame's header with an all-zero mask (valid, and it leaves the
        payload as it is, so a huge payload can be streamed in pieces)."""
        if length < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        return head + b"\0\0\0\0"

    def frame(self, text: str | bytes, opcode: int = 1) -> bytes:
        payload = text.encode() if isinstance(text, str) else text
        return self.header(len(payload), opcode) + payload

    async def send(self, text: str | bytes) -> None:
        self.writer.write(self.frame(text))
        await self.writer.drain()

    async def recv(self, timeout: float = 5.0) -> str:
        """The next text message (pings are answered on the way)."""
        while True:
            first, second = await asyncio.wait_for(self.reader.readexactly(2), timeout)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
            payload = await self.reader.readexactly(length)
            opcode = first & 0x0F
            if opcode == 8:
                raise ConnectionResetError("the server closed the websocket")
            if opcode == 1:
                text = payload.decode()
                if text == "2":  # Engine.IO ping
                    await self.send("3")
                    continue
                return text

    async def closed(self, timeout: float) -> bool:
        """True once the server has closed the connection (within ``timeout``)."""
        try:
            while True:
                await self.recv(timeout)
        except TimeoutError:  # before OSError: TimeoutError is one
            return False
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            return True

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


async def raw_handshake(
    send: Any, recv: Any, token: str, role: str = "web", bot: str | None = None
) -> dict[str, Any]:
    """The client's side of the handshake over raw Engine.IO frames (``send(text)``,
    ``recv() -> text``, after the open packet); returns the server's answer."""
    from MetaPuppet import protocol

    payload = protocol.auth_payload(token, role, bot=bot)  # type: ignore[arg-type]
    await send("40" + json.dumps(payload))
    answer = await recv()
    if not answer.startswith("40"):
        raise ConnectionRefusedError(answer)
    while not (message := await recv()).startswith('42["challenge"'):
        pass
    challenge = protocol.parse_challenge(json.loads(message[2:])[1])
    handshake = protocol.Handshake(role, bot, payload["nonce"], challenge.nonce)
    if not protocol.proof_matches(protocol.server_proof(token, handshake), challenge.proof):
        raise ConnectionRefusedError("the server could not prove it holds the token")
    proof = protocol.client_proof(token, handshake)
    await send('429["authenticate",' + json.dumps({"proof": proof}) + "]")
    while not (message := await recv()).startswith("439"):
        pass
    result: dict[str, Any] = json.loads(message[3:])[0]
    if result.get("ok") is not True:
        raise ConnectionRefusedError(str(result))
    return result


# --------------------------------------------------------------------------- the server


def _serve(settings: dict[str, Any]) -> None:
    import logging

    from MetaPuppet import Config, RobotBase, SweetSocketServer
    from MetaPuppet.config import _merge  # noqa: PLC2701 - the test's own merge of settings

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(message)s")

    class Blocked(RobotBase):
        """Handles nothing until the test is over: every event stays queued."""

        def __init__(self) -> None:
            super().__init__()
            self.forever = asyncio.Event()

        async def on_message(self, message: Any) -> None:
            await self.forever.wait()

    async def main() -> None:
        config = Config()
        _merge(config.raw, settings["config"])
        robot = Blocked() if settings.get("robot") == "blocked" else None
        server = SweetSocketServer(
            robot=robot,
            config=config,
            token=settings["token"],
            port=0,
            rate_limiter=None,
            max_queued_events=int(settings.get("max_queued_events", 10_000)),
        )
        await server.start(host="127.0.0.1", port=0)
        print(f"ready {server.port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
