"""Scripts written for the original project run unchanged (issue 13, "the original tutorial").

The original's users build ``SweetSocketServer(robot=..., num_async_threads=1,
debug_mode=True)``, call ``run()``, sleep while the Node client connects, do one task and
let the main thread end; they subclass the server with their own sugar, and their web
clients connect without a token.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import socketio

from MetaPuppet import Config, SweetSocketServer, TestBot
from MetaPuppet.config import new_token
from MetaPuppet.errors import ConfigError
from MetaPuppet.testing import mock_wechat
from MetaPuppet.web_client import connect

from .conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


async def _script(tmp_path: Path, body: str, port: int, token: str) -> asyncio.subprocess.Process:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAPUPPET_")}
    env |= {"METAPUPPET_PORT": str(port), "METAPUPPET_TOKEN": token, "PYTHONUNBUFFERED": "1"}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(path),
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def _read_until(process: asyncio.subprocess.Process, marker: str) -> str:
    assert process.stdout is not None
    seen = ""
    while marker not in seen:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        if not line:
            raise AssertionError(f"the script ended before {marker!r}:\n{seen}")
        seen += line.decode()
    return seen


ORIGINAL_STYLE = """
    import time
    from MetaPuppet.core.SweetSocketServer import SweetSocketServer
    from MetaPuppet.core.TestBot import TestBot

    a_server = SweetSocketServer(robot=TestBot(name="test"), num_async_threads=1, debug_mode=True)
    a_server.run()
    print("waiting for the client", flush=True)
    time.sleep(0.5)
    print("main thread done", flush=True)
"""


async def test_a_script_whose_main_thread_ends_keeps_answering_until_sigterm(tmp_path):
    port, token = free_port(), new_token()
    script = await _script(tmp_path, ORIGINAL_STYLE, port, token)
    try:
        await _read_until(script, "main thread done")
        await asyncio.sleep(1.5)  # the main thread is gone now
        assert script.returncode is None, "the server died with the script's main thread"
        said = await _as_puppet(port, token, "stressed")
        assert said == "desserts"
        script.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(script.communicate(), 15)
        assert script.returncode == 0, rest.decode()
        assert "Traceback" not in rest.decode() and "Exception ignored" not in rest.decode()
    finally:
        if script.returncode is None:
            script.kill()
            await script.wait()


async def _as_puppet(port: int, token: str, text: str) -> str:
    """Connect as a puppet over a real socket, send one message event, return what the
    server's robot asked the puppet to say (protocol 3: a typed ``say`` action in the
    event's acknowledgement)."""
    client = socketio.AsyncClient(reconnection=False)
    await connect(f"http://127.0.0.1:{port}", token, role="puppet", bot="b", client=client)
    try:
        payload = {"id": "m1", "type": 7, "text": text, "talkerId": "alice", "self": False}
        envelope = {"id": "e1", "bot": "b", "name": "message", "payload": payload, "ts": 1}
        ack = await client.call("event", envelope, timeout=10)
        assert ack["ok"] is True and [a["action"] for a in ack["actions"]] == ["say"], ack
        action = ack["actions"][0]
        assert action["to"] == "alice" and action["send_id"] == "e1#0", action
        sayable: dict[str, Any] = action["sayable"]
        assert sayable["type"] == "text"
        return str(sayable["text"])
    finally:
        await client.disconnect()


async def test_run_coroutine_in_new_thread_finishes_after_the_main_thread_ended(tmp_path):
    body = """
        import asyncio
        from MetaPuppet.core.utils import run_coroutine_in_new_thread

        async def later():
            await asyncio.sleep(1.0)
            print("the coroutine finished", flush=True)

        run_coroutine_in_new_thread(later())
        print("main thread done", flush=True)
    """
    script = await _script(tmp_path, body, free_port(), new_token())
    output, _ = await asyncio.wait_for(script.communicate(), 20)
    assert script.returncode == 0
    assert output.decode().splitlines() == ["main thread done", "the coroutine finished"]


class SugarServer(SweetSocketServer):
    """A subclass in the original tutorial's style: its own sugar, formatted from the
    original's attributes."""

    def send_text_the_old_way(self, text: str, username: str, chat_type: str) -> None:
        ts_code = f"""
            const a_contact = bot.{self.all_chat_type[chat_type.lower()]}.load('{username}')
            await a_contact.say(args_text)
        """
        self.exec_wx_function(ts_code.replace("args_text", json.dumps(text)), need_return=False)


async def test_the_custom_sugar_tutorial_works_against_the_real_bot():
    server = SugarServer(
        robot=TestBot(), config=Config(), token=new_token(), port=0, rate_limiter=None
    )
    assert server.all_chat_type["friend_chat"] == "Contact" and server.all_msg_type["url"]
    async with mock_wechat(server=server) as wx:
        alice = await wx.contact("Alice")
        await asyncio.to_thread(server.send_text_the_old_way, "hi from sugar", alice.id, "friend")
        assert (await alice.next_reply()).text == "hi from sugar"
        # the original's other names are there too
        assert server.server_thread is None  # not started with run()
        assert len(server.async_loops) == server.num_async_threads == len(server.async_threads)
        answer = await asyncio.to_thread(server.send_wx_cmd, "return 40 + 2", need_return=True)
        assert answer == 42


def test_the_original_attributes_are_documented():
    api_doc = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    for name in (
        "all_chat_type",
        "all_msg_type",
        "server_thread",
        "async_loops",
        "create_response_functions",
        "process_wx_chat_message",
        "send_wx_cmd",
    ):
        assert f"`{name}" in api_doc, name


# ---------------------------------------------------------------------------- web clients


def _plain_client(url: str) -> tuple[str | None, list[Any]]:
    """The original's web client: socketio.Client().connect(url), no auth."""
    client = socketio.Client(reconnection=False)
    errors: list[Any] = []
    client.on("connect_error", errors.append)
    try:
        client.connect(url, wait_timeout=5)
    except socketio.exceptions.ConnectionError as exc:
        return str(exc), errors
    client.disconnect()
    return None, errors


async def test_a_token_less_client_is_refused_with_a_reason_it_can_read(server_factory, caplog):
    server = await server_factory()
    refused, errors = await asyncio.to_thread(_plain_client, server.url)
    assert refused is not None
    assert errors and "missing auth" in errors[0]["message"]
    assert "web.legacy_clients" in caplog.text  # the server says how to let it in


async def test_legacy_clients_use_only_the_original_envelope(server_factory):
    config = Config()
    config.raw["web"] = {"legacy_clients": True}
    server = await server_factory(config=config)
    custom: list[dict[str, Any]] = []

    async def process_custom_message(sid: str, message: dict[str, Any]) -> None:
        custom.append(message)
        await server.async_send_message_to_client({"text": "got it"}, sid=sid)

    server.process_custom_message = process_custom_message  # type: ignore[method-assign]
    client = socketio.AsyncClient(reconnection=False)
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    client.on("message", inbox.put)
    await client.connect(server.url, transports=["websocket"])
    try:
        await client.emit("message", {"sender": "gui", "type": "SOCKET_INFO", "text": "CONNECTED"})
        await client.emit("message", {"sender": "gui", "type": "CHAT", "text": "hello"})
        assert (await asyncio.wait_for(inbox.get(), 5))["text"] == "got it"
        assert server.rooms["gui"] == "gui" and custom[0]["text"] == "hello"
        # nothing else: no events, subscriptions, actions or snippets
        assert (await client.call("subscribe", None, timeout=5))["ok"] is False
        assert (await client.call("action", {"action": "list_contacts"}, timeout=5))["ok"] is False
        assert (await client.call("event", {"id": "x", "name": "message"}, timeout=5))[
            "ok"
        ] is False
        assert (await client.call("exec", {"code": "return 1"}, timeout=5))["ok"] is False
    finally:
        await client.disconnect()


async def test_legacy_clients_are_refused_on_a_public_address():
    config = Config()
    config.raw["web"] = {"legacy_clients": True}
    server = SweetSocketServer(config=config, token=new_token(), port=0)
    with pytest.raises(ConfigError, match="legacy_clients.*not loopback"):
        await server.start(host="0.0.0.0", port=0)


def test_a_config_path_is_accepted(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"server": {"token": "x" * 32, "port": 9123}}), encoding="utf-8")
    server = SweetSocketServer(robot=TestBot(), config=str(path))
    assert server.port == 9123 and server.token == "x" * 32
    with pytest.raises(ConfigError, match="does not exist"):
        SweetSocketServer(config=tmp_path / "missing.json")
