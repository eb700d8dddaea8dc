"""``metapuppet serve --reload``: a changed reply is live within 3 s, the Node client keeps
running, and no message sent during the reload is lost (its outbox covers the gap)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from MetaPuppet.config import new_token
from MetaPuppet.testing import NodeClient

from .conftest import free_port

pytestmark = pytest.mark.e2e

COUNT = 60

BOT = textwrap.dedent(
    """
    import os

    from MetaPuppet import RobotBase

    PREFIX = "{prefix}"
    LOG = os.environ["LOG_FILE"]
    FLOW = (
        "const id = mock.contact('Alice'); let n = 0;"
        "const timer = setInterval(() => {{"
        "  if (n >= args.count) {{ clearInterval(timer); return }}"
        "  void mock.say(id, {{text: 'ping ' + n++}}, null)"
        "}}, args.every_ms); return id"
    )


    class Bot(RobotBase):
        async def on_login(self, bot, user):
            # the messages come from inside the Node process, so they keep coming while
            # the Python server restarts
            await self.server.exec_snippet(FLOW, {{"count": {count}, "every_ms": 80}}, bot=bot)

        async def on_message(self, msg):
            await msg.say(PREFIX + ":" + msg.text)
            with open(LOG, "a") as out:
                out.write(PREFIX + " " + msg.text + "\\n")
    """
)


def handled(log: Path) -> list[tuple[str, int]]:
    if not log.exists():
        return []
    lines = [line.split() for line in log.read_text().splitlines() if line.strip()]
    return [(prefix, int(number)) for prefix, _, number in lines]


async def wait_for(check, what: str, timeout: float) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_reload_picks_up_a_changed_reply_within_3_s_and_loses_no_message(tmp_path: Path):
    token, port = new_token(), free_port()
    (tmp_path / "bot.py").write_text(BOT.format(prefix="v1", count=COUNT))
    (tmp_path / "config.json").write_text(
        json.dumps({"server": {"token": token, "port": port, "data_dir": "data"}})
    )
    log = tmp_path / "log.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAPUPPET_")}
    env |= {"LOG_FILE": str(log), "METAPUPPET_RATE_LIMIT": "off"}
    serve = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "MetaPuppet", "serve", "--reload", "--bot", "bot.py:Bot",
        "--config", "config.json", cwd=tmp_path, env=env, start_new_session=True,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert serve.stdout is not None
    output: list[bytes] = []
    stamped: list[str] = []

    async def read_output() -> None:
        assert serve.stdout is not None
        while line := await serve.stdout.readline():
            output.append(line)
            stamped.append(f"{time.monotonic():.2f} {line.decode(errors='replace').rstrip()}")

    reader = asyncio.create_task(read_output())
    node = NodeClient(
        {
            "server": {"token": token},
            "client": {
                "url": f"http://127.0.0.1:{port}",
                "bot": "dev",
                "reconnect_delay_ms": 100,
                "reconnect_delay_max_ms": 200,
            },
            "puppet": {"name": "wechaty-puppet-mock"},
        },
        log_level="warn",
    )
    try:
        await wait_for(lambda: any(b"MetaPuppet serving" in line for line in output), "serve", 30)
        node_pid = None
        await node.start()
        assert node.process is not None
        node_pid = node.process.pid
        await wait_for(lambda: len(handled(log)) >= 10, "the first replies", 60)
        assert {prefix for prefix, _ in handled(log)} == {"v1"}
        changed = time.monotonic()
        (tmp_path / "bot.py").write_text(BOT.format(prefix="v2", count=COUNT))
        await wait_for(lambda: any(p == "v2" for p, _ in handled(log)), "the new reply", 30)
        took = time.monotonic() - changed
        await wait_for(lambda: len({n for _, n in handled(log)}) >= COUNT, "every message", 60)
        numbers = [n for _, n in handled(log)]
        assert sorted(set(numbers)) == list(range(COUNT))  # none lost
        assert len(numbers) == COUNT, "a message was handled twice"
        assert node.process.pid == node_pid and node.returncode is None  # never restarted
        assert any(b"changed; restarting the server" in line for line in output)
        print(f"\nthe new reply was live {took:.2f} s after the file changed ({changed:.2f})")
        print("\n".join(line for line in stamped if "serving" in line or "restart" in line
                        or "stopping" in line))  # fmt: skip
        assert took < 3.0, f"the changed reply took {took:.2f} s:\n" + "\n".join(stamped)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(serve.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(serve.wait(), 15)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(serve.pid, signal.SIGKILL)
            await serve.wait()
        reader.cancel()
        await node.stop()


async def serve_reload(tmp_path: Path) -> tuple[asyncio.subprocess.Process, list[str]]:
    """``metapuppet serve --reload`` in its own process group; its output lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAPUPPET_")}
    serve = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "MetaPuppet", "serve", "--reload", "--bot", "bot.py:Bot",
        "--config", "config.json", cwd=tmp_path, env=env, start_new_session=True,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    lines: list[str] = []

    async def read() -> None:
        assert serve.stdout is not None
        while line := await serve.stdout.readline():
            lines.append(line.decode(errors="replace").rstrip())

    asyncio.get_running_loop().create_task(read())
    return serve, lines


def children_of(pid: int) -> list[int]:
    """The processes of ``pid``'s process group other than itself."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pid and int(entry.name) != pid and fields[0] != "Z":
                    found.append(int(entry.name))
    return found


async def test_a_broken_robot_is_named_and_the_fix_serves_again_and_ctrl_c_ends_all(
    tmp_path: Path,
):
    token, port = new_token(), free_port()
    good = "from MetaPuppet import RobotBase\n\nclass Bot(RobotBase):\n    pass\n"
    (tmp_path / "bot.py").write_text(good)
    (tmp_path / "config.json").write_text(
        json.dumps({"server": {"token": token, "port": port, "data_dir": "data"}})
    )
    serve, lines = await serve_reload(tmp_path)
    try:
        await wait_for(lambda: any("MetaPuppet serving" in x for x in lines), "serve", 30)
        # the next server is already started and waits, importing nothing of the robot yet
        await wait_for(lambda: len(children_of(serve.pid)) == 2, "the waiting child", 10)
        (tmp_path / "bot.py").write_text(good + "oops(\n")
        await wait_for(lambda: any("importing bot failed" in x for x in lines), "the error", 15)
        assert any("SyntaxError" in x and "bot.py line 5" in x for x in lines), lines
        (tmp_path / "bot.py").write_text(good)
        await wait_for(
            lambda: sum("MetaPuppet serving" in x for x in lines) == 2, "serving again", 15
        )
        os.killpg(serve.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert await asyncio.wait_for(serve.wait(), 15) == 0
        assert children_of(serve.pid) == [], "a child outlived the reloader"
        assert not any("Traceback" in x for x in lines), "\n".join(lines)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(serve.pid, signal.SIGKILL)
