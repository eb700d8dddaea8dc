"""The `metapuppet` command as a user runs it: init, doctor, demo, serve (with SIGTERM)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from MetaPuppet.testing import NodeClient

from .conftest import free_port

pytestmark = pytest.mark.e2e


def metapuppet(
    *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAPUPPET_")}
    return subprocess.run(
        [sys.executable, "-m", "MetaPuppet", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_init_writes_a_private_config_with_a_strong_token(tmp_path: Path):
    result = metapuppet("init", "--path", "config.json", "--bot", "shop", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "config.json").read_text())
    assert len(config["server"]["token"]) >= 40
    assert config["server"]["host"] == "127.0.0.1" and config["client"]["bot"] == "shop"
    assert stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == 0o600
    again = metapuppet("init", "--path", "config.json", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_doctor_passes_on_a_good_setup_and_explains_a_weak_token(tmp_path: Path):
    assert metapuppet("init", cwd=tmp_path).returncode == 0
    config = json.loads((tmp_path / "config.json").read_text())
    config["server"]["port"] = free_port()
    (tmp_path / "config.json").write_text(json.dumps(config))
    good = metapuppet("doctor", "--config", "config.json", cwd=tmp_path)
    assert good.returncode == 0, good.stdout
    assert "✓ a token is set" in good.stdout and "✗" not in good.stdout

    config["server"]["token"] = "short"
    (tmp_path / "config.json").write_text(json.dumps(config))
    weak = metapuppet("doctor", "--config", "config.json", cwd=tmp_path)
    assert weak.returncode == 1
    assert "✗ token strength (5 characters)" in weak.stdout and "fix:" in weak.stdout


def test_doctor_knows_the_ilink_puppet_is_part_of_the_client(tmp_path: Path):
    assert metapuppet("init", cwd=tmp_path).returncode == 0
    config = json.loads((tmp_path / "config.json").read_text())
    config["server"]["port"] = free_port()
    config["puppet"] = {"name": "ilink"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = metapuppet("doctor", "--config", "config.json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert "✓ puppet ilink (part of the Node client)" in result.stdout
    assert "npm install ilink" not in result.stdout


def test_serve_refuses_a_public_address_with_a_short_token(tmp_path: Path):
    (tmp_path / "config.json").write_text(
        json.dumps({"server": {"token": "short", "port": free_port()}})
    )
    result = metapuppet(
        "serve", "--config", "config.json", "--host", "0.0.0.0", cwd=tmp_path, timeout=30
    )
    assert result.returncode == 2
    assert "not loopback" in result.stderr and "16 characters" in result.stderr


def test_demo_once_plays_the_script_and_exits_zero():
    started = time.monotonic()
    result = metapuppet("demo", "--once", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4/4 steps passed" in result.stdout
    for line in (
        "Alice → bot: Hello bot!",
        "bot → Alice: Hello Alice!",
        "bot → MetaPuppet Fans",
        "friend request accepted and greeted",
        "bot → Alice: [Image]",
    ):
        assert line in result.stdout, result.stdout
    assert time.monotonic() - started < 60


def test_demo_on_ilink_scans_the_qr_code_and_plays_the_script():
    started = time.monotonic()
    result = metapuppet("demo", "--puppet", "ilink", "--once", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "6/6 steps passed" in out, out
    qr = out.index("scan it with WeChat to log in:")
    # the QR code drawn in the terminal (half blocks), then its link, then the phone's steps
    assert "▀▀▀▀▀▀▀" in out[qr : qr + 4000] and "https://liteapp.weixin.qq.com/q/" in out
    order = [
        "scans it with WeChat",
        "✓ scanned: WeChat asks to confirm",
        "taps “confirm”",
        "✓ logged in as",
        "Alice → bot: Hello bot!",
        "“typing…” shown while the robot worked",
        "bot → Alice: [image]",
        "bot messages left, open until",
        "refused before anything was sent: the user has not written to the bot yet",
        "Room.find: NotSupported",
    ]
    positions = [out.index(line) for line in order]
    assert positions == sorted(positions), out
    assert time.monotonic() - started < 60


SLOW_BOT = textwrap.dedent(
    """
    import asyncio
    import pathlib

    from MetaPuppet import RobotBase

    MARKS = pathlib.Path(__file__).with_name("marks")


    class SlowBot(RobotBase):
        async def on_login(self, bot, user):
            # a mocked contact says something as soon as the bot is logged in
            await self.server.exec_snippet(
                "const id = mock.contact('Alice'); mock.say(id, {text: 'work'}, null); return id",
                bot=bot,
            )

        async def on_message(self, message):
            MARKS.mkdir(exist_ok=True)
            (MARKS / "started").write_text(message.text)
            await asyncio.sleep(2)
            (MARKS / "finished").write_text(message.text)
            return "done"
    """
)


async def test_sigterm_lets_the_running_handler_finish_and_writes_snapshots(tmp_path: Path):
    (tmp_path / "slowbot.py").write_text(SLOW_BOT)
    token, port = "t" * 32, free_port()
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "server": {"token": token, "port": port, "data_dir": "data"},
                "client": {"bot": "worker"},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAPUPPET_")}
    serve = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "MetaPuppet",
        "serve",
        "--bot",
        "slowbot:SlowBot",
        "--config",
        "config.json",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    node = NodeClient(
        {"server": {"token": token}, "client": {"url": f"http://127.0.0.1:{port}", "bot": "worker"}}
    )
    try:
        await node.start()
        marks = tmp_path / "marks"
        deadline = time.monotonic() + 60
        while not (marks / "started").exists():
            assert time.monotonic() < deadline, "the handler never started"
            assert serve.returncode is None
            await asyncio.sleep(0.05)
        assert not (marks / "finished").exists()
        serve.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(serve.communicate(), 30)
        assert serve.returncode == 0, output.decode()
        assert (marks / "finished").read_text() == "work"  # the handler was not cut off
        snapshot = json.loads((tmp_path / "data" / "snapshot-worker.json").read_text())
        assert snapshot["bot"] == "worker"
        assert "Alice" in {c["payload"]["name"] for c in snapshot["contacts"]}
        assert json.loads((tmp_path / "data" / "seen-event-ids.json").read_text())
    finally:
        if serve.returncode is None:
            serve.kill()
            await serve.wait()
        await node.stop()
