"""/metrics: the Prometheus text format, parsed with prometheus_client's own parser, moving
with real traffic through the Node client."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from MetaPuppet import Config, Message, RobotBase, SendWindowClosed, SweetSocketServer
from MetaPuppet.config import new_token
from MetaPuppet.metrics import Metrics
from MetaPuppet.protocol import BotEvent
from MetaPuppet.testing import mock_wechat

pytestmark = pytest.mark.e2e


class Echo(RobotBase):
    async def on_message(self, msg: Message) -> Any:
        if msg.text == "boom":
            raise RuntimeError("boom")
        return f"echo {msg.text}"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def scrape(http: aiohttp.ClientSession, token: str | None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.get("/metrics", headers=headers) as response:
        return response.status, await response.text()


async def test_metrics_parse_and_move_with_traffic():
    async with mock_wechat(Echo(), client_options={"heartbeat_ms": 200}) as wx:
        alice = await wx.contact("Alice")
        token = wx.server.token
        async with aiohttp.ClientSession(wx.server.url) as http:
            status, text = await scrape(http, None)
            assert status == 401 and "Bearer" in text
            status, _ = await scrape(http, "wrong")
            assert status == 401
            status, text = await scrape(http, token)
            assert status == 200
            before = samples(text)
            for i in range(5):
                await alice.say(f"hi {i}")
                assert (await alice.next_reply(timeout=5)).text == f"echo hi {i}"
            await alice.say("boom")
            await asyncio.sleep(0.6)  # a client heartbeat or two
            status, text = await scrape(http, token)
            after = samples(text)
    bot = (("bot", "mock-bot"), ("kind", "message"))
    # the bot's own replies come back as message events too: 6 in, 5 echoed
    assert (
        after[("metapuppet_events_total", bot)] - before.get(("metapuppet_events_total", bot), 0)
        == 11
    )
    replies = ("metapuppet_replies_sent_total", (("bot", "mock-bot"),))
    assert after[replies] - before.get(replies, 0) == 5
    handled = ("metapuppet_handler_seconds_count", (("kind", "message"),))
    assert after[handled] - before.get(handled, 0) == 6
    assert after[("metapuppet_handler_seconds_bucket", (("kind", "message"), ("le", "+Inf")))] >= 6
    assert after[("metapuppet_errors_total", (("kind", "RuntimeError"), ("where", "handler")))] == 1
    assert (
        after[("metapuppet_exec_seconds_count", ())] > before[("metapuppet_exec_seconds_count", ())]
    )
    assert after[("metapuppet_connected_clients", (("role", "puppet"),))] == 1
    assert ("metapuppet_node_outbox_events", (("bot", "mock-bot"),)) in after
    assert after[("metapuppet_node_outbox_events", (("bot", "mock-bot"),))] >= 0
    assert ("metapuppet_proactive_messages", (("state", "queued"),)) in after


async def test_send_window_refusals_are_counted():
    robot = RobotBase()
    async with mock_wechat(robot, puppet="ilink") as wx:
        alice = await wx.contact("Alice")
        with pytest.raises(SendWindowClosed):
            await wx.server.say(alice.id, "hello?")  # the user has not written yet
        await wx.server.send_later(alice.id, "later")
        text, _ = wx.server.metrics.render()
        found = samples(text.decode())
    key = ("metapuppet_send_window_refusals_total", (("bot", "ilink-bot"), ("source", "budget")))
    key = next(k for k in found if k[0] == key[0])
    assert found[key] == 1
    assert found[("metapuppet_proactive_messages", (("state", "queued"),))] == 1


async def test_metrics_can_be_public_and_the_dashboard_series_counts_per_minute():
    config = Config()
    config.raw["metrics"] = {"public": True}
    server = SweetSocketServer(config=config, token=new_token(), port=0, rate_limiter=None)
    await server.start()
    try:
        async with aiohttp.ClientSession(server.url) as http:
            status, text = await scrape(http, None)
            assert status == 200 and "metapuppet_events_total" in text
    finally:
        await server.stop()
    clock = [1_000_000.0]
    metrics = Metrics(clock=lambda: clock[0])
    event = BotEvent("e1", "b", "message", {}, 0)
    for seconds in (0.01, 0.03):
        metrics.on_event(event)
        metrics.handled(event, seconds, None)
    clock[0] += 120  # two minutes later
    metrics.on_event(event)
    series = metrics.per_minute()
    assert len(series) == 60 and series[-1]["messages"] == 1
    assert series[-3]["messages"] == 2 and series[-3]["avg_ms"] == 20.0
    assert series[-3]["max_ms"] == 30.0 and series[-2]["messages"] == 0


def test_the_hot_path_is_a_few_increments():
    metrics = Metrics()
    event = BotEvent("e1", "b", "message", {}, 0)
    started = time.perf_counter()
    for _ in range(100_000):
        metrics.on_event(event)
        metrics.handled(event, 0.001, None)
    per_event = (time.perf_counter() - started) / 100_000
    assert per_event < 50e-6  # generous on a busy machine; about 1-2 µs when idle
