"""The scripts in example/ do what they say, against the real Node client on the mock puppet.

Each example is used two ways: its robot and functions in-process through the test kit,
and the whole script as a separate process with a Node client connected to it.
"""

from __future__ import annotations

import asyncio
import os
import runpy
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import socketio

from MetaPuppet import TestBot
from MetaPuppet.config import new_token
from MetaPuppet.testing import NodeClient, mock_wechat
from MetaPuppet.web_client import connect

from .conftest import free_port

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parent.parent / "example"


def load(name: str) -> dict[str, Any]:
    """An example's globals, without running its `__main__` block."""
    return runpy.run_path(str(EXAMPLES / f"{name}.py"), run_name=f"example_{name}")


async def test_a_simple_bot_reverses_and_greets():
    example = load("a_simple_bot")
    async with mock_wechat(example["MyBot"](name="test")) as wx:
        alice = await wx.contact("Alice")
        await alice.say("stressed")
        assert (await alice.next_reply()).text == "desserts"
        carol = await wx.contact("Carol", friend=False)
        await carol.send_friend_request("hi")
        assert (await carol.next_reply()).text == "Hello Human!"


async def test_hello_human_changes_the_signature():
    example = load("hello_human")
    async with mock_wechat(TestBot()) as wx:
        await asyncio.to_thread(example["hello_human"], wx.server)
        calls = await wx.bot().puppet_calls("contactSelfSignature")
        assert [c["args"] for c in calls] == [["Hello Human!"]]


async def test_hello_world_async_and_sync_parts(capsys):
    example = load("hello_world")
    async with mock_wechat(example["MyBot"](name="test")) as wx:
        alice = await wx.contact("Alice")
        room = await wx.room("Team", members=[alice])
        server = wx.server
        server.debug_mode = True

        # the async functions run on loops of their own threads, as the example runs them
        threads = [
            example["run_coroutine_in_new_thread"](example["async_foo"](server)),
            example["run_coroutine_in_new_thread"](example["async_bar"](server)),
        ]
        await asyncio.to_thread(lambda: [t.join(30) for t in threads])
        members = await asyncio.to_thread(example["foo"], server)
        contacts = await asyncio.to_thread(example["bar"], server)
        me = await asyncio.to_thread(example["get_userself"], server)
        assert {m["id"] for m in members} == {alice.id, wx.bot().user_id}
        assert alice.id in {c["id"] for c in contacts}
        assert me["type"] == "ContactSelf"
        out = capsys.readouterr().out
        assert "async: len(rooms) 1" in out and "sync: len(rooms) 1" in out
        assert "len(members) 2" in out

        await alice.say("$debug text$\nabc")
        assert (await alice.next_reply()).text == "cba"
        _ = room


async def test_custom_server_talks_to_web_clients():
    example = load("custom_server")
    server = example["MyServer"](robot=TestBot(), num_async_threads=1, debug_mode=False)
    async with mock_wechat(server=server, bots=[]) as wx:
        client = socketio.AsyncClient(reconnection=False)
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        client.on("message", inbox.put)
        await connect(wx.server.url, wx.server.token, client=client)
        try:
            await client.emit(
                "message", {"sender": "gui", "type": "SOCKET_INFO", "text": "CONNECTED"}
            )
            welcome = await asyncio.wait_for(inbox.get(), 5)
            assert welcome["text"] == "welcome, gui" and welcome["sender"] == "server"
            assert wx.server.rooms["gui"] == "gui"
            await client.emit("message", {"sender": "gui", "type": "CHAT", "text": "hello"})
            assert (await asyncio.wait_for(inbox.get(), 5))["text"] == "olleh"
        finally:
            await client.disconnect()


async def _run_script(name: str, *, until: str, interrupt: bool = False) -> tuple[int, str]:
    """Run example/<name>.py as a process with a Node client connected to it."""
    port, token = free_port(), new_token()
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAPUPPET_")}
    env |= {"METAPUPPET_PORT": str(port), "METAPUPPET_TOKEN": token, "PYTHONUNBUFFERED": "1"}
    script = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / f"{name}.py"),
        env=env,
        cwd=EXAMPLES.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    node = NodeClient(
        {
            "server": {"token": token},
            "client": {"url": f"http://127.0.0.1:{port}", "bot": "example"},
        }
    )
    output = ""
    try:
        await node.start()
        assert script.stdout is not None
        while until not in output:
            line = await asyncio.wait_for(script.stdout.readline(), 60)
            if not line:
                break
            output += line.decode()
        if interrupt:
            script.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(script.communicate(), 30)
        output += rest.decode()
        return script.returncode or 0, output
    finally:
        if script.returncode is None:
            script.kill()
            await script.wait()
        await node.stop()


async def test_hello_human_script_runs_end_to_end():
    code, output = await _run_script("hello_human", until="signature changed")
    assert code == 0, output
    assert "signature changed to 'Hello Human!'" in output


async def test_hello_world_script_runs_end_to_end():
    code, output = await _run_script("hello_world", until="hello_world done")
    assert code == 0, output
    for line in (
        "async: len(rooms) 0",
        "async: len(contacts)",
        "sync: len(rooms) 0",
        "contact_self MetaPuppet Bot",
        "hello_world done",
    ):
        assert line in output, output


async def test_a_simple_bot_script_serves_until_ctrl_c():
    code, output = await _run_script("a_simple_bot", until="answering messages", interrupt=True)
    assert "bot 'example' connected" in output, output
    assert code == 0, output
