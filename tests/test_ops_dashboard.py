"""The dashboard's Operations panel in real headless Chromium: the live chart of messages
per minute and handler latency, proactive messages with their states, jobs and plugins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from MetaPuppet import Config, Message, RobotBase, SweetSocketServer
from MetaPuppet.config import new_token
from MetaPuppet.plugins import Panel, Plugin
from MetaPuppet.testing import mock_wechat

from .test_web_browser import ARTIFACTS, page  # noqa: F401 - the browser fixture

pytestmark = pytest.mark.e2e


class Echo(RobotBase):
    async def on_message(self, msg: Message) -> Any:
        return f"echo {msg.text}"


@pytest.fixture
async def wx() -> AsyncIterator[Any]:
    robot = Echo()

    @robot.every("1h", id="hourly-report")
    async def report() -> None:
        return None

    server = SweetSocketServer(robot=robot, config=Config(), token=new_token(), port=0,
                               rate_limiter=None)  # fmt: skip
    server.use_plugin(Plugin("weather", panel=Panel("Forecast", lambda: {"Berlin": "sunny"})))
    async with mock_wechat(robot, server=server) as kit:
        yield kit


async def test_the_operations_panel_draws_the_chart_and_lists_outbox_jobs_plugins(wx, page):
    alice = await wx.contact("Alice")
    for i in range(3):
        await alice.say(f"hi {i}")
        await alice.next_reply(timeout=5)
    await wx.server.send_later(alice.id, "the daily report")
    await page.goto(wx.server.url + "/")
    await page.fill("#token", wx.server.token)
    await page.keyboard.press("Enter")
    await page.locator("#connection.live").wait_for()
    summary = page.locator("#ops-chart-summary")
    await summary.filter(has_text="messages in the last hour").wait_for()
    # seven message events: three from Alice, three echoes, the proactive one (the bot's own)
    assert (await summary.inner_text()).startswith("7 messages in the last hour")
    assert await page.locator("#ops-chart rect.bar").count() == 60
    assert await page.locator("#ops-chart polyline.latency").count() in (0, 1)
    await page.locator("#ops-outbox tr", has_text="the daily report").wait_for()
    assert "delivered" in await page.locator("#ops-outbox tr").first.inner_text()
    await page.locator("#ops-jobs li", has_text="hourly-report").wait_for()
    await page.locator("#ops-plugins li", has_text="weather").wait_for()
    await page.locator("#ops-panels td", has_text="sunny").wait_for()
    ARTIFACTS.mkdir(exist_ok=True)
    await page.locator("#ops").screenshot(path=str(ARTIFACTS / "operations.png"))
    assert page.problems == []
