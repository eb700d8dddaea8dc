"""Routing: filters, priorities, stop/continue, composed routers, middleware, errors, hooks."""

from __future__ import annotations

import asyncio
import logging
import re
import threading

import pytest

from MetaPuppet import (
    CONTINUE,
    FriendshipType,
    MessageType,
    Rate,
    RobotBase,
    Router,
    TestBot,
    log_calls,
    throttle,
)

from .chat_helpers import Chat
from .conftest import make_event, settle


@pytest.fixture
async def talk(server_factory):
    async def make(robot: RobotBase, **kwargs) -> Chat:
        server = await server_factory(robot=robot, rate_limiter=None, **kwargs)
        return Chat(server)

    return make


class Quiet(RobotBase):
    """Answers nothing by itself, so only routed handlers speak."""

    async def on_message(self, message):
        return None


async def test_each_message_filter_picks_its_messages(talk):
    bot = Quiet()

    @bot.on_message(text=["hi", "hello"])
    async def greeting(message):
        return "text"

    @bot.on_message(contains="天气")
    async def weather(message):
        return "contains"

    @bot.on_message(regex=r"^(\d+)\+(\d+)$")
    async def add(message, match):
        return f"regex {int(match[1]) + int(match[2])}"

    @bot.on_message(room=True, mention_self=True)
    async def mentioned(message):
        return "mentioned in a room"

    @bot.on_message(room="Team", contains="deploy")
    async def team(message):
        return "room by topic"

    @bot.on_message(contact="Bob")
    async def from_bob(message):
        return "contact by name"

    @bot.on_message(type=MessageType.Image)
    async def image(message):
        return "an image"

    bot.rooms_need_mention = False  # filters alone decide here (the room rule is tested below)
    chat = await talk(bot)
    await chat.send("hello")
    await chat.send("今天天气如何")
    await chat.send("2+3")
    await chat.send("anything", talker="bob")
    await chat.send("<img/>", type=6)
    await chat.send("unmatched")
    assert chat.new() == ["text", "contains", "regex 5", "contact by name", "an image"]

    await chat.send("hi everyone", room="r@chatroom")  # a room, no mention
    await chat.send("@Bot\u2005hi", room="r@chatroom", mentionSelf=True)
    await chat.send("please deploy", room="o@chatroom", topic="Other")
    assert chat.new() == ["text"]  # the mention is stripped before text filters look

    await chat.send("deploy now", room="t@chatroom", topic="Team")
    await chat.send("@Bot\u2005what", room="r@chatroom", mentionSelf=True)
    assert chat.new() == ["room by topic", "mentioned in a room"]


async def test_priority_decides_then_registration_order(talk):
    bot = Quiet()
    order: list[str] = []

    @bot.on_message(contains="x")
    async def first_registered(message):
        order.append("first_registered")
        return "first registered"

    @bot.on_message(contains="x", priority=5)
    async def important(message):
        order.append("important")
        return CONTINUE  # not mine after all: pass it on

    @bot.on_message(contains="x")
    async def second_registered(message):
        order.append("second_registered")
        return "second registered"

    chat = await talk(bot)
    await chat.send("x")
    assert order == ["important", "first_registered"]
    assert chat.new() == ["first registered"]


async def test_a_handler_returning_none_still_stops_routing(talk):
    calls: list[str] = []

    class Fallback(RobotBase):
        async def on_message(self, message):
            calls.append("hook")
            return "from the hook"

    bot = Fallback()

    @bot.on_message(text="quiet")
    async def silent(message):
        calls.append("silent")

    @bot.on_message(text="quiet")
    async def never(message):
        calls.append("never")

    chat = await talk(bot)
    await chat.send("quiet")
    assert calls == ["silent"]
    assert chat.new() == []
    await chat.send("other")
    assert calls == ["silent", "hook"]
    assert chat.new() == ["from the hook"]


async def test_unrouted_messages_fall_through_to_the_original_hooks(talk):
    bot = TestBot()  # answers through _process_message: the text reversed

    @bot.command("ping")
    async def ping(message):
        return "pong"

    chat = await talk(bot)
    await chat.send("/ping")
    await chat.send("hello")
    assert chat.new() == ["pong", "olleh"]


async def test_commands_take_prefixes_aliases_and_arguments(talk):
    bot = Quiet()

    @bot.command("help", "h")
    async def help_(message, args, command):
        return f"help[{command}]({args})"

    router = Router(command_prefix=["!", "#"])

    @router.command("roll")
    def roll(message, args):
        return f"rolled {args}"

    @router.command("bare", prefix="")
    async def bare(message):
        return "bare word"

    bot.include_router(router)
    chat = await talk(bot)
    for text in ["/help", "/HELP me  please", "/h x", "/helpme", "/ help", "help", "!roll 2d6",
                 "#roll", "/roll", "bare", "@Bot\u2005/help"]:  # fmt: skip
        await chat.send(text)
    assert chat.new() == [
        "help[help]()",
        "help[HELP](me  please)",
        "help[h](x)",
        "rolled 2d6",
        "rolled ",
        "bare word",
    ]
    await chat.send("@Bot\u2005/help now", room="r@chatroom", mentionSelf=True)
    assert chat.new() == ["help[help](now)"]


async def test_routers_compose_and_middleware_wraps_from_the_outside_in(talk):
    bot = Quiet()
    trail: list[str] = []

    def tracer(name: str):
        async def middleware(call_next, invocation):
            trail.append(f"{name}>")
            result = await call_next()
            trail.append(f"<{name}")
            return result

        return middleware

    outer, inner = Router("outer"), Router("inner")
    bot.middleware(tracer("robot"))
    outer.middleware(tracer("outer"))
    inner.middleware(tracer("inner"))

    @inner.on_message(text="deep")
    async def deep(message):
        trail.append("handler")
        return "from inner"

    outer.include_router(inner)
    bot.include_router(outer)
    chat = await talk(bot)
    await chat.send("deep")
    assert chat.new() == ["from inner"]
    assert trail == ["robot>", "outer>", "inner>", "handler", "<inner", "<outer", "<robot"]

    with pytest.raises(ValueError, match="cycle"):
        inner.include_router(outer)
    with pytest.raises(ValueError, match="already included"):
        bot.include_router(outer)


async def test_middleware_can_stop_an_event(talk):
    bot = Quiet()

    @bot.middleware
    async def members_only(call_next, invocation):
        if invocation.user != "alice":
            return "members only"
        return await call_next()

    @bot.on_message()
    async def anything(message):
        return "welcome"

    chat = await talk(bot)
    await chat.send("hi", talker="alice")
    await chat.send("hi", talker="mallory")
    assert chat.said() == [("alice", "welcome"), ("mallory", "members only")]


async def test_router_error_handlers_answer_errors_and_the_rest_reach_on_error(talk, caplog):
    reported: list[tuple[str, str]] = []

    class Reporting(Quiet):
        async def on_error(self, error, event):
            reported.append((type(error).__name__, event.payload["text"]))

    bot = Reporting()
    friendly = Router("friendly")

    @friendly.error_handler
    async def apologise(error, invocation):
        if isinstance(error, ZeroDivisionError):
            return f"sorry, {invocation.handler.rsplit('.', 1)[-1]} failed"
        return None

    @friendly.on_message(text="divide")
    async def divide(message):
        return str(1 / 0)

    @friendly.on_message(text="crash")
    async def crash(message):
        raise KeyError("bug")

    bot.include_router(friendly)

    @bot.on_message(text="fine")
    async def fine(message):
        return "fine"

    chat = await talk(bot)
    with caplog.at_level(logging.WARNING, logger="MetaPuppet"):
        for text in ("divide", "crash", "fine"):
            await chat.send(text)
    assert chat.new() == ["sorry, divide failed", "fine"]
    assert reported == [("KeyError", "crash")]
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[0] is KeyError]
    assert logged and "message event" in logged[0].getMessage()


async def test_class_level_decorators_and_super_calls(talk):
    class Shop(RobotBase):
        price = 10

        @RobotBase.on_message(contains="价格")
        async def quote(self, message):
            return f"{self.price}元"

        @RobotBase.command("buy")
        def buy(self, message, args):  # a plain def method: thread pool
            return f"bought {args}"

        async def on_message(self, message):
            if message.text == "super":
                return await super().on_message(message)  # the base hook: _process_message
            return "shop hook"

        async def _process_message(self, message, verbose=False):
            return "legacy " + message["payload"]["text"]

    bot = Shop()

    @bot.on_message(text="instance")
    async def on_instance(message):
        return "instance handler"

    chat = await talk(bot)
    for text in ("价格?", "/buy apples", "instance", "super", "other"):
        await chat.send(text)
    assert chat.new() == ["10元", "bought apples", "instance handler", "legacy super", "shop hook"]
    assert Shop().router.routes("message") != bot.router.routes("message")  # per instance


async def test_the_hook_still_works_when_called_directly():
    class Echo(RobotBase):
        async def on_message(self, message):
            return f"echo {message}"

    bot = Echo()
    assert await bot.on_message("x") == "echo x"
    assert await RobotBase.on_message(TestBot(), _FakeMessage("abc")) == "cba"


class _FakeMessage:
    def __init__(self, text: str) -> None:
        self.text = text

    def to_legacy_dict(self):
        return {"payload": {"text": self.text}}


async def test_sync_handlers_run_in_the_pool_while_the_loop_serves_others(talk):
    bot = Quiet()
    threads: list[str] = []
    finished: list[str] = []

    @bot.on_message(text="slow")
    def slow(message):
        threads.append(threading.current_thread().name)
        import time

        time.sleep(0.3)
        finished.append("slow")
        return "slow done"

    @bot.on_message(text="fast")
    async def fast(message):
        finished.append("fast")
        return "fast done"

    chat = await talk(bot)
    await chat.send("slow", talker="alice", wait=False)
    await chat.send("fast", talker="bob", wait=False)
    await asyncio.sleep(0.1)
    assert finished == ["fast"]  # bob was answered while alice's sync handler slept
    await settle(chat.server)
    assert finished == ["fast", "slow"]
    assert threads[0].startswith("metapuppet-handler")


async def test_friendship_and_room_event_handlers(talk):
    bot = Quiet()
    seen: list[str] = []

    @bot.on_friendship(contains="MetaPuppet", type=FriendshipType.Receive)
    async def known(friendship):
        seen.append(f"friend {friendship.contact.id}")
        return "welcome, fellow puppeteer"

    @bot.on_room_join(room="Team")
    async def joined(event):
        return "welcome to the team"

    chat = await talk(bot)
    server = chat.server
    request = {"id": "f1", "type": 2, "contactId": "carol", "hello": "from MetaPuppet"}
    await server.handle_event(make_event("friendship", request))
    stranger = {"id": "f2", "type": 2, "contactId": "dave", "hello": "hi"}
    await server.handle_event(make_event("friendship", stranger))
    await server.handle_event(make_event("room-join", {"roomId": "t@chatroom", "topic": "Team"}))
    await server.handle_event(make_event("room-join", {"roomId": "o@chatroom", "topic": "Other"}))
    await settle(server)
    assert seen == ["friend carol"]
    said = chat.said()
    assert ("carol", "welcome, fellow puppeteer") in said
    assert ("t@chatroom", "welcome to the team") in said
    assert not any(to == "o@chatroom" for to, _ in said)
    # dave's request fell through to the default hook, which accepts friends
    assert any(
        "accept()" in d.get("code", "") and d["args"] == {"id": "f2"} for _, d in chat.puppet.calls
    )


async def test_throttle_middleware_drops_floods_and_warns_once():
    clock_now = [0.0]
    bot = Quiet()
    bot.middleware(
        throttle(Rate(1, per=1.0, burst=2), message="慢一点", clock=lambda: clock_now[0])
    )

    @bot.on_message()
    async def echo(message):
        return message.text

    from MetaPuppet import Config, SweetSocketServer

    server = SweetSocketServer(robot=bot, config=Config(), token="t" * 20, rate_limiter=None)
    server._loop = asyncio.get_running_loop()
    chat = Chat(server)
    for text in ("1", "2", "3", "4"):
        await chat.send(text)
    await chat.send("other user", talker="bob")
    clock_now[0] += 1.0
    await chat.send("5")
    assert chat.said() == [
        ("alice", "1"),
        ("alice", "2"),
        ("alice", "慢一点"),
        ("bob", "other user"),
        ("alice", "5"),
    ]


async def test_log_calls_logs_each_call_with_its_duration(talk, caplog):
    bot = Quiet()
    bot.middleware(log_calls(level=logging.INFO))

    @bot.on_message(text="x")
    async def handled(message):
        return "ok"

    chat = await talk(bot)
    with caplog.at_level(logging.INFO, logger="MetaPuppet.router"):
        await chat.send("x")
    line = next(r.getMessage() for r in caplog.records if "handled" in r.getMessage())
    assert re.search(r"test_router\..*handled handled message event from alice in [\d.]+ ms", line)


async def test_bad_registrations_fail_at_once():
    router = Router()
    with pytest.raises(TypeError, match="string"):
        router.on_message(text=[1, 2])
    with pytest.raises(ValueError, match="one word"):
        router.command("two words")
    with pytest.raises(TypeError, match="async"):

        @router.dialog(trigger="go")
        def not_async(d):
            pass

    with pytest.raises(ValueError, match="starts it"):
        router.dialog()


# --------------------------------------------------------------------------- concurrency


async def test_per_chat_order_holds_under_50_concurrent_chats_with_one_slow_chat(talk):
    bot = Quiet()
    handled: list[tuple[str, int]] = []
    started = asyncio.get_running_loop().time()
    finish_time: dict[str, float] = {}

    @bot.on_message()
    async def record(message):
        who, n = message.talker.id, int(message.text)
        if who == "chat0" and n == 0:
            await asyncio.sleep(0.5)  # one slow handler in one chat
        else:
            await asyncio.sleep(0)
        handled.append((who, n))
        finish_time[who] = asyncio.get_running_loop().time() - started

    chat = await talk(bot)
    for n in range(10):
        for c in range(50):
            await chat.send(str(n), talker=f"chat{c}", wait=False)
    await settle(chat.server)
    assert len(handled) == 500
    for c in range(50):
        assert [n for who, n in handled if who == f"chat{c}"] == list(range(10))
    others = [t for who, t in finish_time.items() if who != "chat0"]
    assert max(others) < 0.4 <= finish_time["chat0"]  # nobody waited for the slow chat


async def test_the_global_cap_bounds_running_handlers(talk):
    bot = Quiet()
    running = 0
    peak = 0

    @bot.on_message()
    async def busy(message):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1

    chat = await talk(bot, max_concurrent_handlers=4)
    for c in range(40):
        await chat.send("x", talker=f"c{c}", wait=False)
    await settle(chat.server)
    assert peak == 4


async def test_a_full_event_queue_makes_new_events_wait_not_vanish(talk):
    bot = Quiet()
    gate = asyncio.Event()
    handled: list[str] = []

    @bot.on_message()
    async def blocked(message):
        await gate.wait()
        handled.append(message.text)

    chat = await talk(bot, max_queued_events=5)
    senders = [asyncio.create_task(chat.send(str(i), talker=f"c{i}", wait=False)) for i in range(8)]
    await asyncio.sleep(0.1)
    assert sum(s.done() for s in senders) == 5  # three events wait for room (their acks too)
    gate.set()
    await asyncio.wait_for(asyncio.gather(*senders), 5)
    await settle(chat.server)
    assert sorted(handled) == [str(i) for i in range(8)]


async def test_in_rooms_the_bot_answers_only_when_mentioned_by_default(talk):
    class Typed(RobotBase):
        async def on_message(self, message):
            return f"hook: {message.mention_text}"

    bot = Typed()

    @bot.command("help")
    async def help_(message):
        return "help"

    @bot.on_message(text="ping")
    async def ping(message):
        return "pong"

    overheard = []

    @bot.on_message(room=True, mention_self=False, priority=10)
    async def lurker(message):  # asked for unmentioned room messages itself
        overheard.append(message.text)
        return CONTINUE

    chat = await talk(bot)
    room = "r@chatroom"
    for text in ("/help", "ping", "hello"):
        await chat.send(text, room=room)  # no mention: quiet
    assert chat.new(room) == []
    assert overheard == ["/help", "ping", "hello"]
    await chat.send("@Bot\u2005/help", room=room, mentionSelf=True)
    await chat.send("@Bot\u2005ping", room=room, mentionSelf=True)
    await chat.send("@Bot\u2005hello", room=room, mentionSelf=True)
    assert chat.new(room) == ["help", "pong", "hook: hello"]
    await chat.send("ping")  # direct messages need no mention
    assert chat.new() == ["pong"]

    bot.rooms_need_mention = False  # the one setting: every room message
    await chat.send("ping", room=room)
    assert chat.new(room) == ["pong"]


async def test_the_original_hook_still_sees_every_room_message(talk):
    seen = []

    class Original(RobotBase):
        async def _process_message(self, message, verbose=False):
            seen.append(message["payload"]["text"])

    chat = await talk(Original())
    await chat.send("no mention here", room="r@chatroom")
    assert seen == ["no mention here"]
