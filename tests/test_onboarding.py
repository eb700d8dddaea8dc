"""What a new user meets first (issue 13): `serve --bot` targets, `init --token-only`, the
rate-limit setting, `metapuppet client` and its signals, `make serve`/`make client`,
and what `doctor` says about a puppet service."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from MetaPuppet import Config, Rate, SweetSocketServer
from MetaPuppet.cli import _load_robot, describe_rate_limits
from MetaPuppet.config import RateLimits, load_config, parse_rate_limit
from MetaPuppet.errors import ConfigError
from MetaPuppet.ratelimit import DEFAULT_PER_BOT, DEFAULT_PER_CHAT
from MetaPuppet.robot import RobotBase
from MetaPuppet.testing import NodeClient

from .conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


def metapuppet(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAPUPPET_")}
    return subprocess.run(
        [sys.executable, "-m", "MetaPuppet", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ------------------------------------------------------------------ item 6: serve --bot targets

DECORATED_BOT = textwrap.dedent(
    """
    import pathlib

    from MetaPuppet import RobotBase

    MARKS = pathlib.Path(__file__).with_name("marks")
    bot = RobotBase()


    @bot.command("help")
    async def help_(msg, args):
        MARKS.mkdir(exist_ok=True)
        (MARKS / "help").write_text(msg.text)
        return "try: 开始"


    async def speak_after_login(name, user):
        # a mocked contact asks for help as soon as the bot is logged in
        await bot.server.exec_snippet(
            "const id = mock.contact('Alice'); mock.say(id, {text: '/help'}, null)", bot=name
        )


    bot.on_login = speak_after_login
    """
)

TARGETS = textwrap.dedent(
    """
    from MetaPuppet import RobotBase

    class Mine(RobotBase):
        pass

    def make():
        return Mine(name="made")

    def explodes():
        raise RuntimeError("no settings")

    def wrong():
        return 42

    instance = Mine(name="instance")
    number = 3

    class NotARobot:
        pass
    """
)


@pytest.fixture
def bot_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "targets.py").write_text(TARGETS)
    (tmp_path / "broken.py").write_text("x = 1\ny = undefined_name\n")
    (tmp_path / "needs.py").write_text("import no_such_dependency_here\n")
    monkeypatch.chdir(tmp_path)
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_bot_takes_an_instance_a_class_or_a_factory(bot_dir: Path) -> None:
    instance = _load_robot("targets:instance")
    assert isinstance(instance, RobotBase) and instance.name == "instance"
    assert type(_load_robot("targets:Mine")).__name__ == "Mine"
    assert _load_robot("targets:make").name == "made"
    assert _load_robot("targets.py:make").name == "made"  # a file path works too


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("targets", "--bot takes module:name"),
        ("nosuch:bot", "cannot import 'nosuch': no such module"),
        ("targets:missing", "targets has no 'missing'"),
        ("targets:number", "targets:number is a value of type int, not a robot"),
        ("targets:NotARobot", "the class NotARobot, not a RobotBase subclass"),
        (
            "targets:wrong",
            "the factory targets:wrong() returned a value of type int, not a RobotBase",
        ),
        ("targets:explodes", "targets:explodes() failed: RuntimeError: no settings (targets.py"),
        ("broken:bot", "importing broken failed: NameError: name 'undefined_name'"),
        ("needs:bot", "No module named 'no_such_dependency_here' (needs.py line 1)"),
    ],
)
def test_a_bad_bot_target_is_one_clear_line(bot_dir: Path, spec: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load_robot(spec)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_serve_reports_a_bad_target_in_one_line_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"server": {"token": "t" * 32, "port": free_port()}})
    )
    (tmp_path / "plain.py").write_text("bot = 'not a robot'\n")
    result = metapuppet("serve", "--bot", "plain:bot", "--config", "config.json", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "metapuppet serve: plain:bot is a value of type str, not a robot; --bot takes "
        "module:name, where name is a RobotBase instance, a subclass or a factory "
        "(e.g. mybot:bot)"
    ]


@pytest.mark.e2e
async def test_serve_runs_the_readme_decorator_bot_and_takes_the_rate_limit_flag(
    tmp_path: Path,
) -> None:
    (tmp_path / "deco.py").write_text(DECORATED_BOT)
    token, port = "t" * 32, free_port()
    (tmp_path / "config.json").write_text(
        json.dumps({"server": {"token": token, "port": port}, "client": {"bot": "deco"}})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAPUPPET_")}
    serve = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "MetaPuppet", "serve", "--bot", "deco:bot"),
        *("--config", "config.json", "--rate-limit", "per_chat=off,per_bot=30/1m:10"),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    node = NodeClient(
        {"server": {"token": token}, "client": {"url": f"http://127.0.0.1:{port}", "bot": "deco"}}
    )
    try:
        await node.start()
        mark = tmp_path / "marks" / "help"
        deadline = time.monotonic() + 60
        while not mark.exists():
            assert time.monotonic() < deadline, "the decorated command never ran"
            assert serve.returncode is None
            await asyncio.sleep(0.05)
        assert mark.read_text() == "/help"
        serve.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(serve.communicate(), 30)
        text = output.decode()
        assert serve.returncode == 0, text
        assert "MetaPuppet serving RobotBase on http://127.0.0.1:" in text
        assert "outgoing rate limit: per chat: off; per bot: 10 at once, then 30 per 60 s" in text
    finally:
        if serve.returncode is None:
            serve.kill()
            await serve.wait()
        await node.stop()


# ------------------------------------------------------------------ item 14: the rate limit


def test_the_rate_limit_setting_defaults_to_the_wechat_safe_limits() -> None:
    assert Config().rate_limits == RateLimits(DEFAULT_PER_CHAT, DEFAULT_PER_BOT)
    assert describe_rate_limits(Config().rate_limits) == (
        "per chat: 5 at once, then 1 per 1 s; per bot: 20 at once, then 40 per 60 s"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("default", RateLimits()),
        (None, RateLimits()),
        ("off", None),
        (False, None),
        ("per_chat=2/1s:5", RateLimits(Rate(2, per=1.0, burst=5), DEFAULT_PER_BOT)),
        ("per_bot=40/1m:20, per_chat=off", RateLimits(None, Rate(40, per=60.0, burst=20))),
        ({"per_chat": "1/2s", "per_bot": None}, RateLimits(Rate(1, per=2.0, burst=1), None)),
        ({"per_bot": "100/1h:30"}, RateLimits(DEFAULT_PER_CHAT, Rate(100, per=3600.0, burst=30))),
    ],
)
def test_rate_limit_values(value: object, expected: RateLimits | None) -> None:
    assert parse_rate_limit(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("fast", "'fast' is not NAME=RATE"),
        ("per_room=1/1s", "unknown part 'per_room'"),
        ("per_chat=lots", "server.rate_limit.per_chat: 'lots' is not COUNT/PERIOD[:BURST]"),
        ("per_chat=1/1s:0", "burst must be at least 1"),
        ("per_chat=0/1s", "positive count"),
        (12, "must be a string or an object"),
        ({"per_chat": 5}, 'server.rate_limit.per_chat must be a string like 1/1s:5, "off"'),
    ],
)
def test_a_bad_rate_limit_names_the_problem(value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rate_limit(value)
    assert expected in str(caught.value)


def test_the_server_follows_the_config_key_and_the_environment(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"server": {"rate_limit": "off"}}))
    config = load_config(tmp_path / "config.json", env={})
    assert SweetSocketServer(config=config, token="t" * 32).rate_limiter is None
    limited = SweetSocketServer(config=Config(), token="t" * 32).rate_limiter
    assert limited is not None and limited.per_chat == DEFAULT_PER_CHAT
    custom = load_config(env={"METAPUPPET_RATE_LIMIT": "per_chat=3/1s:6"})
    limiter = custom.rate_limiter()
    assert limiter is not None and limiter.per_chat == Rate(3, per=1.0, burst=6)
    assert limiter.per_bot == DEFAULT_PER_BOT
    (tmp_path / "bad.json").write_text(json.dumps({"server": {"rate_limit": "per_chat=x"}}))
    with pytest.raises(ConfigError, match="server.rate_limit.per_chat: 'x'"):
        load_config(tmp_path / "bad.json", env={})  # refused at load, not at the first send


def test_a_bad_rate_limit_flag_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"server": {"token": "t" * 32}}))
    result = metapuppet("serve", "--config", "config.json", "--rate-limit", "soon", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "metapuppet serve: --rate-limit: 'soon' is not NAME=RATE; use " + _rate_help()
    ]


def _rate_help() -> str:
    from MetaPuppet.config import RATE_LIMIT_HELP

    return RATE_LIMIT_HELP


def test_pyproject_license_is_an_spdx_string() -> None:
    """A TOML table for project.license makes every `pip install` warn (setuptools >= 77)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    requires = project["build-system"]["requires"]
    assert "setuptools>=77" in requires, requires


# ------------------------------------------------------------------ item 13: init --token-only


def test_init_token_only_adds_a_token_and_keeps_everything_else(tmp_path: Path) -> None:
    mine = {
        "server": {"port": 9123, "data_dir": "state"},
        "client": {"bot": "shop", "heartbeat_ms": 5000},
        "puppet": {"name": "wechaty-puppet-service", "options": {"endpoint": "10.0.0.2:8788"}},
        "admin_contacts": ["wxid_me"],
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(mine))
    path.chmod(0o644)

    refused = metapuppet("init", cwd=tmp_path)
    assert refused.returncode == 2 and "already exists" in refused.stderr

    doctor = metapuppet("doctor", "--config", "config.json", cwd=tmp_path)
    assert "✗ a token is set" in doctor.stdout
    assert "fix: run `metapuppet init --token-only --path config.json`" in doctor.stdout

    added = metapuppet("init", "--token-only", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert "nothing else changed" in added.stdout
    after = json.loads(path.read_text())
    token = after["server"].pop("token")
    assert len(token) >= 40 and after == mine
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token not in added.stdout + added.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temporary file left

    again = metapuppet("init", "--token-only", cwd=tmp_path)
    assert again.returncode == 2 and "already has a server.token" in again.stderr
    assert json.loads(path.read_text())["server"]["token"] == token

    replaced = metapuppet("init", "--token-only", "--force", cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    final = json.loads(path.read_text())
    assert final["server"].pop("token") != token and final == mine


def test_init_token_only_without_a_file_writes_a_new_one(tmp_path: Path) -> None:
    result = metapuppet("init", "--token-only", "--path", "fresh.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "fresh.json").read_text())["server"]["token"]
    assert stat.S_IMODE((tmp_path / "fresh.json").stat().st_mode) == 0o600


# ------------------------------------------------------------------ item 8: client and signals


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _running(pid: int) -> bool:
    """True while ``pid`` runs; a zombie waiting to be reaped counts as gone."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat_line[stat_line.rindex(")") + 2] != "Z"


@pytest.mark.e2e
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
async def test_killing_metapuppet_client_never_orphans_the_node_process(
    tmp_path: Path, sig: signal.Signals
) -> None:
    # nothing listens on the port: the client keeps retrying while its mock bot logs in
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "server": {"token": "t" * 32, "port": free_port()},
                "client": {"bot": "orphan", "outbox_path": None},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAPUPPET_")}
    client = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "MetaPuppet", "client", "--config", "config.json"),
        cwd=tmp_path,
        env=env | {"METAPUPPET_LOG_LEVEL": "info"},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert client.stderr is not None
    log: list[str] = []
    node: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not any("logged in as" in line for line in log):
            assert time.monotonic() < deadline, "".join(log)
            line = await asyncio.wait_for(client.stderr.readline(), 60)
            assert line, "metapuppet client ended early:\n" + "".join(log)
            log.append(line.decode())
        node = _children(client.pid)
        assert len(node) == 1 and _running(node[0])

        client.send_signal(sig)
        rest = await asyncio.wait_for(client.stderr.read(), 30)
        log.append(rest.decode())
        await asyncio.wait_for(client.wait(), 10)
        deadline = time.monotonic() + 15
        while _running(node[0]):
            assert time.monotonic() < deadline, "the Node client outlived metapuppet client"
            await asyncio.sleep(0.05)
        text = "".join(log)
        if sig == signal.SIGKILL:
            assert "is gone (parent is now" in text and "stopping" in text, text
        else:
            # forwarded: the Node client stopped cleanly and its exit code came back
            assert f"{sig.name} received: stopping" in text, text
            assert client.returncode == 0, text
    finally:
        if client.returncode is None:
            client.kill()
            await client.wait()
        for pid in node:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------ item 15: doctor and a service


def _service_config(path: Path, **puppet: object) -> None:
    path.write_text(
        json.dumps(
            {
                "server": {"token": "t" * 32, "port": free_port()},
                "puppet": {"name": "wechaty-puppet-service", **puppet},
            }
        )
    )


def test_doctor_checks_the_puppet_service_endpoint_and_token_form(tmp_path: Path) -> None:
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    try:
        port = listener.getsockname()[1]
        _service_config(
            tmp_path / "config.json",
            token="insecure_0c8f3a0e-cb6a-4bd6-9d22-5a1b2f9c3e11",
            options={"endpoint": f"127.0.0.1:{port}", "tls": {"disable": True}},
        )
        good = metapuppet("doctor", "--config", "config.json", cwd=tmp_path)
        assert good.returncode == 0, good.stdout
        assert "✓ the puppet-service token has the <prefix>_<secret> form" in good.stdout
        assert (
            f"✓ the puppet service at 127.0.0.1:{port} answers (TCP; the client will use "
            "plain gRPC (tls.disable))" in good.stdout
        )
        assert "0c8f3a0e" not in good.stdout  # the token is never printed
    finally:
        listener.close()

    closed = free_port()
    _service_config(
        tmp_path / "config.json", token="0c8f3a0ecb6a4bd6", options={"endpoint": f"[::1]:{closed}"}
    )
    bad = metapuppet("doctor", "--config", "config.json", cwd=tmp_path)
    assert bad.returncode == 1
    assert "✗ the puppet-service token has the <prefix>_<secret> form" in bad.stdout
    assert "fix: a puppet-service token reads like insecure_<uuid>" in bad.stdout
    assert f"✗ the puppet service at [::1]:{closed} answers (TCP; the client will use TLS)" in (
        bad.stdout
    )
    assert "fix: start the puppet service, or fix puppet.options.endpoint" in bad.stdout

    _service_config(tmp_path / "config.json", token="insecure_0c8f3a0ecb6a4bd6")
    missing = metapuppet("doctor", "--config", "config.json", cwd=tmp_path)
    assert missing.returncode == 1
    assert "✗ a puppet-service endpoint is set" in missing.stdout
    assert "set puppet.options.endpoint to the service's host:port" in missing.stdout


# ------------------------------------------------------------------ item 17: the puppet's state


def test_the_heartbeat_puppet_state_reaches_the_client_list() -> None:
    from MetaPuppet.presence import ClientInfo, Presence

    presence = Presence(lambda info, old, new: None)
    info = ClientInfo(sid="s1", role="puppet", bot="w4u", remote="127.0.0.1")
    presence.connected(info)
    state = {
        "state": "retrying",
        "message": "cannot reach WeChat: getaddrinfo ENOTFOUND login.wx.qq.com; retrying in 8 s",
        "retry_in_s": 8,
        "attempts": 4,
    }
    presence.heartbeat(info, {"source": "client", "uptime_s": 30, "puppet": state})
    (listed,) = presence.list()
    assert listed["puppet"] == state


# ------------------------------------------------------------------ item 12: after `make demo`


def test_after_the_demo_users_are_told_how_to_reach_metapuppet(tmp_path: Path) -> None:
    from MetaPuppet.demo import next_steps

    bin_dir = Path(sys.executable).parent
    outside = next_steps(path="/usr/bin:/bin", bin_dir=bin_dir)
    assert f"`metapuppet` lives in {bin_dir}, which is not on your PATH" in outside
    assert f"source {bin_dir.parent}/bin/activate" in outside
    assert "make serve BOT=mybot:bot · make client" in outside
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "metapuppet").write_text("#!/bin/sh\n")
    (fake / "metapuppet").chmod(0o755)
    inside = next_steps(path=str(fake), bin_dir=fake)
    assert "metapuppet serve --bot mybot:bot" in inside and "not on your PATH" not in inside


def test_make_serve_and_client_run_the_venv_command() -> None:
    def dry_run(*args: str) -> str:
        # run as a top-level make even inside `make test` (no "Entering directory" lines)
        env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
        result = subprocess.run(
            ["make", "--no-print-directory", "-n", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    assert dry_run("serve", "BOT=mybot:bot") == ".venv/bin/metapuppet serve --bot mybot:bot"
    assert dry_run("client", "CONFIG=my.json").split() == [
        ".venv/bin/metapuppet",
        "client",
        "--config",
        "my.json",
    ]
    assert dry_run("init").split() == [".venv/bin/metapuppet", "init"]
    readme = (ROOT / "README.md").read_text()
    assert "source .venv/bin/activate" in readme and "make serve BOT=mybot:bot" in readme
