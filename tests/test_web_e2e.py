"""Web clients and the REST API against a real bot: the Node client on the mock puppet."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from MetaPuppet import MessageType, SweetSocketServer
from MetaPuppet.config import Config, new_token
from MetaPuppet.testing import mock_wechat
from MetaPuppet.web_client import connect

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
READER = "reader-" + "r" * 24


@pytest.fixture
async def wx():
    config = Config()
    config.raw["web"] = {"tokens": {READER: ["read"]}}
    server = SweetSocketServer(config=config, token=new_token(), port=0, rate_limiter=None)
    async with mock_wechat(None, server=server) as kit:  # no robot: only what the test sends
        yield kit


class WebClient:
    """A Python Socket.IO web client collecting the events it is sent."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[dict[str, Any]] = []
        self.sio.on("events", self.events.extend)

    async def connect(self, url: str, token: str) -> WebClient:
        await connect(url, token, client=self.sio, wait_timeout=5)
        return self

    def texts(self) -> list[str]:
        return [e["payload"].get("text", "") for e in self.events if e["name"] == "message"]

    async def wait_texts(self, count: int, timeout: float = 5.0) -> list[str]:
        for _ in range(int(timeout / 0.02)):
            if len(self.texts()) >= count:
                return self.texts()
            await asyncio.sleep(0.02)
        raise AssertionError(f"expected {count} messages, got {self.texts()}")


async def test_web_clients_receive_what_they_subscribed_to_from_the_real_bot(wx):
    alice = await wx.contact("Alice")
    bob = await wx.contact("Bob")
    room = await wx.room("Team", [alice, bob])
    only_alice = await WebClient().connect(wx.server.url, wx.server.token)
    only_room = await WebClient().connect(wx.server.url, READER)
    nothing = await WebClient().connect(wx.server.url, wx.server.token)
    try:
        assert (
            await only_alice.sio.call("subscribe", {"contacts": [alice.id], "events": ["message"]})
        )["ok"]
        assert (await only_room.sio.call("subscribe", {"rooms": room.id}))["ok"]
        await alice.say("from alice")
        await bob.say("from bob")
        await bob.say("bob in the room", room=room)
        await alice.say("alice in the room", room=room)
        assert await only_alice.wait_texts(2) == ["from alice", "alice in the room"]
        assert await only_room.wait_texts(2) == ["bob in the room", "alice in the room"]
        await asyncio.sleep(0.3)
        assert nothing.events == []
        assert only_alice.texts() == ["from alice", "alice in the room"]
        event = only_alice.events[0]
        assert event["bot"] == "mock-bot" and event["payload"]["talker"]["name"] == "Alice"
    finally:
        for client in (only_alice, only_room, nothing):
            await client.sio.disconnect()


async def test_typed_actions_drive_the_real_bot(wx):
    alice = await wx.contact("Alice")
    carol = await wx.contact("Carol", friend=False)
    room = await wx.room("Team", [alice])
    client = await WebClient().connect(wx.server.url, wx.server.token)
    reader = await WebClient().connect(wx.server.url, READER)
    try:
        sent = await client.sio.call(
            "action", {"action": "send_text", "to": alice.id, "text": "hi Alice"}
        )
        assert sent["ok"] is True
        assert (await alice.next_reply(5)).text == "hi Alice"

        data = base64.b64encode(b"report body").decode()
        sent = await client.sio.call(
            "action",
            {"action": "send_file", "to": room.id, "file": {"name": "report.txt", "base64": data}},
        )
        assert sent["ok"] is True and sent["result"]["kind"] == "room"
        received = await (await room.next_reply(5)).file()
        assert received.name == "report.txt" and received.data == b"report body"

        contacts = (await reader.sio.call("action", {"action": "list_contacts", "query": "ali"}))[
            "result"
        ]
        assert [c["name"] for c in contacts["contacts"]] == ["Alice"]
        members = (await reader.sio.call("action", {"action": "room_members", "room": room.id}))[
            "result"
        ]
        assert {m["name"] for m in members["members"]} >= {"Alice"}

        await client.sio.call("subscribe", {"events": ["friendship"]})
        friendship_id = await carol.send_friend_request("add me")
        for _ in range(250):
            if client.events:
                break
            await asyncio.sleep(0.02)
        assert client.events[0]["payload"]["id"] == friendship_id
        refused = await reader.sio.call(
            "action", {"action": "accept_friendship", "id": friendship_id}
        )
        assert refused["ok"] is False and refused["error"] == "permission_denied"
        assert not await wx.bot().friendship_accepted(friendship_id)
        accepted = await client.sio.call(
            "action", {"action": "accept_friendship", "id": friendship_id}
        )
        assert accepted == {"ok": True, "result": {"accepted": friendship_id}}
        assert await wx.bot().friendship_accepted(friendship_id)
    finally:
        await client.sio.disconnect()
        await reader.sio.disconnect()


async def test_rest_api_against_the_real_bot(wx):
    alice = await wx.contact("Alice")
    bob = await wx.contact("Bob")
    room = await wx.room("Team", [alice, bob])
    headers = {"Authorization": f"Bearer {wx.server.token}"}
    url = wx.server.url + "/api"
    async with aiohttp.ClientSession(
        headers=headers, timeout=aiohttp.ClientTimeout(total=10)
    ) as http:
        async with http.get(url + "/contacts?q=bob") as response:
            assert response.status == 200
            assert [c["id"] for c in (await response.json())["contacts"]] == [bob.id]
        async with http.get(url + "/rooms") as response:
            rooms = (await response.json())["rooms"]
            assert [(r["id"], r["topic"], r["member_count"]) for r in rooms] == [
                (room.id, "Team", 3)
            ]
        async with http.get(f"{url}/rooms/{room.id}/members") as response:
            names = {m["name"] for m in (await response.json())["members"]}
            assert {"Alice", "Bob"} <= names
        async with http.post(url + "/send", json={"to": room.id, "text": "hello team"}) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["kind"] == "room"
        reply = await room.next_reply(5)
        assert reply.text == "hello team" and reply.type == MessageType.Text
        async with http.get(url + "/clients") as response:
            clients = (await response.json())["clients"]
            assert [c["bot"] for c in clients if c["role"] == "puppet"] == ["mock-bot"]
        async with http.get(url + "/bots") as response:
            bots = (await response.json())["bots"]
            assert bots[0]["logged_in"] is True and bots[0]["user"]["name"] == "MetaPuppet Bot"
        async with http.get(f"{url}/rooms/{room.id}x/members") as response:
            assert response.status == 404 and (await response.json())["error"] == "not_found"


async def test_the_example_web_client_prints_what_the_server_sends(wx):
    alice = await wx.contact("Alice")
    connected = asyncio.get_running_loop().create_future()

    async def on_socket_info(sid: str, message: dict[str, Any]) -> None:
        if message.get("text") == "CONNECTED" and not connected.done():
            connected.set_result(sid)

    wx.server.process_socket_message = on_socket_info
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "example" / "web_client.py"),
        "--url",
        wx.server.url,
        "--token",
        READER,
        "--seconds",
        "20",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    try:
        sid = await asyncio.wait_for(connected, 20)
        await wx.server.async_send_message_to_client({"text": "hello web client"}, sid=sid)
        await asyncio.sleep(0.5)  # its subscription is acknowledged by now
        await alice.say("hello from alice")
        lines: list[str] = []
        assert process.stdout is not None
        while not any("hello from alice" in line for line in lines):
            line = await asyncio.wait_for(process.stdout.readline(), 15)
            assert line, f"the example exited early: {lines}"
            lines.append(line.decode())
        assert any("connected to" in line for line in lines)
        assert any("message:" in line and "hello web client" in line for line in lines)
        assert any("message: Alice: hello from alice" in line for line in lines)
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), 10)
