"""Server behaviour with a fake puppet in Python (fast; no Node)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from MetaPuppet import (
    AmbiguousBot,
    FileBox,
    PuppetNotConnected,
    RobotBase,
    SnippetCompileError,
    SnippetError,
    SnippetTimeout,
    TestBot,
)
from MetaPuppet.errors import ProtocolError
from MetaPuppet.protocol import auth_payload, parse_auth, parse_event

from .conftest import FakePuppet, make_event, message_payload, settle


async def test_exec_without_puppet_raises_not_connected_quickly(server_factory):
    server = await server_factory()
    started = time.monotonic()
    with pytest.raises(PuppetNotConnected, match="metapuppet client"):
        await server.exec_snippet("return 1")
    assert time.monotonic() - started < 1.0


async def test_exec_waits_for_a_returning_puppet_within_the_grace_period(server_factory):
    server = await server_factory(connect_grace=2.0)
    puppet = FakePuppet(answer=lambda e, d: {"ok": True, "result": d["args"]["x"]})
    server.attach_puppet(puppet)
    server.detach_puppet(puppet, "network blip")  # it was here: calls wait for it
    asyncio.get_running_loop().call_later(0.2, server.attach_puppet, puppet)
    started = time.monotonic()
    assert await server.exec_snippet("return args.x", {"x": 41}) == 41
    assert 0.15 < time.monotonic() - started < 1.5


async def test_every_call_to_a_bot_never_seen_fails_at_once(server_factory):
    server = await server_factory(connect_grace=5.0)  # the default rate limiter is on
    assert server.rate_limiter is not None
    calls = [
        lambda: server.exec_snippet("return 1"),
        lambda: server.echo({"x": 1}),
        lambda: server.say("alice", "hi"),  # picks the bot for the rate limiter first
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(PuppetNotConnected):
            await call()
        assert time.monotonic() - started < 1.0


async def test_a_puppet_that_does_not_return_fails_after_the_grace_period(server_factory):
    server = await server_factory(connect_grace=0.3)
    puppet = FakePuppet()
    server.attach_puppet(puppet)
    server.detach_puppet(puppet, "gone")
    started = time.monotonic()
    with pytest.raises(PuppetNotConnected):
        await server.exec_snippet("return 1")
    assert 0.25 < time.monotonic() - started < 1.0


async def test_exec_sends_code_args_and_timeout(server_factory):
    server = await server_factory()
    puppet = FakePuppet(answer=lambda e, d: {"ok": True, "result": 2})
    server.attach_puppet(puppet)
    assert await server.exec_snippet("return args.a + 1", {"a": 1}, timeout=2.5) == 2
    assert puppet.calls == [
        ("exec", {"code": "return args.a + 1", "args": {"a": 1}, "timeout_ms": 2500})
    ]


@pytest.mark.parametrize(
    ("error", "exc_type"),
    [
        (
            {"kind": "runtime", "name": "TypeError", "message": "boom", "stack": "at x"},
            SnippetError,
        ),
        (
            {"kind": "compile", "name": "SyntaxError", "message": "1:3 bad", "stack": None},
            SnippetCompileError,
        ),
        (
            {"kind": "timeout", "name": "SnippetTimeout", "message": "late", "stack": None},
            SnippetTimeout,
        ),
    ],
)
async def test_node_errors_become_named_python_errors(server_factory, error, exc_type):
    server = await server_factory()
    server.attach_puppet(FakePuppet(answer=lambda e, d: {"ok": False, "error": error}))
    with pytest.raises(exc_type) as caught:
        await server.exec_snippet("whatever")
    assert caught.value.message == error["message"]
    assert caught.value.kind == error["kind"]


async def test_several_bots_need_a_name(server_factory):
    server = await server_factory()
    server.attach_puppet(FakePuppet("a", answer=lambda e, d: {"ok": True, "result": "a"}))
    server.attach_puppet(FakePuppet("b", answer=lambda e, d: {"ok": True, "result": "b"}))
    with pytest.raises(AmbiguousBot, match="a, b"):
        await server.exec_snippet("return 1")
    assert await server.exec_snippet("return 1", bot="b") == "b"
    with pytest.raises(PuppetNotConnected, match="'c'"):
        await server.exec_snippet("return 1", bot="c")


async def test_direct_message_reply_goes_to_the_talker_on_the_same_bot(server_factory):
    server = await server_factory(robot=TestBot())
    a, b = FakePuppet("a"), FakePuppet("b")
    server.attach_puppet(a)
    server.attach_puppet(b)
    await server.handle_event(make_event("message", message_payload("hello"), bot="b"))
    await settle(server)
    assert a.said() == []
    assert b.said() == [
        {
            "kind": "contact",
            "to": "alice",
            "sayable": {"type": "text", "text": "olleh"},
            "mentions": [],
        }
    ]


async def test_room_message_answered_in_the_room_only_when_mentioned(server_factory):
    server = await server_factory(robot=TestBot())
    puppet = FakePuppet()
    server.attach_puppet(puppet)
    await server.handle_event(
        make_event("message", message_payload("not for me", room="r@chatroom"))
    )
    await server.handle_event(
        make_event("message", message_payload("@Bot\u2005abc", room="r@chatroom", mentionSelf=True))
    )
    await settle(server)
    assert [(s["kind"], s["to"], s["sayable"]["text"]) for s in puppet.said()] == [
        ("room", "r@chatroom", "cba")
    ]


async def test_own_messages_are_not_answered(server_factory):
    server = await server_factory(robot=TestBot())
    puppet = FakePuppet()
    server.attach_puppet(puppet)
    await server.handle_event(make_event("message", message_payload("echo", self=True)))
    await settle(server)
    assert puppet.said() == []


async def test_duplicate_event_ids_are_handled_once(server_factory):
    server = await server_factory(robot=TestBot())
    puppet = FakePuppet()
    server.attach_puppet(puppet)
    event = make_event("message", message_payload("once"))
    await server.handle_event(event)
    await server.handle_event(event)
    await settle(server)
    assert len(puppet.said()) == 1


async def test_events_of_one_chat_are_handled_in_order(server_factory):
    handled: list[tuple[str, str]] = []

    class Slow(RobotBase):
        async def on_message(self, message):
            if message.text == "0" and message.talker.id == "alice":
                await asyncio.sleep(0.2)  # the first message of alice is slow
            handled.append((message.talker.id, message.text))

    server = await server_factory(robot=Slow())
    server.attach_puppet(FakePuppet())
    for i in range(5):
        await server.handle_event(make_event("message", message_payload(str(i), talker="alice")))
        await server.handle_event(make_event("message", message_payload(str(i), talker="bob")))
    await settle(server)
    assert [t for who, t in handled if who == "alice"] == ["0", "1", "2", "3", "4"]
    assert [t for who, t in handled if who == "bob"] == ["0", "1", "2", "3", "4"]
    # bob was not held up behind alice's slow first message
    assert handled.index(("bob", "4")) < handled.index(("alice", "1"))


async def test_sync_handlers_run_off_the_event_loop(server_factory):
    seen: list[str] = []

    class SyncBot(RobotBase):
        def on_message(self, message):  # a plain def: runs in the thread pool
            seen.append(threading.current_thread().name)
            return "ok"

    server = await server_factory(robot=SyncBot())
    puppet = FakePuppet()
    server.attach_puppet(puppet)
    await server.handle_event(make_event("message", message_payload("x")))
    await settle(server)
    assert seen and seen[0].startswith("metapuppet-handler")
    assert puppet.said()[0]["sayable"]["text"] == "ok"


async def test_original_process_message_gets_the_original_dict(server_factory):
    received = []

    class Legacy(RobotBase):
        async def _process_message(self, message, verbose=False):
            received.append(message)
            return {"wx_msg_type": "TEXT", "text": "got " + message["payload"]["text"]}

    server = await server_factory(robot=Legacy())
    puppet = FakePuppet()
    server.attach_puppet(puppet)
    await server.handle_event(make_event("message", message_payload("hi")))
    await settle(server)
    assert received[0]["payload"]["text"] == "hi"
    assert received[0]["payload"]["fromId"] == "alice"
    assert received[0]["sender"] == "wx_fake"
    assert puppet.said()[0]["sayable"] == {"type": "text", "text": "got hi"}


async def test_a_crashing_handler_is_reported_and_others_continue(server_factory):
    errors = []

    class Crashy(RobotBase):
        async def on_message(self, message):
            if message.text == "crash":
                raise ValueError("handler bug")
            return "fine"

        async def on_error(self, error, event):
            errors.append((type(error).__name__, event.name))

    server = await server_factory(robot=Crashy())
    puppet = FakePuppet()
    server.attach_puppet(puppet)
    await server.handle_event(make_event("message", message_payload("crash")))
    await server.handle_event(make_event("message", message_payload("next")))
    await settle(server)
    assert errors == [("ValueError", "message")]
    assert [s["sayable"]["text"] for s in puppet.said()] == ["fine"]


async def test_friendship_is_accepted_then_greeted(server_factory):
    server = await server_factory(robot=TestBot())
    puppet = FakePuppet()
    server.attach_puppet(puppet)
    payload = {
        "id": "f1",
        "type": 2,
        "contactId": "carol",
        "hello": "hi",
        "contact": {"id": "carol"},
    }
    await server.handle_event(make_event("friendship", payload))
    await settle(server)
    codes = [d for e, d in puppet.calls]
    assert "accept()" in codes[0]["code"] and codes[0]["args"] == {"id": "f1"}
    assert puppet.said() == [
        {
            "kind": "contact",
            "to": "carol",
            "sayable": {"type": "text", "text": "Hello Human!"},
            "mentions": [],
        }
    ]


async def test_debug_command_needs_debug_mode_and_an_admin(server_factory):
    class Quiet(RobotBase):
        async def on_message(self, message):
            return None

    answer = {"ok": True, "result": 42}
    server = await server_factory(robot=Quiet(), debug_mode=True)
    server.admin_contacts = {"admin"}
    puppet = FakePuppet(answer=lambda e, d: answer)
    server.attach_puppet(puppet)
    await server.handle_event(
        make_event("message", message_payload("$debug$\nreturn 40 + 2", talker="mallory"))
    )
    await settle(server)
    assert puppet.calls == []  # not an admin: plain text, no code ran
    await server.handle_event(
        make_event("message", message_payload("$debug$\nreturn 40 + 2", talker="admin"))
    )
    await settle(server)
    assert puppet.calls[0][1]["code"] == "return 40 + 2"
    assert "42" in puppet.said()[0]["sayable"]["text"]


async def test_sync_twin_from_the_server_loop_raises_instead_of_deadlocking(server_factory):
    server = await server_factory()
    with pytest.raises(RuntimeError, match="event loop"):
        server.exec_wx_function("return 1", need_return=True)


def test_sync_api_from_a_plain_thread_with_run():
    from MetaPuppet import Config, SweetSocketServer

    server = SweetSocketServer(config=Config(), token="x" * 20, port=0)
    server.run(port=0)
    try:
        server.attach_puppet(
            FakePuppet(answer=lambda e, d: {"ok": True, "result": [{"type": "Room"}]})
        )
        assert server.exec_one_wx_function("bot.Room.findAll", [], need_return=True) == [
            {"type": "Room"}
        ]
        assert server.exec_wx_function("return 1", need_return=False) is None
    finally:
        server.shutdown()


async def test_exec_one_wx_function_sends_the_name_as_data(server_factory):
    server = await server_factory()
    puppet = FakePuppet(answer=lambda e, d: {"ok": True, "result": []})
    server.attach_puppet(puppet)
    await server.async_exec_one_wx_function("bot.Contact.findAll", [{"name": "`x`"}], True)
    sent = puppet.calls[0][1]
    assert sent["args"] == {"path": "bot.Contact.findAll", "params": [{"name": "`x`"}]}
    assert "`x`" not in sent["code"]
    with pytest.raises(ValueError, match="dotted name"):
        await server.async_exec_one_wx_function("bot.x(); process.exit(1); bot.y", [])


def test_auth_payload_validation_names_the_problem():
    good = auth_payload("a-token", "puppet", bot="b")
    assert parse_auth(good).bot == "b"
    with pytest.raises(ProtocolError, match="missing auth"):
        parse_auth(None)
    with pytest.raises(ProtocolError, match="missing protocol version"):
        parse_auth({"role": "puppet"})
    with pytest.raises(ProtocolError, match="the client speaks 1, the server speaks 3"):
        parse_auth({"token": "t", "role": "web", "protocol": 1})
    with pytest.raises(ProtocolError, match="unknown role"):
        parse_auth({**good, "role": "admin"})
    with pytest.raises(ProtocolError, match="'nonce' must be 64 hex"):
        parse_auth({**good, "nonce": "short"})
    with pytest.raises(ProtocolError, match="'key' must be 64 hex"):
        parse_auth({**good, "key": None})
    with pytest.raises(ProtocolError, match="name its bot"):
        parse_auth({**good, "bot": None})
    with pytest.raises(ProtocolError, match="'replace'"):
        parse_auth({**good, "replace": "yes"})


def test_event_validation_names_the_problem():
    with pytest.raises(ProtocolError, match="unknown event name"):
        parse_event({"id": "1", "name": "rm -rf", "payload": {}}, bot="b")
    with pytest.raises(ProtocolError, match="claims bot"):
        parse_event({"id": "1", "name": "message", "bot": "other"}, bot="b")
    with pytest.raises(ProtocolError, match="payload"):
        parse_event({"id": "1", "name": "message", "payload": [1]}, bot="b")


def test_a_received_file_never_saves_outside_the_target(tmp_path):
    box = FileBox.from_bytes(b"secret", "../../etc/passwd")
    target = tmp_path / "downloads"
    saved = box.save(target)
    assert saved.parent == target.resolve()
    assert saved.read_bytes() == b"secret"
    assert not (tmp_path.parent / "etc" / "passwd").exists()


async def test_arguments_that_cannot_be_sent_fail_at_once_naming_the_argument(server_factory):
    from MetaPuppet import Contact

    server = await server_factory(rate_limiter=None)
    puppet = FakePuppet()
    server.attach_puppet(puppet)
    alice = Contact(server, "fake", "alice")
    started = time.monotonic()
    with pytest.raises(TypeError, match=r"args\['who'\]\[1\] cannot be sent.*Contact.*\.id"):
        await server.exec_snippet("return 1", {"who": ["bob", alice]})
    with pytest.raises(TypeError, match=r"args\['n'\].*float"):
        await server.exec_snippet("return 1", {"n": float("nan")})
    assert time.monotonic() - started < 1.0
    assert puppet.calls == []


async def test_views_are_accepted_wherever_an_id_is(server_factory):
    from MetaPuppet import Contact, Room

    server = await server_factory(rate_limiter=None)
    puppet = FakePuppet()
    server.attach_puppet(puppet)
    alice, team = Contact(server, "fake", "alice"), Room(server, "fake", "team@chatroom")
    await server.say(team, "hi", mentions=[alice, "bob"])
    await server.say(alice, "hello")
    assert [(s["kind"], s["to"], s["mentions"]) for s in puppet.said()] == [
        ("room", "team@chatroom", ["alice", "bob"]),
        ("contact", "alice", []),
    ]


def test_the_event_loop_choice_is_checked_and_auto_takes_uvloop_when_installed():
    import asyncio as _asyncio

    from MetaPuppet._loop import loop_factory, run
    from MetaPuppet.errors import ConfigError

    assert loop_factory("asyncio") is _asyncio.new_event_loop
    with pytest.raises(ConfigError, match="server.event_loop must be one of"):
        loop_factory("tornado")

    async def kind() -> str:
        return type(_asyncio.get_running_loop()).__module__

    try:
        import uvloop  # noqa: F401
    except ImportError:
        assert run(kind(), "auto").startswith("asyncio")
        with pytest.raises(ConfigError, match="not installed"):
            loop_factory("uvloop")
    else:
        assert run(kind(), "auto").startswith("uvloop")
    assert run(kind(), "asyncio").startswith("asyncio")
