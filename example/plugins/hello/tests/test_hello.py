"""The plugin's own tests, through MetaPuppet's test kit (a real server and Node client)."""

from __future__ import annotations

import metapuppet_hello
import pytest

from MetaPuppet import RobotBase
from MetaPuppet.errors import ConfigError
from MetaPuppet.plugins import PluginManager
from MetaPuppet.testing import mock_wechat


def robot_with_hello(settings: dict[str, object] | None = None) -> RobotBase:
    robot = RobotBase()
    PluginManager({"settings": {"hello": settings or {}}}).use(metapuppet_hello.plugin, robot)
    return robot


async def test_hello_answers_with_the_configured_greeting():
    async with mock_wechat(robot_with_hello({"greeting": "Bonjour"})) as wx:
        alice = await wx.contact("Alice")
        await alice.say("/hello")
        assert (await alice.next_reply(timeout=10)).text == "Bonjour, Alice!"
        await alice.say("/hello Bob")
        assert (await alice.next_reply(timeout=10)).text == "Bonjour, Bob!"
    assert metapuppet_hello.greeted["Bob"] >= 1


def test_a_mistyped_setting_is_named():
    with pytest.raises(ConfigError, match=r"plugin 'hello': setting 'greeting' must be a string"):
        robot_with_hello({"greeting": 3})


def test_the_morning_job_is_declared_daily():
    spec = metapuppet_hello.plugin.jobs.specs["hello.morning"]
    assert spec.kind == "interval" and spec.every == 86400 and spec.at == (8, 30, 0)
