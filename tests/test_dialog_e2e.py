"""Dialogs end to end: the real server, the real Node client, a Wechaty bot on the mock
puppet; the example bot runs to completion, and a restarted server continues a dialog."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from MetaPuppet import Config, MemoryStorage, SweetSocketServer
from MetaPuppet.testing import MockContact, mock_wechat

from .chat_helpers import redis_url, shared_store  # noqa: F401 - fixtures

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parent.parent / "example" / "dialog_bot.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dialog_bot_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def exchange(contact: MockContact, text: str) -> str:
    """Say ``text`` to the bot; return its one answer."""
    await contact.say(text)
    return (await contact.next_reply(timeout=10)).text


async def test_the_example_dialogs_run_to_completion_through_the_real_client():
    example = load_example()
    async with mock_wechat(example.DialogBot(dialog_store=MemoryStorage())) as wx:
        alice = await wx.contact("Alice")
        assert await exchange(alice, "你好") == example.HELP
        assert await exchange(alice, "开始") == "您需要累加几个数字?"
        assert await exchange(alice, "two") == "请输入整数"
        assert await exchange(alice, "2") == "请输入第1个数字, 目前累加和:0"
        assert await exchange(alice, "40") == "请输入第2个数字, 目前累加和:40"
        assert await exchange(alice, "2") == "累加结束,累加和: 42"

        assert await exchange(alice, "点咖啡") == "要大杯还是小杯?"
        assert await exchange(alice, "中杯") == "请回复 大杯 或 小杯"
        assert await exchange(alice, "大杯") == "一杯大杯咖啡,确认下单吗?(是/否)"
        assert await exchange(alice, "也许") == "请回复 是 或 否"
        assert (await exchange(alice, "是")).startswith("已下单,订单号 A")

        assert await exchange(alice, "coffee") == "要大杯还是小杯?"
        assert await exchange(alice, "小杯") == "一杯小杯咖啡,确认下单吗?(是/否)"
        assert await exchange(alice, "也许") == "请回复 是 或 否"
        # a second wrong answer ends the order; the message is handled like any other
        assert await exchange(alice, "随便") == example.HELP
        await asyncio.sleep(0.3)
        assert alice.pending_replies() == []


async def test_a_restarted_server_continues_the_dialog_at_the_same_question(shared_store):  # noqa: F811
    example = load_example()
    first_store = shared_store()
    async with mock_wechat(example.DialogBot(dialog_store=first_store)) as wx:
        alice = await wx.contact("Alice")
        assert await exchange(alice, "开始") == "您需要累加几个数字?"
        assert await exchange(alice, "2") == "请输入第1个数字, 目前累加和:0"
        assert await exchange(alice, "5") == "请输入第2个数字, 目前累加和:5"

        old_server = wx.server
        second_store = shared_store()  # a new process: new robot, new store connection
        new_server = SweetSocketServer(
            robot=example.DialogBot(dialog_store=second_store), config=Config(), rate_limiter=None
        )
        await wx.restart_server(new_server)
        await first_store.close()
        assert wx.server is new_server and old_server.bots == []

        assert await exchange(alice, "7") == "累加结束,累加和: 12"
        assert await exchange(alice, "7") == example.HELP  # over: back to the hook
        await second_store.close()
