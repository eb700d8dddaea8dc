"""Send budgets and channel capabilities, against the public fake link (no Node).

The iLink rules: the user writes first, N bot messages per user message, within a window
after it. Everything here runs on an injected clock.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from MetaPuppet import snippets
from MetaPuppet.budget import SendBudgets
from MetaPuppet.client import PuppetClient
from MetaPuppet.errors import NotSupported, SendWindowClosed, SnippetError
from MetaPuppet.protocol import BotEvent, Capabilities, SendBudget, parse_capabilities
from MetaPuppet.transport import FakePuppetLink, PuppetRegistry
from MetaPuppet.types import Contacts, Message, Room, Rooms

RULES = SendBudget(user_first=True, per_user_message=10, window_s=86_400)
ILINK = Capabilities("ilink", frozenset({"files", "typing"}), RULES)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def user_message(message_id: str, talker: str = "alice@im.wechat", at: float = 0.0) -> BotEvent:
    payload = {
        "id": message_id,
        "talkerId": talker,
        "text": "hi",
        "type": 7,
        "timestamp": int(at * 1000),
        "self": False,
        "roomId": None,
    }
    return BotEvent(f"msg:{message_id}", "bot", "message", payload, at * 1000)


def ilink_client(clock: Clock, tmp_path: Path | None = None, answer: Any = None):
    link = FakePuppetLink("bot", answer=answer, capabilities=ILINK)
    registry = PuppetRegistry()
    registry.attach(link)
    path = None if tmp_path is None else tmp_path / "send-budgets.json"
    return PuppetClient(registry, budgets=SendBudgets(path, clock=clock)), link


# ---------------------------------------------------------------------------- the model


def test_the_user_writes_first():
    budgets = SendBudgets(clock=Clock())
    with pytest.raises(SendWindowClosed, match="has not written") as closed:
        budgets.check("bot", "alice", RULES)
    assert closed.value.closed_at is None and "new message from the user" in str(closed.value)
    assert budgets.check("bot", "alice", SendBudget(user_first=False)) is None


def test_ten_messages_per_user_message_and_a_new_message_brings_ten_more():
    clock = Clock()
    budgets = SendBudgets(clock=clock)
    budgets.user_wrote("bot", "alice", "m1", clock.now)
    for _ in range(10):
        budgets.spent("bot", "alice", budgets.check("bot", "alice", RULES))
    with pytest.raises(SendWindowClosed, match="10 messages were sent"):
        budgets.check("bot", "alice", RULES)
    budgets.user_wrote("bot", "alice", "m2", clock.now + 1)
    assert budgets.check("bot", "alice", RULES).message_id == "m2"
    # another contact is untouched
    with pytest.raises(SendWindowClosed):
        budgets.check("bot", "bob", RULES)


def test_the_window_closes_after_its_time_measured_from_the_users_message():
    clock = Clock()
    budgets = SendBudgets(clock=clock)
    short = SendBudget(per_user_message=10, window_s=3600)
    # a message that arrives late (the bot was down) opens a window from when it was sent
    budgets.user_wrote("bot", "alice", "old", clock.now - 3599)
    assert budgets.check("bot", "alice", short) is not None
    clock.now += 2
    with pytest.raises(SendWindowClosed, match="window of 1 h") as closed:
        budgets.check("bot", "alice", short)
    assert closed.value.closed_at == pytest.approx(clock.now - 1)
    budgets.user_wrote("bot", "alice", "new", clock.now)
    assert budgets.check("bot", "alice", short).message_id == "new"


def test_a_reply_uses_the_window_of_the_message_it_answers():
    clock = Clock()
    budgets = SendBudgets(clock=clock)
    budgets.user_wrote("bot", "alice", "m1", clock.now)
    budgets.user_wrote("bot", "alice", "m2", clock.now + 5)
    assert budgets.check("bot", "alice", RULES, reply_to="m1").message_id == "m1"
    assert budgets.check("bot", "alice", RULES).message_id == "m2"  # proactive: the newest
    budgets.user_wrote("bot", "alice", "m1", clock.now + 9)  # the same message again
    assert budgets.check("bot", "alice", RULES).message_id == "m2"


def test_a_refusal_by_the_channel_closes_the_window_until_the_user_writes():
    clock = Clock()
    budgets = SendBudgets(clock=clock)
    budgets.user_wrote("bot", "alice", "m1", clock.now)
    budgets.refused("bot", "alice", budgets.check("bot", "alice", RULES), "refused (-2)")
    with pytest.raises(SendWindowClosed, match=r"refused \(-2\)"):
        budgets.check("bot", "alice", RULES)
    budgets.user_wrote("bot", "alice", "m2", clock.now)
    budgets.check("bot", "alice", RULES)


def test_budgets_survive_a_restart_in_a_private_file(tmp_path):
    clock = Clock()
    path = tmp_path / "data" / "send-budgets.json"
    old_umask = os.umask(0o022)
    try:
        budgets = SendBudgets(path, clock=clock)
        budgets.user_wrote("bot", "alice", "m1", clock.now)
        for _ in range(9):
            budgets.spent("bot", "alice", budgets.check("bot", "alice", RULES))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = SendBudgets(path, clock=clock)
    again.spent("bot", "alice", again.check("bot", "alice", RULES))  # the 10th
    with pytest.raises(SendWindowClosed):
        again.check("bot", "alice", RULES)
    status = again.status("bot", "alice", RULES)
    assert status["open"] is False and status["sent"] == 10 and status["remaining"] == 0


def test_an_unreadable_budget_file_is_reported_and_replaced(tmp_path, caplog):
    path = tmp_path / "send-budgets.json"
    path.write_text("{not json", encoding="utf-8")
    budgets = SendBudgets(path, clock=Clock())
    with pytest.raises(SendWindowClosed):
        budgets.check("bot", "alice", RULES)
    assert "could not read the send budgets" in caplog.text


# ---------------------------------------------------------------------------- the client


async def test_eleven_messages_after_one_user_message_the_eleventh_never_reaches_the_channel():
    clock = Clock()
    client, link = ilink_client(clock)
    client.note_event(user_message("m1", at=clock.now))
    message = Message(client, "bot", user_message("m1", at=clock.now).payload)
    for i in range(10):
        await message.say(f"answer {i}")
    with pytest.raises(SendWindowClosed):
        await message.say("one too many")
    assert len(link.said()) == 10
    assert {s["replyTo"] for s in link.said()} == {"m1"}
    assert client.send_budget("bot", "alice@im.wechat")["remaining"] == 0


async def test_a_refusal_code_from_the_channel_is_send_window_closed_and_not_retried():
    clock = Clock()
    refusal = {
        "ok": False,
        "error": {
            "kind": "runtime",
            "name": "ILinkError",
            "message": "sendmessage refused: ret=-2",
            "code": -2,
        },
    }
    client, link = ilink_client(clock, answer=lambda e, d: refusal)
    client.note_event(user_message("m1", at=clock.now))
    with pytest.raises(SendWindowClosed, match="code -2") as closed:
        await client.say("alice@im.wechat", "hello")
    assert isinstance(closed.value.__cause__, SnippetError) and closed.value.__cause__.code == -2
    with pytest.raises(SendWindowClosed):
        await client.say("alice@im.wechat", "hello again")
    assert len(link.said()) == 1  # the second send was refused here, without a request


async def test_other_failures_keep_their_own_error():
    failure = {
        "ok": False,
        "error": {
            "kind": "runtime",
            "name": "ILinkError",
            "message": "HTTP 500",
            "code": "http_500",
        },
    }
    clock = Clock()
    client, _ = ilink_client(clock, answer=lambda e, d: failure)
    client.note_event(user_message("m1", at=clock.now))
    with pytest.raises(SnippetError) as caught:
        await client.say("alice@im.wechat", "hello")
    assert caught.value.code == "http_500" and not isinstance(caught.value, SendWindowClosed)


async def test_what_the_channel_cannot_do_fails_at_once_naming_channel_and_capability():
    client, link = ilink_client(Clock())
    started = time.monotonic()
    with pytest.raises(NotSupported, match="'ilink' channel does not support rooms"):
        await Rooms(client).find(topic="Team")
    with pytest.raises(NotSupported, match="rooms"):
        await Room(client, "bot", "team@chatroom").say("hi")
    with pytest.raises(NotSupported, match="contact list"):
        await Contacts(client).find_all()
    with pytest.raises(NotSupported, match="friendships"):
        await client.exec_snippet(snippets.FRIENDSHIP_ACCEPT, {"id": "f1"})
    assert time.monotonic() - started < 1.0
    assert link.calls == []  # nothing was sent
    # an id with an @ is not a room on a channel without rooms: it is a direct message
    client.note_event(user_message("m1", at=Clock().now))
    await client.say("alice@im.wechat", "hi")
    assert link.said()[0]["kind"] == "contact"


async def test_typing_is_a_no_op_on_a_channel_without_it():
    link = FakePuppetLink("bot", answer=lambda e, d: {"ok": True, "result": True})
    registry = PuppetRegistry()
    registry.attach(link)
    client = PuppetClient(registry)
    message = Message(client, "bot", {"id": "m1", "talkerId": "alice"})
    assert await message.typing() is False
    assert link.calls == []
    client, ilink_link = ilink_client(Clock(), answer=lambda e, d: {"ok": True, "result": True})
    message = Message(client, "bot", {"id": "m1", "talkerId": "alice@im.wechat"})
    async with message.typing():
        pass
    assert [(e, d["action"], d["to"], d["on"]) for e, d in ilink_link.calls] == [
        ("act", "typing", "alice@im.wechat", True),
        ("act", "typing", "alice@im.wechat", False),
    ]


def test_capabilities_reported_at_login_replace_those_of_the_connect():
    client, _ = ilink_client(Clock())
    assert client.capabilities("bot").channel == "ilink"
    login = BotEvent("l1", "bot", "login", {"capabilities": {"channel": "mock"}}, 0)
    client.note_event(login)
    assert client.capabilities("bot").channel == "mock" and client.capabilities().can("rooms")
    assert client.send_budget("bot", "alice") is None


def test_capabilities_on_the_wire_are_validated():
    wire = {
        "channel": "ilink",
        "rooms": False,
        "typing": True,
        "send_budget": {"user_first": True, "per_user_message": 10, "window_s": 86400},
    }
    parsed = parse_capabilities(wire)
    assert parsed.send_budget == RULES and not parsed.can("rooms") and parsed.can("typing")
    assert parse_capabilities(parsed.to_wire()) == parsed
    for bad, field in (
        ({"rooms": "yes"}, "rooms"),
        ({"send_budget": {"window_s": -1}}, "window_s"),
        ({"channel": ""}, "channel"),
    ):
        with pytest.raises(Exception, match=field):
            parse_capabilities(bad)
