"""Issue 11, items 12-14: the data files of both sides.

- 12: the Node client's outbox file stops taking writes (a real file size limit, EFBIG) while
  the server is down: nothing is lost without a word, and everything is delivered once the
  server is back.
- 13: a stop that cannot write the data directory completes, names what it could not save,
  and `metapuppet serve` exits with its own status (3), not a traceback.
- 14: with umask 000, every file an end-to-end run leaves behind is 0600 in a 0700 folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from MetaPuppet import Config, RobotBase, SweetSocketServer
from MetaPuppet._files import private_dir, write_json
from MetaPuppet.cli import EXIT_UNSAVED
from MetaPuppet.config import new_token
from MetaPuppet.storage import SQLiteStorage
from MetaPuppet.storage.base import StorageKey
from MetaPuppet.testing import mock_wechat

from .conftest import free_port

MiB = 1024 * 1024


class Recorder(RobotBase):
    """Remembers every message text it handles; answers with the text reversed if asked."""

    def __init__(self, *, answer: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.texts: list[str] = []
        self.answer = answer

    async def on_message(self, message: Any) -> Any:
        self.texts.append(message.text)
        return message.text[::-1] if self.answer else None


async def until(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


# ------------------------------------------------------------------ 12: a full outbox disk


@pytest.mark.e2e
async def test_a_full_outbox_disk_with_the_server_down_loses_nothing_without_a_word() -> None:
    robot = Recorder()
    async with mock_wechat(robot) as wx:
        bot = wx.bot()
        assert bot.node is not None and bot.node.process is not None
        alice = await wx.contact("Alice")
        # 113 messages, 1.5 s from now: the server is down by then
        await bot.exec(
            "setTimeout(() => { for (let i = 1; i <= 113; i++) "
            "mock.say(args.from, {text: `message ${i} ` + 'x'.repeat(200)}, null) }, 1500); "
            "return true",
            {"from": alice.id},
        )
        outbox = bot.node.outbox_path
        # the outbox file may grow by 16 KiB more: the rest of the 113 (~300 bytes each) fails
        # with EFBIG, a real error from the kernel (no root needed, unlike a small tmpfs)
        limit = outbox.stat().st_size + 16 * 1024
        resource.prlimit(bot.node.process.pid, resource.RLIMIT_FSIZE, (limit, limit))
        await wx.server.stop()
        log = bot.node.log_path
        await until(lambda: "EFBIG" in log.read_text(), "the failing write", 20)
        await asyncio.sleep(2.5)  # all 113 emitted by now
        text = log.read_text()
        assert "ERROR cannot write the outbox file" in text
        assert "are held in memory only" in text
        server = SweetSocketServer(robot=robot, config=Config(), port=0, rate_limiter=None)
        await wx.restart_server(server)
        await until(lambda: len(robot.texts) == 113, "all 113 messages", 60)
        assert sorted(robot.texts, key=lambda t: int(t.split()[1])) == [
            f"message {i} " + "x" * 200 for i in range(1, 114)
        ]
        # the server heard about it too
        errors = [e for e in bot.events if e.payload.get("name") == "OutboxWriteFailed"]
        assert errors and "EFBIG: file too large" in errors[0].payload["message"]
        print(f"\n113 messages, outbox file full, server down: {len(robot.texts)} handled")


@pytest.mark.e2e
async def test_a_stop_that_cannot_save_held_events_says_how_many_are_lost() -> None:
    async with mock_wechat(None) as wx:
        bot = wx.bot()
        assert bot.node is not None and bot.node.process is not None
        alice = await wx.contact("Alice")
        await bot.exec(
            "setTimeout(() => { for (let i = 1; i <= 40; i++) "
            "mock.say(args.from, {text: 'y'.repeat(500)}, null) }, 1000); return true",
            {"from": alice.id},
        )
        outbox = bot.node.outbox_path
        limit = outbox.stat().st_size + 4 * 1024
        resource.prlimit(bot.node.process.pid, resource.RLIMIT_FSIZE, (limit, limit))
        await wx.server.stop()
        await asyncio.sleep(2.5)
        bot.node.process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(bot.node.process.wait(), 30)
        text = bot.node.log_path.read_text()
        # before: exit 0 and not a word about the events that were only in memory
        assert code == 1, text[-2000:]
        lost = [line for line in text.splitlines() if "are lost with this process" in line]
        assert lost, text[-2000:]
        count = int(lost[0].split("outbox: ")[1].split()[0])
        # the 40 messages (group-committed: one write for all, which the limit refuses) and
        # the error events that report the failing writes
        assert 0 < count <= 45 and "EFBIG: file too large" in lost[0]
        print(f"\nstop with a full outbox file: {count} of 40 events named as lost, exit 1")


# ------------------------------------------------------------------ 13: a read-only data dir


async def test_a_stop_that_cannot_write_the_data_dir_completes_and_names_what_it_lost(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data directory should be")
    server = SweetSocketServer(
        config=Config(), token=new_token(), port=0, rate_limiter=None, data_dir=blocker / "data"
    )
    await server.start(host="127.0.0.1", port=0)
    server.client.budgets.user_wrote("bot", "alice", "m1", time.time())
    await server.stop()  # before: OSError out of stop()
    assert [failure.what for failure in server.unsaved] == [
        "the handled event ids",
        "the send budgets",
    ]
    assert server.unsaved[0].path == blocker / "data" / "seen-event-ids.json"
    assert "Not a directory" in server.unsaved[0].error


@pytest.mark.e2e
async def test_serve_with_a_read_only_data_dir_stops_cleanly_and_exits_3(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token, port = "t" * 32, free_port()
    (tmp_path / "config.json").write_text(
        json.dumps({"server": {"token": token, "port": port, "data_dir": "data"}})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAPUPPET_")}
    serve = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "MetaPuppet", "serve", "--config", "config.json"),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert serve.stdout is not None
        line = await asyncio.wait_for(serve.stdout.readline(), 60)
        assert b"MetaPuppet serving" in line
        data.chmod(0o500)  # read-only for its owner...
        # ...which root ignores: then no file may grow either (writes fail with EFBIG)
        if os.geteuid() == 0:
            resource.prlimit(serve.pid, resource.RLIMIT_FSIZE, (0, 0))
        serve.send_signal(signal.SIGTERM)
        _, errors = await asyncio.wait_for(serve.communicate(), 30)
    finally:
        data.chmod(0o700)
        if serve.returncode is None:
            serve.kill()
            await serve.wait()
    text = errors.decode()
    assert serve.returncode == EXIT_UNSAVED == 3, text
    assert "Traceback" not in text
    assert "metapuppet serve: could not save the handled event ids to " in text
    assert str(data / "seen-event-ids.json") in text


# ------------------------------------------------------------------ 14: private files


def _modes(root: Path) -> dict[str, str]:
    """``{path: "dir 0o700" | "file 0o600" | ...}`` for everything under ``root``."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            mode = stat.S_IMODE(Path(folder, name).stat().st_mode)
            found[os.path.join(folder, name)] = f"dir {oct(mode)}"
        for name in files:
            mode = stat.S_IMODE(Path(folder, name).lstat().st_mode)
            found[os.path.join(folder, name)] = f"file {oct(mode)}"
    return found


def test_private_dir_and_write_json_ignore_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        write_json(tmp_path / "a" / "b" / "c" / "file.json", {"x": 1})
        private_dir(tmp_path / "d" / "e")
    finally:
        os.umask(previous)
    assert _modes(tmp_path) == {
        str(tmp_path / "a"): "dir 0o700",
        str(tmp_path / "a" / "b"): "dir 0o700",
        str(tmp_path / "a" / "b" / "c"): "dir 0o700",
        str(tmp_path / "a" / "b" / "c" / "file.json"): "file 0o600",
        str(tmp_path / "d"): "dir 0o700",
        str(tmp_path / "d" / "e"): "dir 0o700",
    }


@pytest.mark.e2e
async def test_every_file_an_end_to_end_run_leaves_is_private_whatever_the_umask(
    tmp_path: Path,
) -> None:
    previous = os.umask(0)
    try:
        server_data = tmp_path / "server-data"
        store = SQLiteStorage(server_data / "dialogs.db")
        robot = Recorder(answer=True, dialog_store=store)
        config = Config()
        config.raw["server"]["max_message_bytes"] = 1 * MiB
        server = SweetSocketServer(
            robot=robot,
            config=config,
            token=new_token(),
            port=0,
            rate_limiter=None,
            data_dir=server_data,
        )
        async with mock_wechat(None, server=server, puppet="ilink") as wx:
            bot = wx.bot()
            assert bot.node is not None
            alice = await wx.contact("Alice")
            await alice.say("hello")  # opens a send window: send-budgets.json
            assert (await alice.next_reply(10)).text == "olleh"
            await store.set(StorageKey(bot.name, alice.id, alice.id), {"step": 1})
            await alice.say("é" * 700_000)  # 1.4 MB of JSON: the dead letters
            await until(lambda: (bot.node.outbox_path.parent / "dead-letters.jsonl").exists(), "dl")
            node_dir = bot.node.config_path.parent
            await bot.node.stop(keep_files=True)
            node_files = _modes(node_dir)
        await store.close()
        server_files = _modes(server_data)
    finally:
        os.umask(previous)
    names = {Path(path).name for path in [*node_files, *server_files]}
    for expected in (
        "config.json",
        "client.log",
        "outbox.jsonl",
        "dead-letters.jsonl",
        "credentials.json",
        "context-tokens.json",
        "seen-event-ids.json",
        "send-budgets.json",
        "dialogs.db",
    ):
        assert expected in names, sorted({**node_files, **server_files})
    loose = {
        path: mode
        for path, mode in {**node_files, **server_files}.items()
        if mode not in ("dir 0o700", "file 0o600")
    }
    assert loose == {}, loose
    print(f"\numask 000: {len(node_files) + len(server_files)} files and folders, all private")
