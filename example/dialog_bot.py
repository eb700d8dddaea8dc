"""A bot with two dialogs: the accumulator, and a coffee order confirmed with yes/no.

    python example/dialog_bot.py --demo        # a scripted chat on the mock WeChat, printed
    python example/dialog_bot.py               # serve; then start the Node client:
                                               #   metapuppet client
    python example/dialog_bot.py --redis redis://localhost:6379/0   # several processes

Dialog state lives in ``data/dialogs.db`` (SQLite) by default, so a restarted server
continues every conversation at the question it stopped at.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import signal
import sys
from typing import Any

from MetaPuppet import Message, RobotBase, SQLiteStorage, SweetSocketServer
from MetaPuppet.dialog import Dialog
from MetaPuppet.storage import BaseStorage, RedisStorage

HELP = "发送「开始」累加几个数字,或「点咖啡」下单;对话中发送「取消」随时结束。"

_order_numbers = itertools.count(1001)


def place_order(size: str) -> str:
    """Stands for a real side effect (a database write, a payment): it must run once."""
    return f"A{next(_order_numbers)}-{'L' if size == '大杯' else 'S'}"


class DialogBot(RobotBase):
    @RobotBase.dialog(trigger="开始", timeout_message="60 秒没有回复,累加已结束。")
    async def accumulator(self, d: Dialog) -> None:
        n = await d.ask_int("您需要累加几个数字?", retry="请输入整数", min=1, max=20)
        total = 0
        for i in range(n):
            total += await d.ask_int(
                f"请输入第{i + 1}个数字, 目前累加和:{total}", retry="请输入整数"
            )
        await d.say(f"累加结束,累加和: {total}")

    @RobotBase.dialog(trigger=["点咖啡", "coffee"])
    async def coffee(self, d: Dialog) -> str:
        size = await d.ask_choice("要大杯还是小杯?", ["大杯", "小杯"], retry="请回复 大杯 或 小杯")
        # a wrong answer is asked again once; a second one ends the order and is handled
        # as an ordinary message (on_message below answers it with the help text)
        confirmed = await d.ask_yes_no(
            f"一杯{size}咖啡,确认下单吗?(是/否)", retry="请回复 是 或 否", attempts=1
        )
        if not confirmed:
            return "好的,没有下单。"
        order = await d.once(place_order, size)  # never placed twice, even across restarts
        return f"已下单,订单号 {order}。"

    async def on_message(self, message: Message) -> Any:
        if message.room is not None and not message.mention_self:
            return None  # in rooms, only answer when mentioned
        return HELP


def make_store(args: argparse.Namespace) -> BaseStorage:
    if args.redis:
        return RedisStorage.from_url(args.redis)
    return SQLiteStorage(args.sqlite)


async def demo(store: BaseStorage) -> None:
    """Drive both dialogs on the mock WeChat (a real Node client) and print the chat."""
    from MetaPuppet.testing import mock_wechat

    async with mock_wechat(DialogBot(dialog_store=store)) as wx:
        alice = await wx.contact("Alice")
        for text in ["你好", "开始", "2", "40", "2", "点咖啡", "中杯", "大杯", "也许", "是"]:
            print(f"Alice: {text}")
            await alice.say(text)
            while True:  # the bot may answer with several messages
                try:
                    reply = await alice.next_reply(timeout=0.6)
                except AssertionError:
                    break
                print(f"  Bot: {reply.text}")


async def serve(store: BaseStorage, host: str | None, port: int | None) -> None:
    server = SweetSocketServer(robot=DialogBot(dialog_store=store), host=host, port=port)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    logging.getLogger("MetaPuppet").info("dialog bot ready on %s; Ctrl-C stops", server.url)
    await stop.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="run a scripted chat on the mock")
    parser.add_argument("--sqlite", default="data/dialogs.db", help="dialog state file")
    parser.add_argument("--redis", help="redis://... to share dialogs between processes")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def run() -> None:
        store = make_store(args)
        try:
            if args.demo:
                await demo(store)
            else:
                await serve(store, args.host, args.port)
        finally:
            await store.close()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
