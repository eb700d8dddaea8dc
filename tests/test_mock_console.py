"""`metapuppet mock` as a user runs it: the CLI (a subprocess) against a real server and the
real Node client on the mock puppet, with the config file's address and token."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from MetaPuppet import Config, RobotBase, SweetSocketServer
from MetaPuppet.config import new_token
from MetaPuppet.testing import mock_wechat

from .conftest import free_port

pytestmark = pytest.mark.e2e

READ_ONLY = "read-only-token-0123456789abcdef"


class Echo(RobotBase):
    """Answers every message it sees and greets new friends."""

    async def on_message(self, msg: Any) -> Any:
        if msg.type.name == "Attachment":
            box = await msg.to_file_box()
            return f"got {box.name} ({len(box.data)} bytes)"
        return f"echo: {msg.mention_text}"

    async def on_friendship(self, request: Any) -> Any:
        await request.accept()
        return f"welcome {request.contact.name}"


async def metapuppet_mock(*args: str, config: Path, timeout: float = 60) -> tuple[int, str, str]:
    """Run `metapuppet mock ...` without blocking the loop the server runs on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAPUPPET_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "MetaPuppet",
        "mock",
        *args,
        "--config",
        str(config),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def wx() -> AsyncIterator[Any]:
    config = Config()
    config.raw["web"] = {"tokens": {READ_ONLY: ["read"]}}
    server = SweetSocketServer(
        robot=Echo(), config=config, token=new_token(), port=0, rate_limiter=None
    )
    async with mock_wechat(None, server=server) as kit:
        yield kit


def write_config(tmp_path: Path, token: str, url: str, name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"server": {"token": token}, "client": {"url": url}}))
    return path


async def test_a_mocked_contact_talks_to_the_bot_and_the_answer_is_printed(wx, tmp_path):
    config = write_config(tmp_path, wx.server.token, wx.server.url)
    code, out, err = await metapuppet_mock("say", "--as", "Alice", "hello", "bot", config=config)
    assert code == 0, err
    assert "Alice → bot mock-bot: hello bot" in out
    assert "bot → Alice: echo: hello bot" in out

    # the same Alice again (found by name, not a second contact)
    code, out, err = await metapuppet_mock("say", "--as", "Alice", "again", config=config)
    assert code == 0 and "bot → Alice: echo: again" in out, out + err
    contacts = await wx.server.contacts.find_all(name="Alice")
    assert len(contacts) == 1

    # in a room, mentioning the bot: the room is created with Alice in it
    code, out, err = await metapuppet_mock(
        "say", "--as", "Bob", "--room", "Team", "--mention", "lunch?", config=config
    )
    assert code == 0, err
    assert "Bob in Team → bot mock-bot: lunch?" in out and "bot → Team: echo: lunch?" in out
    room = await wx.server.rooms.find(topic="Team")
    assert room is not None
    names = sorted(c.name for c in await room.member_all())
    assert "Bob" in names

    # without a mention the robot stays quiet in rooms, and the CLI says why
    code, out, err = await metapuppet_mock(
        "say", "--as", "Alice", "--room", "Team", "--wait", "1", "psst", config=config
    )
    assert code == 0, err
    assert "add --mention" in out and "no answer within 1 s" in out
    names = sorted(c.name for c in await room.member_all())
    assert "Alice" in names and "Bob" in names  # Alice joined the existing room

    # a file
    document = tmp_path / "notes.txt"
    document.write_bytes(b"x" * 1234)
    code, out, err = await metapuppet_mock(
        "say", "--as", "Alice", "--file", str(document), config=config
    )
    assert code == 0, err
    assert "[file notes.txt, 1234 bytes]" in out and "got notes.txt (1234 bytes)" in out


async def test_a_friend_request_from_a_new_contact(wx, tmp_path):
    config = write_config(tmp_path, wx.server.token, wx.server.url)
    code, out, err = await metapuppet_mock("friend", "--as", "Carol", "add", "me?", config=config)
    assert code == 0, err
    assert "Carol → bot mock-bot: [friend request] add me?" in out
    assert "bot → Carol: welcome Carol" in out
    friendships = [e for e in wx.bot().events if e.name == "friendship"]
    assert [e.payload.get("hello") for e in friendships] == ["add me?"]


async def test_refusals_name_the_problem(wx, tmp_path):
    reader = write_config(tmp_path, READ_ONLY, wx.server.url, "reader.json")
    code, out, err = await metapuppet_mock("say", "--as", "Alice", "hi", config=reader)
    assert code == 1 and "'send' permission" in err, err
    assert [e for e in wx.bot().events if e.name == "message"] == []

    nowhere = write_config(tmp_path, wx.server.token, f"http://127.0.0.1:{free_port()}", "n.json")
    code, out, err = await metapuppet_mock("say", "--as", "Alice", "hi", config=nowhere)
    assert code == 1 and "cannot reach the server" in err and "metapuppet serve" in err

    good = write_config(tmp_path, wx.server.token, wx.server.url)
    code, out, err = await metapuppet_mock("say", "--as", "Alice", "--mention", "x", config=good)
    assert code == 2 and "--mention needs --room" in err
    code, out, err = await metapuppet_mock("say", "--as", "Alice", "--bot", "nope", config=good)
    assert code == 2 and "say what" in err
    code, out, err = await metapuppet_mock("say", "--as", "A", "--bot", "nope", "x", config=good)
    assert code == 1 and "bot 'nope' is not connected" in err


async def test_a_bot_on_a_real_channel_has_no_mock_console(tmp_path):
    async with mock_wechat(Echo(), puppet="ilink") as wx:
        config = write_config(tmp_path, wx.server.token, wx.server.url)
        code, out, err = await metapuppet_mock("say", "--as", "Alice", "hi", config=config)
        assert code == 1, out
        assert "works only for bots on the mock puppet" in err and "'ilink'" in err
