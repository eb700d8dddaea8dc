"""Dialogs through the server with a fake puppet: steps, retries, cancel, timeout,
re-routing, side effects, restarts (SQLite and Redis) and two servers on one Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from MetaPuppet import (
    DialogReplayError,
    MemoryStorage,
    RobotBase,
    Router,
    SideEffectFailed,
    SideEffectInterrupted,
    UnexpectedAnswer,
)
from MetaPuppet.storage import RedisStorage, StorageKey

from .chat_helpers import Chat, redis_url, shared_store  # noqa: F401 - fixtures
from .conftest import FakePuppet, settle

ASK_COUNT = "您需要累加几个数字?"


class Fallback(RobotBase):
    """Says what it got when nothing else (no handler, no dialog) took a message."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.errors: list[BaseException] = []

    async def on_message(self, message):
        return f"fallback: {message.text}"

    async def on_error(self, error, event):
        self.errors.append(error)


def accumulator_bot(store=None, **options) -> Fallback:
    bot = Fallback(dialog_store=store)

    @bot.command("help")
    async def help_(message):
        return "help text"

    @bot.dialog(trigger="开始", name="accumulator", **options)
    async def accumulator(d):
        n = await d.ask_int(ASK_COUNT, retry="请输入整数")
        total = 0
        for i in range(n):
            total += await d.ask_int(f"请输入第{i + 1}个数字, 目前累加和:{total}")
        await d.say(f"累加结束,累加和: {total}")

    return bot


@pytest.fixture
async def serve(server_factory):
    async def make(robot: RobotBase, **kwargs) -> Chat:
        return Chat(await server_factory(robot=robot, rate_limiter=None, **kwargs))

    return make


async def test_the_accumulator_runs_to_the_end(serve):
    chat = await serve(accumulator_bot())
    await chat.send("开始")
    assert chat.new() == [ASK_COUNT]
    await chat.send("two")
    assert chat.new() == ["请输入整数"]
    await chat.send(" 2 ")
    assert chat.new() == ["请输入第1个数字, 目前累加和:0"]
    await chat.send("5")
    assert chat.new() == ["请输入第2个数字, 目前累加和:5"]
    await chat.send("7")
    assert chat.new() == ["累加结束,累加和: 12"]
    await chat.send("7")
    assert chat.new() == ["fallback: 7"]  # the dialog is over


async def test_a_wrong_answer_without_retry_is_routed_as_a_new_message(serve):
    chat = await serve(accumulator_bot())
    await chat.send("开始")
    await chat.send("1")
    chat.new()
    await chat.send("/help")  # not a number, and this question has no retry text
    assert chat.new() == ["help text"]
    await chat.send("5")
    assert chat.new() == ["fallback: 5"]


async def test_unexpected_answer_ends_the_dialog_says_its_reply_and_reroutes(serve):
    bot = Fallback()

    @bot.dialog(trigger="点餐")
    async def order(d):
        dish = await d.ask("吃什么?")
        if dish not in ("面", "饭"):
            raise UnexpectedAnswer(f"没有{dish},先不点了")
        await d.say(f"好的,{dish}")

    chat = await serve(bot)
    await chat.send("点餐")
    await chat.send("披萨")
    assert chat.new() == ["吃什么?", "没有披萨,先不点了", "fallback: 披萨"]


async def test_yes_no_and_choice_questions_retry_then_give_up(serve):
    bot = Fallback()

    @bot.dialog(trigger="订")
    async def book(d):
        size = await d.ask_choice("大杯还是小杯?", ["大杯", "小杯"], retry="请回答 大杯 或 小杯")
        ok = await d.ask_yes_no(f"确认{size}?", retry="请回答 是 或 否", attempts=1)
        return f"{size}: {'已下单' if ok else '已放弃'}"

    chat = await serve(bot)
    for text in ("订", "中杯", "大杯", "也许", "Yes"):
        await chat.send(text)
    assert chat.new() == [
        "大杯还是小杯?",
        "请回答 大杯 或 小杯",
        "确认大杯?",
        "请回答 是 或 否",
        "大杯: 已下单",  # a dialog's return value is its last reply
    ]
    for text in ("订", "小杯", "嗯?", "hmm"):
        await chat.send(text)
    # one retry allowed: the second wrong answer ends the dialog and is routed anew
    assert chat.new() == ["大杯还是小杯?", "确认小杯?", "请回答 是 或 否", "fallback: hmm"]


async def test_cancel_words_end_a_dialog(serve):
    chat = await serve(accumulator_bot())
    await chat.send("开始")
    await chat.send("取消")
    await chat.send("5")
    assert chat.new() == [ASK_COUNT, "已取消", "fallback: 5"]
    await chat.send("开始")
    await chat.send(" Cancel ")
    assert chat.new() == [ASK_COUNT, "已取消"]

    quiet = accumulator_bot(cancel_words=["stop"], cancel_message=None)
    chat = await serve(quiet)
    await chat.send("开始")
    await chat.send("取消")  # not a cancel word here: an unexpected answer... with retry text
    await chat.send("stop")
    await chat.send("x")
    assert chat.new() == [ASK_COUNT, "请输入整数", "fallback: x"]


async def test_a_dialog_times_out_with_its_message(serve):
    chat = await serve(accumulator_bot(timeout=0.2, timeout_message="超时了,对话结束"))
    await chat.send("开始")
    await chat.send("2")
    assert chat.new() == [ASK_COUNT, "请输入第1个数字, 目前累加和:0"]
    await asyncio.sleep(0.35)
    assert chat.new() == ["超时了,对话结束"]
    await chat.send("5")
    assert chat.new() == ["fallback: 5"]


async def test_answering_in_time_keeps_the_dialog_alive(serve):
    chat = await serve(accumulator_bot(timeout=0.3, timeout_message="超时了"))
    await chat.send("开始")
    for answer in ("3", "1", "1"):
        await asyncio.sleep(0.2)  # each answer comes before that question's deadline
        await chat.send(answer)
    await chat.send("1")
    assert "超时了" not in chat.new()[-1:]
    assert chat.said()[-1] == ("alice", "累加结束,累加和: 3")


async def test_stopping_the_server_stops_the_dialog_timers(serve):
    bot = accumulator_bot(timeout=0.3, timeout_message="超时了")
    chat = await serve(bot)
    await chat.send("开始")
    assert bot.dialogs.in_progress(), "the dialog waits for an answer"
    fired: list[object] = []
    bot.dialogs._expire = lambda *args: fired.append(args)  # type: ignore[method-assign]
    await chat.server.stop()
    await asyncio.sleep(0.5)  # past the question's deadline
    assert fired == [], "a timer of a stopped server fired"
    assert bot.dialogs.in_progress() == []
    # the dialog itself stays in the store: a restarted server continues it
    assert await bot.dialog_store.get(bot.dialogs.key_of(_message_from("alice"))) is not None


async def test_a_dialog_without_timeout_waits_as_long_as_it_takes(serve):
    bot = accumulator_bot(timeout=None)
    chat = await serve(bot)
    await chat.send("开始")
    state = await bot.dialog_store.get(bot.dialogs.key_of(_message_from("alice")))
    assert state["pending"]["d"] is None and not bot.dialogs._timers
    await chat.send("1")
    await chat.send("4")
    assert chat.new()[-1] == "累加结束,累加和: 4"


def _message_from(talker: str):
    from MetaPuppet import Message

    return Message(None, "fake", {"talkerId": talker})  # type: ignore[arg-type]


async def test_a_timeout_missed_while_down_is_told_on_the_next_message(server_factory):
    store = MemoryStorage()
    first = await server_factory(
        robot=accumulator_bot(store, timeout=0.2, timeout_message="超时了"), rate_limiter=None
    )
    chat = Chat(first)
    await chat.send("开始")
    await first.stop()  # the timer fires while no puppet is connected: nothing is sent
    await asyncio.sleep(0.3)
    second = await server_factory(
        robot=accumulator_bot(store, timeout=0.2, timeout_message="超时了"), rate_limiter=None
    )
    chat = Chat(second)
    await chat.send("3")
    assert chat.new() == ["超时了", "fallback: 3"]


async def test_one_dialog_per_participant_of_a_room(serve):
    chat = await serve(accumulator_bot())
    room = "r@chatroom"
    await chat.send("开始", talker="alice", room=room)
    await chat.send("1", talker="bob", room=room)  # bob is not in a dialog
    await chat.send("开始", talker="bob", room=room)
    await chat.send("1", talker="alice", room=room)
    await chat.send("2", talker="bob", room=room)
    await chat.send("40", talker="alice", room=room)
    await chat.send("1", talker="bob", room=room)
    await chat.send("2", talker="bob", room=room)
    assert chat.new(room) == [
        ASK_COUNT,
        "fallback: 1",
        ASK_COUNT,
        "请输入第1个数字, 目前累加和:0",  # alice
        "请输入第1个数字, 目前累加和:0",  # bob
        "累加结束,累加和: 40",  # alice
        "请输入第2个数字, 目前累加和:1",  # bob
        "累加结束,累加和: 3",  # bob
    ]


async def test_an_answer_delivered_twice_advances_the_dialog_once(serve):
    chat = await serve(accumulator_bot())
    await chat.send("开始", message_id="trigger")
    await chat.send("开始", message_id="trigger")
    await chat.send("2", message_id="answer-1")
    await chat.send("2", message_id="answer-1")  # same message, another event (a resend)
    await chat.send("5", message_id="answer-2")
    assert chat.new() == [
        ASK_COUNT,
        "请输入第1个数字, 目前累加和:0",
        "请输入第2个数字, 目前累加和:5",
    ]


async def test_side_effects_run_once_across_steps_and_restarts(server_factory):
    store = MemoryStorage()
    orders: list[str] = []

    def make_bot() -> Fallback:
        bot = Fallback(dialog_store=store)

        def create_order(item: str) -> str:  # a plain def: runs in the thread pool
            orders.append(item)
            return f"order-{len(orders)}"

        @bot.dialog(trigger="买", name="buy")
        async def buy(d):
            item = await d.ask("买什么?")
            order_id = await d.once(create_order, item)
            await d.say(f"订单 {order_id} 已创建")
            if await d.ask_yes_no("要发票吗?"):
                email = await d.ask("发到哪个邮箱?")
                return f"{order_id} 的发票将发到 {email}"
            return f"{order_id} 完成"

        return bot

    chat = Chat(await server_factory(robot=make_bot(), rate_limiter=None))
    await chat.send("买")
    await chat.send("咖啡")
    assert chat.new() == ["买什么?", "订单 order-1 已创建", "要发票吗?"]
    await chat.server.stop()
    chat = Chat(await server_factory(robot=make_bot(), rate_limiter=None))  # a restart
    await chat.send("是")
    await chat.send("a@example.com")
    assert chat.new() == ["发到哪个邮箱?", "order-1 的发票将发到 a@example.com"]
    assert orders == ["咖啡"]


async def test_a_failing_side_effect_fails_the_same_way_on_replay(serve):
    bot = Fallback()
    attempts: list[int] = []

    def charge() -> None:
        attempts.append(1)
        raise ValueError("card declined")

    @bot.dialog(trigger="付款")
    async def pay(d):
        try:
            await d.once(charge)
            paid = True
        except SideEffectFailed as failure:
            await d.say(f"失败: {failure}")
            paid = False
        name = await d.ask("姓名?")
        return f"{name}: {'paid' if paid else 'unpaid'}"

    chat = await serve(bot)
    await chat.send("付款")
    await chat.send("Alice")
    assert chat.new() == [
        "失败: charge failed: ValueError: card declined",
        "姓名?",
        "Alice: unpaid",
    ]
    assert attempts == [1]


async def test_a_side_effect_cut_off_by_a_restart_is_never_run_again(server_factory):
    store = MemoryStorage()
    runs: list[str] = []

    def make_bot(hang: bool) -> Fallback:
        bot = Fallback(dialog_store=store)

        async def transfer() -> str:
            runs.append("transfer")
            if hang:
                await asyncio.Event().wait()  # the process stops in the middle of it
            return "done"

        @bot.dialog(trigger="转账", name="transfer", error_message="转账状态未知,请联系客服")
        async def dialog(d):
            await d.once(transfer)
            await d.ask("还有什么?")

        return bot

    first = await server_factory(robot=make_bot(hang=True), rate_limiter=None)
    chat = Chat(first)
    await chat.send("转账", wait=False)
    await asyncio.sleep(0.1)
    await first.stop(handler_deadline=0.1)  # the step is cancelled mid-transfer
    robot = make_bot(hang=False)
    chat = Chat(await server_factory(robot=robot, rate_limiter=None))
    await chat.send("hello?")
    assert chat.new() == ["转账状态未知,请联系客服"]
    assert runs == ["transfer"]
    assert [type(e) for e in robot.errors] == [SideEffectInterrupted]
    await chat.send("hello?")
    assert chat.new() == ["fallback: hello?"]


async def test_a_dialog_that_does_not_replay_the_same_way_is_ended_and_reported(serve):
    bot = Fallback()
    counter = [0]

    @bot.dialog(trigger="go")
    async def unstable(d):
        counter[0] += 1
        await d.ask(f"question {counter[0]}")  # differs on every run: not deterministic
        await d.ask("second")

    chat = await serve(bot)
    await chat.send("go")
    await chat.send("answer")
    assert chat.new() == ["question 1"]
    assert [type(e) for e in bot.errors] == [DialogReplayError]
    await chat.send("after")
    assert chat.new() == ["fallback: after"]


async def test_a_new_dialog_version_drops_old_conversations(server_factory):
    store = MemoryStorage()
    chat = Chat(await server_factory(robot=accumulator_bot(store, version=1), rate_limiter=None))
    await chat.send("开始")
    chat = Chat(await server_factory(robot=accumulator_bot(store, version=2), rate_limiter=None))
    await chat.send("3")
    assert chat.new() == ["fallback: 3"]


async def test_dialogs_from_routers_commands_regexes_and_class_methods(serve):
    shop = Router("shop")

    @shop.dialog(command="order")
    async def order(d):
        qty = await d.ask_int("how many?", min=1, max=9, retry="1 to 9, please")
        return f"ordered {qty}"

    class Bot(Fallback):
        greeting = "hi"

        @RobotBase.dialog(trigger=__import__("re").compile(r"^name (\w+)$"))
        async def rename(self, d):
            new = d.message.text.split()[1]
            ok = await d.ask_yes_no(f"{self.greeting}, rename to {new}?")
            return "renamed" if ok else "kept"

    bot = Bot()
    bot.include_router(shop)
    chat = await serve(bot)
    for text in ("/order", "0", "12", "3", "name Bob", "y"):
        await chat.send(text)
    assert chat.new() == [
        "how many?",
        "1 to 9, please",
        "1 to 9, please",
        "ordered 3",
        "hi, rename to Bob?",
        "renamed",
    ]


async def test_dialog_steps_pass_through_the_robot_middleware(serve):
    bot = accumulator_bot()
    seen: list[str] = []

    @bot.middleware
    async def trace(call_next, invocation):
        seen.append(invocation.handler)
        return await call_next()

    chat = await serve(bot)
    await chat.send("开始")
    await chat.send("1")
    assert seen == ["dialog accumulator", "dialog accumulator"]  # the start, then a step


# --------------------------------------------------------------------------- restarts, processes


async def test_a_restart_continues_the_dialog_at_the_same_question(server_factory, shared_store):  # noqa: F811
    store = shared_store()
    first = await server_factory(robot=accumulator_bot(store), rate_limiter=None)
    chat = Chat(first)
    await chat.send("开始")
    await chat.send("2")
    await chat.send("5")
    assert chat.new()[-1] == "请输入第2个数字, 目前累加和:5"
    await first.stop()
    await store.close()

    store = shared_store()  # a new process: new robot, new connection, same data
    chat = Chat(await server_factory(robot=accumulator_bot(store), rate_limiter=None))
    await chat.send("7")
    assert chat.new() == ["累加结束,累加和: 12"]
    await store.close()


async def test_two_servers_on_one_redis_advance_a_dialog_once_per_answer(server_factory, redis_url):  # noqa: F811
    namespace = f"test-{uuid.uuid4().hex}"
    stores = [RedisStorage.from_url(redis_url, namespace=namespace) for _ in range(2)]
    servers = [
        await server_factory(robot=accumulator_bot(store), rate_limiter=None) for store in stores
    ]
    chats = [Chat(server, FakePuppet(bot="fake")) for server in servers]
    for server, chat in zip(servers, chats, strict=True):
        server.attach_puppet(chat.puppet)

    async def deliver_everywhere(text: str, message_id: str) -> None:
        # the same message reaches both processes at once (say, re-sent after a failover)
        await asyncio.gather(*(c.send(text, message_id=message_id, wait=False) for c in chats))
        await asyncio.gather(*(settle(server) for server in servers))

    await deliver_everywhere("开始", "trigger")
    await deliver_everywhere("10", "count")
    for i in range(10):
        await deliver_everywhere(str(i + 1), f"answer-{i}")
    said = sorted(text for chat in chats for text in chat.new())
    expected = [ASK_COUNT, "累加结束,累加和: 55"]
    expected += [f"请输入第{i + 1}个数字, 目前累加和:{i * (i + 1) // 2}" for i in range(10)]
    assert said == sorted(expected)  # every question asked once, by one of the two
    assert {len(chat.said()) for chat in chats} != {0}
    marker = await stores[0].get(StorageKey("fake", "alice", "alice"))
    assert marker["ended"] is True  # the dialog is over; its last answer is remembered a while
    await deliver_everywhere("hello", "after")  # a new message: both processes answer it
    assert [chat.new()[-1] for chat in chats] == ["fallback: hello"] * 2
    for store in stores:
        await store.close()


async def test_dialogs_in_progress_are_listed_for_the_dashboard(serve):
    chat = await serve(accumulator_bot())
    server = chat.server
    assert server.dialog_provider() == []
    await chat.send("开始", talker="alice")
    await chat.send("开始", talker="bob")
    await chat.send("2", talker="bob")
    listed = sorted(server.dialog_provider(), key=lambda d: d["user"])
    assert [(d["user"], d["dialog"], d["question"]) for d in listed] == [
        ("alice", "accumulator", ASK_COUNT),
        ("bob", "accumulator", "请输入第1个数字, 目前累加和:0"),
    ]
    await chat.send("取消", talker="alice")
    assert [d["user"] for d in server.dialog_provider()] == ["bob"]
