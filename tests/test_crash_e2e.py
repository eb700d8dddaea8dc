"""A crash duplicates nothing (issue 11 item 11): real processes killed with SIGKILL.

`metapuppet serve` runs as its own process with a robot that answers every message with
its text reversed after a delay (50 ms or 500 ms) and notes each handling in a file; the
Node client runs on the ilink puppet against the iLink simulator, which lives in this test
process and so outlives both kills: it sees every reply the bot really sent. 200 messages
from 20 users arrive while the server, the Node client or both are killed with SIGKILL and
started again. Every message must be handled, no reply may be sent twice, and a reply may
be missing only when the Node client reported it as cut short by its own SIGKILL (a send in
flight at the kill: it may or may not have reached the chat, so it is not made again).
The line printed per run is the sent/handled/lost/duplicated table of issue 11.

Two delivery paths (docs/reliability.md): ``ack`` (``send_budget: false``: the reply
travels in the event's acknowledgement as typed actions, recorded by the Node client
before they run) and ``direct`` (the default iLink account with a send budget: the reply is
an ``act`` request made and checked before the event is acknowledged). Both carry send ids
the Node client deduplicates. `make test` runs all nine; `make test-crash` runs only these,
one at a time, and prints the table.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from MetaPuppet.config import new_token
from MetaPuppet.testing import NodeClient
from MetaPuppet.testing.ilink import ILinkSimulator

from .conftest import free_port

pytestmark = pytest.mark.e2e


USERS, PER_USER = 20, 10  # 200 messages

ROBOT = """
import asyncio, os
from MetaPuppet import RobotBase

DELAY = float(os.environ["CRASH_DELAY_S"])
LOG = os.environ["CRASH_HANDLED"]


class Reverse(RobotBase):
    async def on_message(self, message):
        await asyncio.sleep(DELAY)
        # one write per handling, O_APPEND: what a SIGKILL leaves is whole lines
        fd = os.open(LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, f"{message.text} {message.id}\\n".encode())
        finally:
            os.close(fd)
        return message.text[::-1]


robot = Reverse()
"""


class Rig:
    """The simulator, a `metapuppet serve` process and a Node client, with kill switches."""

    def __init__(self, folder: Path, delay: float, path: str) -> None:
        self.folder = folder
        self.delay = delay
        self.handled_path = folder / "handled.log"
        self.token, self.port = new_token(), free_port()
        self.sim = ILinkSimulator()
        self.server: asyncio.subprocess.Process | None = None
        self.node: NodeClient | None = None
        self.path = path
        self.scanner: asyncio.Task[None] | None = None
        self.account: Any = None
        self.server_log = folder / "server.log"

    async def start(self) -> None:
        config = {
            "server": {"token": self.token, "port": self.port, "data_dir": "data"},
        }
        (self.folder / "config.json").write_text(json.dumps(config))
        (self.folder / "crashbot.py").write_text(ROBOT)
        await self.sim.start()
        self.owner = self.sim.create_user("owner")
        self.scanner = asyncio.create_task(self._scan())
        await self.start_server()
        options: dict[str, Any] = {
            "base_url": self.sim.base_url,
            "cdn_base_url": self.sim.cdn_base_url,
        }
        if self.path == "ack":
            options["send_budget"] = False
        self.node = NodeClient(
            {
                "server": {"token": self.token},
                "client": {
                    "url": f"http://127.0.0.1:{self.port}",
                    "bot": "shop",
                    "reconnect_delay_max_ms": 300,
                },
                "puppet": {"name": "ilink", "options": options},
            },
            log_level="warn",
        )
        await self.node.start()
        await until(lambda: self.account is not None, "the QR login", 60)

    async def _scan(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                qr = await self.sim.wait_qr(timeout=3600)
                if qr.user_id is None:
                    self.sim.scan(self.owner, qr.qrcode)
                    self.account = self.sim.confirm(qr.qrcode)
            await asyncio.sleep(0.05)

    async def start_server(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("METAPUPPET_")}
        env |= {"CRASH_DELAY_S": str(self.delay), "CRASH_HANDLED": str(self.handled_path)}
        log = open(self.server_log, "ab")  # noqa: SIM115 - handed to the process
        try:
            self.server = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "MetaPuppet", "serve", "--config", "config.json",
                "--bot", "crashbot:robot", "--rate-limit", "off",
                cwd=self.folder, env=env, stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()
        await until(lambda: b"MetaPuppet serving" in self.server_log.read_bytes(), "the server", 30)

    async def kill_server(self) -> None:
        assert self.server is not None
        os.killpg(self.server.pid, signal.SIGKILL)
        await self.server.wait()
        # the next start must find its "serving" line, not this one's
        self.server_log.write_bytes(self.server_log.read_bytes().replace(b"serving", b"served"))

    async def kill_node(self) -> None:
        assert self.node is not None
        await self.node.kill()

    def server_tail(self, lines: int = 30) -> str:
        return "\n".join(self.server_log.read_text(errors="replace").splitlines()[-lines:])

    def handled(self) -> list[str]:
        """The text of every handling so far (a handler run again shows twice)."""
        return [line.split(" ")[0] for line in self._lines()]

    def _lines(self) -> list[str]:
        if not self.handled_path.exists():
            return []
        return self.handled_path.read_text().splitlines()

    def in_doubt(self) -> set[str]:
        """Texts whose reply the Node client reported as cut short by its crash (never sent
        again: it may or may not have reached the chat)."""
        assert self.node is not None
        log = self.node.log_path.read_text(errors="replace")
        texts = {f"msg:{m}#0": t for t, m in (line.split(" ") for line in self._lines())}
        return {
            texts[word]
            for line in log.splitlines()
            if "was cut short by a crash" in line
            for word in line.split()
            if word in texts
        }

    async def stop(self) -> None:
        if self.scanner is not None:
            self.scanner.cancel()
        if self.server is not None and self.server.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.server.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.server.wait(), 10)
            except TimeoutError:
                os.killpg(self.server.pid, signal.SIGKILL)
                await self.server.wait()
        if self.node is not None:
            with contextlib.suppress(OSError):  # kept for a look after a failure
                (self.folder / "node.log").write_bytes(self.node.log_path.read_bytes())
            await self.node.stop()
        await self.sim.stop()


async def until(check: Any, what: str, timeout: float, *, fail: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            assert not fail, f"timed out waiting for {what}"
            return
        await asyncio.sleep(0.05)


async def run(tmp_path: Path, delay: float, kill: str, path: str = "ack") -> None:
    rig = Rig(tmp_path, delay, path)
    await rig.start()
    try:
        users = [rig.sim.create_user(f"user{u}") for u in range(USERS)]
        texts = {u.user_id: [f"u{n}:{i}" for i in range(PER_USER)] for n, u in enumerate(users)}
        sent = [t for ts in texts.values() for t in ts]

        async def talk() -> None:
            # one message of every user, a pause, the next round: over about 2 s
            for i in range(PER_USER):
                for user in users:
                    user.send_text(texts[user.user_id][i], bot_id=rig.account.bot_id)
                await asyncio.sleep(0.2)

        talking = asyncio.create_task(talk())
        # kill once a good part is handled and the rest is on its way
        await until(lambda: len(rig.handled()) >= 40, "the first 40 handled", 60)
        if kill in ("server", "both"):
            await rig.kill_server()
        if kill in ("node", "both"):
            await rig.kill_node()
        killed_at = len(rig.handled())
        if kill in ("server", "both"):
            await rig.start_server()
        if kill in ("node", "both"):
            assert rig.node is not None
            await rig.node.start()
        await talking

        def replies() -> Counter[str]:
            return Counter(m.text for u in users for m in u.sent())

        def settled() -> bool:
            """Every message answered, or its reply reported in doubt (never sent again)."""
            answered, doubt = replies(), rig.in_doubt()
            return all(answered[t[::-1]] or t in doubt for t in sent)

        await until(settled, "replies", 60, fail=False)
        await asyncio.sleep(1.0)  # a late duplicate would show up now
        answered = replies()
        runs = Counter(rig.handled())
        lost = [t for t in sent if runs[t] == 0 or answered[t[::-1]] == 0]
        duplicated = [t for t in sent if answered[t[::-1]] > 1]
        again = sum(n - 1 for n in runs.values() if n > 1)
        doubt = rig.in_doubt()
        print(
            f"\ncrash | path {path} | handler {int(delay * 1000)} ms | kill {kill} "
            f"(at {killed_at} handled) | sent {len(sent)} | handled {len(runs)} "
            f"(ran again {again}) | lost {len(lost)} (in doubt, reported: {len(doubt)}) "
            f"| duplicated {len(duplicated)}"
        )
        assert duplicated == [], (duplicated, str(tmp_path))
        assert len(runs) == len(sent), "a message was never handled"
        # a reply whose send the Node client's SIGKILL cut short is in doubt: it may or may
        # not have reached the chat, so it is never sent again; it is reported, never silent
        silent = [t for t in lost if t not in doubt]
        assert silent == [], (silent, str(tmp_path))
    finally:
        await rig.stop()


@pytest.mark.parametrize("kill", ["server", "node", "both"])
async def test_sigkill_mid_stream_50ms_handler_loses_and_duplicates_nothing(tmp_path, kill):
    await run(tmp_path, 0.05, kill)


@pytest.mark.parametrize("kill", ["server", "node", "both"])
async def test_sigkill_mid_stream_500ms_handler_loses_and_duplicates_nothing(tmp_path, kill):
    await run(tmp_path, 0.5, kill)


@pytest.mark.parametrize("kill", ["server", "node", "both"])
async def test_sigkill_mid_stream_with_a_send_budget_duplicates_nothing(tmp_path, kill):
    """The direct path: the reply is made (and checked against the budget) before the ack."""
    await run(tmp_path, 0.05, kill, path="direct")
