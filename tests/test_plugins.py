"""Plugins: settings checked at start, discovery of an installed package through the
``metapuppet.plugins`` entry point group, isolation of a plugin that raises, the CLI."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from MetaPuppet import Config, Message, RobotBase, SweetSocketServer
from MetaPuppet.config import new_token
from MetaPuppet.errors import ConfigError
from MetaPuppet.plugins import Plugin, PluginManager, Setting, installed
from MetaPuppet.testing import mock_wechat

ROOT = Path(__file__).resolve().parents[1]
HELLO = ROOT / "example" / "plugins" / "hello"


def test_settings_are_checked_naming_the_plugin_and_the_key():
    plugin = Plugin(
        "weather",
        settings={
            "api_key": Setting(str, help="from the weather service"),
            "units": Setting(str, default="metric", choices=("metric", "imperial")),
            "retries": Setting(int, default=2),
        },
    )
    with pytest.raises(ConfigError) as missing:
        plugin.configure({})
    assert "plugin 'weather': setting 'api_key' is required" in str(missing.value)
    assert "plugins.settings.weather.api_key" in str(missing.value)
    with pytest.raises(
        ConfigError, match=r"unknown setting 'unit' \(plugins.settings.weather.unit\)"
    ):
        plugin.configure({"api_key": "k", "unit": "metric"})
    with pytest.raises(ConfigError, match="setting 'retries' must be a whole number, got '3'"):
        plugin.configure({"api_key": "k", "retries": "3"})
    with pytest.raises(ConfigError, match="setting 'units' must be one of 'metric', 'imperial'"):
        plugin.configure({"api_key": "k", "units": "kelvin"})
    assert plugin.configure({"api_key": "k"}) == {"api_key": "k", "units": "metric", "retries": 2}


BROKEN = """
raise ImportError("this plugin needs a library that is not installed")
"""


@pytest.fixture
def plugin_path(tmp_path: Path) -> Iterator[Path]:
    """The example plugin installed with pip into a folder of its own (a real wheel build
    and install, offline), and a broken plugin beside it; the folder on sys.path."""
    target, source = tmp_path / "site", tmp_path / "hello"
    # built from a copy: setuptools writes build/ and *.egg-info beside the sources
    shutil.copytree(HELLO, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "tests"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(target), str(source)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (target / "broken_plugin.py").write_text(BROKEN)
    info = target / "broken_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[metapuppet.plugins]\nbroken = broken_plugin:plugin\n")
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        for name in [m for m in sys.modules if m.startswith(("metapuppet_hello", "broken_plugin"))]:
            del sys.modules[name]
        importlib.invalidate_caches()


class Keeper(RobotBase):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen: list[str] = []

    async def on_message(self, msg: Message) -> Any:
        self.seen.append(msg.text)
        return None


async def test_an_installed_plugin_is_discovered_and_a_broken_one_stops_no_other(plugin_path):
    found = {entry.name: entry for entry in installed()}
    assert {"hello", "broken"} <= set(found)
    assert found["hello"].dist is not None and found["hello"].dist.version == "0.1.0"
    robot = Keeper()
    config = Config()
    config.raw["plugins"] = {"settings": {"hello": {"greeting": "Hi"}}}
    server = SweetSocketServer(robot=robot, config=config, token=new_token(), port=0,
                               rate_limiter=None)  # fmt: skip
    states = {s.name: s for s in server.load_plugins()}
    assert states["hello"].status == "loaded" and states["hello"].package == "metapuppet-hello"
    assert states["broken"].status == "error"
    assert "needs a library that is not installed" in (states["broken"].error or "")

    # a plugin whose handler raises on every message: isolated, the others go on
    flaky = Plugin("flaky")

    @flaky.router.on_message()
    async def explode(message: Message) -> Any:
        raise RuntimeError("flaky plugin failed")

    flaky_state = server.use_plugin(flaky)
    async with mock_wechat(server=server) as wx:
        alice = await wx.contact("Alice")
        await alice.say("/hello")
        assert (await alice.next_reply(timeout=10)).text == "Hi, Alice!"
        await alice.say("just talking")
        for _ in range(100):
            if robot.seen:
                break
            await asyncio.sleep(0.05)
        assert robot.seen == ["just talking"]  # the hook still got it past the failing plugin
        summary = {p["name"]: p for p in wx.server.plugins.summary()}
        assert summary["flaky"]["errors"] == 1
        assert "flaky plugin failed" in (summary["flaky"]["last_error"] or "")
        assert summary["broken"]["status"] == "error"
        assert summary["hello"]["panel"] == "Greetings"
        panels = await wx.server.plugins.panels()
        assert panels[0]["title"] == "Greetings" and panels[0]["rows"][0]["person"] == "Alice"
        headers = {"Authorization": f"Bearer {wx.server.token}"}
        async with aiohttp.ClientSession(wx.server.url, headers=headers) as http:
            async with http.get("/api/plugins") as response:
                listed = await response.json()
        assert {p["name"] for p in listed["plugins"]} == {"hello", "broken", "flaky"}
        assert listed["panels"][0]["rows"][0] == {"person": "Alice", "greeted": 1}
        jobs = {j["id"] for j in wx.server.ops.jobs()}
        assert "hello.morning" in jobs  # the plugin's daily job is scheduled
    assert flaky_state.errors == 1


def test_a_bad_setting_of_an_installed_plugin_stops_the_start(plugin_path):
    manager = PluginManager({"settings": {"hello": {"greting": "Hi"}}})
    with pytest.raises(ConfigError, match=r"plugin 'hello': unknown setting 'greting'"):
        manager.load_installed(RobotBase())


def test_plugins_cli_lists_enables_and_disables(plugin_path, tmp_path: Path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"server": {"token": "t" * 32}}, indent=2))
    config.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAPUPPET_")}
    env["PYTHONPATH"] = str(plugin_path)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "MetaPuppet", "plugins", *args, "--config", str(config)],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip

    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "hello\tenabled\tmetapuppet-hello 0.1.0" in listed.stdout
    assert "broken\tenabled" in listed.stdout
    assert cli("disable", "hello").returncode == 0
    assert json.loads(config.read_text())["plugins"]["disabled"] == ["hello"]
    assert json.loads(config.read_text())["server"]["token"] == "t" * 32  # the rest is kept
    assert config.stat().st_mode & 0o777 == 0o600
    assert "hello\tdisabled" in cli("list").stdout
    missing = cli("enable", "nope")
    assert missing.returncode == 2 and "no installed plugin 'nope'" in missing.stderr
    assert cli("enable", "hello").returncode == 0
    assert json.loads(config.read_text())["plugins"]["disabled"] == []


SERVE_BOT = textwrap.dedent(
    """
    from MetaPuppet import RobotBase
    bot = RobotBase()
    """
)


def test_serve_names_the_plugin_and_the_key_of_a_bad_setting(plugin_path, tmp_path: Path):
    (tmp_path / "bot.py").write_text(SERVE_BOT)
    config = {
        "server": {"token": "t" * 32, "port": 0},
        "plugins": {"settings": {"hello": {"greeting": 42}}},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAPUPPET_")}
    env["PYTHONPATH"] = str(plugin_path)
    result = subprocess.run(
        [sys.executable, "-m", "MetaPuppet", "serve", "--bot", "bot.py:bot", "--config",
         "config.json"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "plugin 'hello': setting 'greeting' must be a string, got 42" in result.stderr
    assert "plugins.settings.hello.greeting" in result.stderr
