"""End to end: the real server, the real Node client, a real Wechaty bot on the mock puppet."""

from __future__ import annotations

import asyncio
import time

import pytest
import socketio

from MetaPuppet import (
    FileBox,
    MessageType,
    PuppetNotConnected,
    RobotBase,
    SnippetCompileError,
    SnippetError,
    SnippetTimeout,
    TestBot,
)
from MetaPuppet.protocol import PROTOCOL_VERSION, auth_payload
from MetaPuppet.testing import mock_wechat
from MetaPuppet.web_client import connect

pytestmark = pytest.mark.e2e

PNG = (
    b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40  # not a valid image, but typed by its name
)


class FileBot(TestBot):
    """TestBot, plus: 'file please' answers with a PNG built in the test."""

    async def on_message(self, message):
        if message.text == "file please":
            return FileBox.from_bytes(PNG, "answer.png")
        return await super().on_message(message)


@pytest.fixture
async def wx():
    async with mock_wechat(FileBot()) as kit:
        yield kit


async def test_direct_message_is_answered(wx):
    alice = await wx.contact("Alice")
    await alice.say("hello")
    reply = await alice.next_reply(timeout=5)
    assert reply.text == "olleh"
    assert reply.type == MessageType.Text


async def test_room_mention_is_answered_in_the_room(wx):
    alice = await wx.contact("Alice")
    bob = await wx.contact("Bob")
    room = await wx.room("Team", members=[alice, bob])
    await alice.say("no mention here", room=room)
    await bob.say("abc", room=room, mention_bot=True)
    reply = await room.next_reply(timeout=5)
    assert reply.text == "cba"
    assert reply.room_id == room.id
    await asyncio.sleep(0.3)
    assert room.pending_replies() == []  # the unmentioned message got no answer


async def test_friendship_is_accepted_then_greeted(wx):
    carol = await wx.contact("Carol", friend=False)
    friendship_id = await carol.send_friend_request("add me")
    greeting = await carol.next_reply(timeout=5)
    assert greeting.text == "Hello Human!"
    assert await wx.bot().friendship_accepted(friendship_id)


async def test_a_file_sent_by_the_robot_arrives_with_the_same_bytes(wx):
    alice = await wx.contact("Alice")
    await alice.say("file please")
    reply = await alice.next_reply(timeout=5)
    assert reply.type == MessageType.Image
    received = await reply.file()
    assert received.name == "answer.png"
    assert received.data == PNG


HOSTILE = [
    "`backticks` and ${process.exit(1)}",
    "'single' \"double\" \\backslash\\ </script>",
    "line1\nline2\r\nline3\u2028\u2029",
    "emoji 🐍🤖👨‍👩‍👧 and 中文",
    "\x00nul and \x7f",
    "x" * (1024 * 1024),
]


@pytest.mark.parametrize(
    "text", HOSTILE, ids=["template", "quotes", "newlines", "emoji", "nul", "1MB"]
)
async def test_hostile_args_arrive_byte_for_byte(wx, text):
    # the Node side measures what it received, so a mangled string cannot round-trip by luck
    result = await wx.server.exec_snippet(
        "return { echo: args.s, length: args.s.length, alive: true }", {"s": text}
    )
    assert result["echo"] == text
    assert result["length"] == len(text.encode("utf-16-le")) // 2
    assert result["alive"] is True


async def test_exec_snippet_results_and_errors(wx):
    server = wx.server
    assert await server.exec_snippet("return args.a + 1", {"a": 1}) == 2
    user = await server.exec_snippet("return bot.currentUser")
    assert user["type"] == "ContactSelf" and user["payload"]["name"] == "MetaPuppet Bot"

    with pytest.raises(SnippetError) as thrown:
        await server.exec_snippet("throw new TypeError('nope: ' + args.why)", {"why": "test"})
    assert thrown.value.kind == "runtime"
    assert thrown.value.name == "TypeError"
    assert thrown.value.message == "nope: test"
    assert thrown.value.stack

    with pytest.raises(SnippetCompileError) as compile_error:
        await server.exec_snippet("return (1 +")
    assert compile_error.value.kind == "compile"

    started = time.monotonic()
    with pytest.raises(SnippetTimeout):
        await server.exec_snippet("await new Promise(() => {})", timeout=1.0)
    assert 0.9 <= time.monotonic() - started < 2.5


async def test_original_names_work_against_the_real_bot(wx):
    alice = await wx.contact("Alice")
    contacts = await wx.server.async_exec_one_wx_function(
        "bot.Contact.findAll", [], need_return=True
    )
    assert any(c["type"] == "Contact" and c["id"] == alice.id for c in contacts)
    assert await wx.server.async_exec_wx_function("return 5", need_return=False) is None


async def _connect(url: str, auth: dict | None) -> socketio.AsyncClient:
    """Connect a Python Socket.IO client; a refusal raises ConnectionError with the reason."""
    client = socketio.AsyncClient(reconnection=False)
    reasons: list[str] = []

    @client.on("connect_error")
    def on_connect_error(data):
        reasons.append(str((data or {}).get("message", data)))

    try:
        await client.connect(url, auth=auth, transports=["websocket"], wait_timeout=5)
    except socketio.exceptions.ConnectionError as exc:
        raise socketio.exceptions.ConnectionError(f"{exc}: {'; '.join(reasons)}") from None
    return client


async def test_wrong_or_missing_token_is_refused_with_a_reason(wx):
    url = wx.server.url
    with pytest.raises(socketio.exceptions.ConnectionError, match="invalid token"):
        await _connect(url, auth_payload("wrong", "web"))
    with pytest.raises(socketio.exceptions.ConnectionError, match="missing auth"):
        await _connect(url, None)
    newer = {**auth_payload(wx.server.token, "web"), "protocol": 99}
    with pytest.raises(
        socketio.exceptions.ConnectionError,
        match=f"client speaks 99.*server speaks {PROTOCOL_VERSION}",
    ):
        await _connect(url, newer)
    # a client of protocol 1 sent its token: refused, readably, and told not to
    older = {"token": wx.server.token, "role": "web", "protocol": 1}
    with pytest.raises(
        socketio.exceptions.ConnectionError, match="client speaks 1.*never send the token"
    ):
        await _connect(url, older)


async def test_a_web_client_cannot_exec_or_send_bot_events(wx):
    web = await connect(wx.server.url, wx.server.token)
    try:
        answer = await web.call("exec", {"code": "process.exit(1)", "args": {}}, timeout=5)
        assert answer["ok"] is False and answer["error"]["kind"] == "forbidden"
        answer = await web.call(
            "event", {"id": "x", "name": "message", "payload": {"text": "fake"}}, timeout=5
        )
        assert answer["ok"] is False and answer["error"]["kind"] == "forbidden"
        # the web client is not a puppet: the only puppet is still the mock bot
        assert wx.server.bots == ["mock-bot"]
        assert await wx.server.exec_snippet("return 'still alive'") == "still alive"
    finally:
        await web.disconnect()


async def test_node_client_with_a_wrong_token_exits_and_says_why():
    from MetaPuppet.testing import NodeClient

    async with mock_wechat(TestBot(), bots=[]) as wx:
        node = NodeClient(
            {"server": {"token": "not-the-token"}, "client": {"url": wx.server.url, "bot": "x"}},
        )
        await node.start()
        try:
            assert node.process is not None
            code = await asyncio.wait_for(node.process.wait(), 30)
            assert code != 0
            assert "invalid token" in node.log_tail()
            assert "not-the-token" not in node.log_tail()
        finally:
            await node.stop()


async def test_exec_without_a_puppet_fails_fast():
    async with mock_wechat(TestBot(), bots=[]) as wx:
        started = time.monotonic()
        with pytest.raises(PuppetNotConnected):
            await wx.server.exec_snippet("return 1")
        assert time.monotonic() - started < 1.0


async def test_two_bot_accounts_each_answer_only_their_own_messages():
    class NamedBot(RobotBase):
        async def on_message(self, message):
            return f"{message.bot} got {message.text}"

    async with mock_wechat(NamedBot(), bots=["one", "two"]) as wx:
        alice_one = await wx.bot("one").contact("Alice")
        alice_two = await wx.bot("two").contact("Alice")
        await alice_one.say("a")
        await alice_two.say("b")
        assert (await alice_one.next_reply(5)).text == "one got a"
        assert (await alice_two.next_reply(5)).text == "two got b"
        await asyncio.sleep(0.3)
        assert alice_one.pending_replies() == [] and alice_two.pending_replies() == []
        replies_two = [
            e for e in wx.bot("two").events if e.name == "message" and e.payload.get("self")
        ]
        assert all("one got" not in e.payload.get("text", "") for e in replies_two)


async def test_debug_command_runs_only_for_listed_admins_in_debug_mode():
    async with mock_wechat(TestBot()) as wx:
        admin = await wx.contact("Admin")
        mallory = await wx.contact("Mallory")
        command = "$debug$\nreturn 40 + 2"
        # debug mode off: even an admin's command is just text (TestBot reverses it)
        wx.server.admin_contacts = {admin.id}
        await admin.say(command)
        assert (await admin.next_reply()).text == command[::-1]
        wx.server.debug_mode = True
        await mallory.say(command)  # not an admin: text, and a warning is logged
        assert (await mallory.next_reply()).text == command[::-1]
        await admin.say(command)
        assert (await admin.next_reply()).text == "$debug$ result: 42"
