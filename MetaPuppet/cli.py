"""The ``metapuppet`` command: demo, serve, client, doctor, init, mock, plugins."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from ._loop import run as run_on_loop
from .config import (
    MIN_EXPOSED_TOKEN_LENGTH,
    RATE_LIMIT_HELP,
    Config,
    RateLimits,
    add_token,
    load_config,
    parse_rate_limit,
    write_config,
)
from .errors import ConfigError, MetaPuppetError
from .mockcli import add_mock_parser
from .protocol import BotEvent
from .reload import released_if_waiting
from .robot import RobotBase
from .server import SocketServerCore

__all__ = [
    "EXIT_UNSAVED",
    "build_parser",
    "cmd_client",
    "cmd_demo",
    "cmd_doctor",
    "cmd_init",
    "cmd_plugins",
    "cmd_serve",
    "main",
]

#: `metapuppet serve` stopped gracefully but could not save something (a read-only or full
#: data directory); what is named on stderr
EXIT_UNSAVED = 3

BOT_HELP = (
    "module:name, where name is a RobotBase instance, a subclass or a factory (e.g. mybot:bot)"
)


def _load_robot(spec: str) -> RobotBase:
    """The robot ``--bot module:name`` names: an instance, a RobotBase subclass, or a factory.

    The README's ``bot = RobotBase()`` + decorators pattern is an instance; a class or a
    function is called with no arguments. Every bad target is one :class:`ConfigError` line.
    """
    module_name, _, attribute = spec.partition(":")
    module_name, attribute = module_name.strip(), attribute.strip()
    if not module_name or not attribute:
        raise ConfigError(f"--bot takes {BOT_HELP}; got {spec!r}")
    module = _import_bot_module(module_name)
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"{module_name} has no {attribute!r} (--bot takes {BOT_HELP})")
        target = getattr(target, part)
    if isinstance(target, RobotBase):
        return target
    if isinstance(target, type):
        if not issubclass(target, RobotBase):
            raise ConfigError(f"{spec} is the class {target.__name__}, not a RobotBase subclass")
        what = f"{spec}()"
    elif callable(target):
        what = f"the factory {spec}()"
    else:
        kind = type(target).__name__
        raise ConfigError(f"{spec} is a value of type {kind}, not a robot; --bot takes {BOT_HELP}")
    try:
        robot = target()
    except Exception as exc:  # noqa: BLE001 - the user's code: one line, -v shows the rest
        logging.getLogger("MetaPuppet.cli").debug("calling %s failed", what, exc_info=True)
        raise ConfigError(f"{what} failed: {_one_line(exc)}") from None
    if not isinstance(robot, RobotBase):
        raise ConfigError(
            f"{what} returned a value of type {type(robot).__name__}, not a RobotBase"
        )
    return robot


def _import_bot_module(name: str) -> ModuleType:
    """Import ``name`` (a module path, or a ``.py`` file) from the working directory."""
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"--bot: no file {path}")
        sys.path.insert(0, str(path.resolve().parent))
        name = path.stem
    else:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise ConfigError(
                f"cannot import {name!r}: no such module in {os.getcwd()} or on sys.path"
            ) from None
        raise ConfigError(f"importing {name} failed: {_one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - the user's module: one line, -v shows the rest
        logging.getLogger("MetaPuppet.cli").debug("importing %s failed", name, exc_info=True)
        raise ConfigError(f"importing {name} failed: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    """``Kind: message (file.py line N)``: where in the user's code it went wrong."""
    where = ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" ({Path(exc.filename).name} line {exc.lineno})"
    else:
        frames = traceback.extract_tb(exc.__traceback__)
        prefixes = tuple({sys.prefix, sys.base_prefix, str(Path(__file__).parent)})
        ours = [f for f in frames if not f.filename.startswith(("<", *prefixes))]
        chosen = ours or frames
        if chosen:
            frame = chosen[-1]
            where = f" ({Path(frame.filename).name} line {frame.lineno})"
    text = str(exc.msg if isinstance(exc, SyntaxError) else exc).splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}{where}".strip()


async def _serve(args: argparse.Namespace, config: Config) -> int:
    from .sweet import SweetSocketServer

    robot = _load_robot(args.bot) if args.bot else None
    if robot is None:
        from .robot import TestBot

        robot = TestBot()
    server = SweetSocketServer(
        robot=robot,
        config=config,
        host=args.host,
        port=args.port,
        data_dir=config.data_dir,
        rate_limiter=config.rate_limiter(),
    )
    if os.environ.get("METAPUPPET_RELOADING"):
        server.shutdown_timeout = 0.25  # restarted by --reload: every second counts
    loop = asyncio.get_running_loop()

    def snapshot_after_login(event: BotEvent) -> None:
        if event.name == "login":
            # contacts arrive in the moments after login; give them a little time
            loop.call_later(3.0, lambda: loop.create_task(_snapshot(server, event.bot)))

    for state in server.load_plugins():  # a bad plugin setting stops here (ConfigError)
        detail = f": {state.error}" if state.error else ""
        print(f"plugin {state.name}: {state.status}{detail}", flush=True)
    server.add_event_listener(snapshot_after_login, self_messages=False)
    server.on_shutdown(server.write_snapshots)
    if getattr(robot, "dialog_store", "absent") is None:
        # dialogs survive a restart by default: the embedded SQLite store, no server needed;
        # in a cluster, the shared Redis (a dialog continues on whichever process gets it)
        from .cluster.state import connect_redis
        from .storage import RedisStorage, SQLiteStorage

        cluster = server.cluster
        robot.dialog_store = (
            SQLiteStorage(config.data_dir / "dialogs.db")
            if cluster is None
            else RedisStorage(
                connect_redis(cluster.settings),
                namespace=f"{cluster.settings.key_prefix}:dialog",
                owns_client=True,
            )
        )
    store = getattr(robot, "dialog_store", None)
    if store is not None:
        server.on_shutdown(store.close)  # after the last handler: every write is committed
    await server.start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"MetaPuppet serving {type(robot).__name__} on {server.url}; Ctrl-C stops.", flush=True)
    print(f"outgoing rate limit: {describe_rate_limits(config.rate_limits)}", flush=True)
    if server.cluster is not None:
        print(f"cluster: shared state in Redis at {server.cluster.settings.safe_url}", flush=True)
    await stop.wait()
    print("stopping: finishing running handlers, writing snapshots…", flush=True)
    await server.stop()
    if server.unsaved:
        # the stop itself went fine; say what is missing, and exit with a status of its own
        for failure in server.unsaved:
            print(f"metapuppet serve: could not save {failure}", file=sys.stderr)
        return EXIT_UNSAVED
    return 0


def describe_rate_limits(limits: RateLimits | None) -> str:
    """``per chat: 5 at once, then 1 per 1 s; per bot: ...`` for the start-up line."""
    if limits is None:
        return "off (server.rate_limit / --rate-limit)"
    parts = []
    for label, rate in (("per chat", limits.per_chat), ("per bot", limits.per_bot)):
        if rate is None:
            parts.append(f"{label}: off")
        else:
            parts.append(f"{label}: {rate.burst} at once, then {rate.count:g} per {rate.per:g} s")
    return "; ".join(parts)


async def _snapshot(server: SocketServerCore, bot: str) -> None:
    try:
        await server.write_snapshot(bot)
    except MetaPuppetError:
        pass  # the bot went away meanwhile; the next login writes one
    except OSError as exc:
        logging.getLogger("MetaPuppet.server").error("could not write the snapshot: %s", exc)


def cmd_serve(args: argparse.Namespace) -> int:
    if args.reload:
        from .reload import serve_with_reload

        return serve_with_reload(args)
    if not released_if_waiting():  # started ahead of time by --reload, never released
        return 0
    config = load_config(args.config)
    if args.rate_limit is not None:
        parse_rate_limit(args.rate_limit, where="--rate-limit")  # a bad flag names the flag
        config = config.with_overrides(rate_limit=args.rate_limit)
    if args.redis:
        config.raw.setdefault("cluster", {})["redis_url"] = args.redis
    return run_on_loop(_serve(args, config), config.event_loop)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return asyncio.run(run_demo(once=args.once, log_level=args.log_level, puppet=args.puppet))


def cmd_client(args: argparse.Namespace) -> int:
    from .testing import find_client_dir, node_command

    config = load_config(args.config)
    client_dir = find_client_dir()
    if config.path is None:
        raise ConfigError("no config file: run `metapuppet init` first (the client needs a token)")
    command = node_command(client_dir, config.path.resolve())
    env = dict(os.environ)
    outbox = config.raw["client"].get("outbox_path")
    if outbox and "METAPUPPET_OUTBOX_PATH" not in env:
        # the outbox file survives a crash of the client; keep it beside config.json
        path = Path(str(outbox))
        env["METAPUPPET_OUTBOX_PATH"] = str(
            path if path.is_absolute() else config.path.resolve().parent / path
        )
    # the client stops by itself if this process dies without forwarding a signal (SIGKILL)
    env["METAPUPPET_PARENT_PID"] = str(os.getpid())
    return _run_forwarding_signals(command, cwd=client_dir, env=env)


#: what `metapuppet client` hands on to the Node process (which stops cleanly on each)
FORWARDED_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def _run_forwarding_signals(command: list[str], *, cwd: Path, env: dict[str, str]) -> int:
    """Run the Node client as a child and pass SIGINT/SIGTERM/SIGHUP on to it, once each.

    The child gets its own process group, so a Ctrl-C in the terminal reaches it through us
    exactly once (twice would make it exit without a clean stop). If this process dies
    without a chance to forward (SIGKILL), the Node client notices that its parent is gone
    and stops by itself (socket_client/src/parent.ts).
    """
    children: list[subprocess.Popen[bytes]] = []
    early: list[int] = []  # a signal that came before the child existed

    def forward(signum: int, _frame: object) -> None:
        if not children:
            early.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):
            children[0].send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        children.append(subprocess.Popen(command, cwd=cwd, env=env, process_group=0))
        for signum in early:
            children[0].send_signal(signum)
        code = children[0].wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code if code >= 0 else 128 - code


def cmd_plugins(args: argparse.Namespace) -> int:
    from .plugins import installed, set_plugin_enabled

    config = load_config(args.config)
    found = {entry.name: entry for entry in installed()}
    if args.action == "list":
        disabled = set((config.raw.get("plugins") or {}).get("disabled") or ())
        if not found:
            print("no plugins installed (packages with a 'metapuppet.plugins' entry point)")
        for name, entry in found.items():
            dist = entry.dist
            package = f"{dist.name} {dist.version}" if dist is not None else entry.value
            print(f"{name}\t{'disabled' if name in disabled else 'enabled'}\t{package}")
        return 0
    if not args.name:
        raise ConfigError(f"metapuppet plugins {args.action} needs the plugin's name")
    if args.name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise ConfigError(f"no installed plugin {args.name!r} (installed: {known})")
    if config.path is None:
        raise ConfigError("no config file to write: run `metapuppet init` first, or --config")
    set_plugin_enabled(config.path, args.name, args.action == "enable")
    print(f"plugin {args.name} {args.action}d in {config.path}; restart the server to apply")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    if args.token_only:
        if args.bot is not None:
            raise ConfigError("--token-only changes only server.token; leave out --bot")
        existed = Path(args.path).exists()
        config = add_token(args.path, force=args.force)
        if existed:
            print(f"added a fresh server.token to {config.path}; nothing else changed (mode 600)")
            return 0
    else:
        config = write_config(args.path, force=args.force, bot=args.bot)
    print(f"wrote {config.path} with a fresh token (keep it secret; it is mode 600)")
    print("next: `metapuppet serve --bot yourmodule:YourBot` and `metapuppet client`")
    return 0


def _check(ok: bool, what: str, fix: str = "") -> bool:
    print(f"{'✓' if ok else '✗'} {what}" + ("" if ok or not fix else f"\n    fix: {fix}"))
    return ok


def cmd_doctor(args: argparse.Namespace) -> int:
    results = [
        _check(
            sys.version_info >= (3, 11),
            f"Python {sys.version.split()[0]}",
            "install Python 3.11 or newer",
        )
    ]
    node = shutil.which("node")
    version = ""
    if node:
        version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    major = int(version.lstrip("v").split(".")[0]) if version else 0
    results.append(_check(major >= 20, f"Node.js {version or 'not found'}", "install Node.js 20"))
    try:
        from .testing import find_client_dir

        client_dir = find_client_dir()
        results.append(_check(True, f"Node client in {client_dir} with its packages"))
    except MetaPuppetError as exc:
        client_dir = None
        results.append(_check(False, "Node client", str(exc)))
    try:
        config = load_config(args.config)
        where = config.path or "no file (defaults and environment)"
        results.append(_check(True, f"config: {where}"))
    except ConfigError as exc:
        results.append(_check(False, "config", str(exc)))
        return 1
    token = config.token
    if config.path is not None:
        # init refuses an existing file; --token-only adds the token and keeps the rest
        add = f"run `metapuppet init --token-only --path {config.path}` or set METAPUPPET_TOKEN"
    else:
        add = "run `metapuppet init` (writes config.json) or set METAPUPPET_TOKEN"
    results.append(_check(bool(token), "a token is set", add))
    if token:
        results.append(
            _check(
                len(token) >= MIN_EXPOSED_TOKEN_LENGTH,
                f"token strength ({len(token)} characters)",
                f"use at least {MIN_EXPOSED_TOKEN_LENGTH} random characters: "
                + (
                    f"`metapuppet init --token-only --force --path {config.path}` replaces it"
                    if config.path is not None
                    else "`metapuppet init`"
                ),
            )
        )
    with socket.socket() as probe:
        try:
            probe.bind((config.host, config.port))
            free = True
        except OSError:
            free = False
    results.append(
        _check(
            free,
            f"port {config.host}:{config.port} is free",
            "stop what uses it, or set server.port / METAPUPPET_PORT",
        )
    )
    puppet = config.puppet_name
    if puppet in BUILT_IN_PUPPETS:
        results.append(_check(True, f"puppet {puppet} (part of the Node client)"))
    elif client_dir is not None:
        package = "wechaty-puppet-mock" if puppet == "mock" else puppet
        installed = (client_dir / "node_modules" / package / "package.json").is_file()
        results.append(
            _check(
                installed, f"puppet package {package}", f"cd {client_dir} && npm install {package}"
            )
        )
    if puppet == SERVICE_PUPPET:
        results.extend(_service_checks(config, os.environ))
    return 0 if all(results) else 1


SERVICE_PUPPET = "wechaty-puppet-service"
#: MetaPuppet's own puppets (socket_client/src/puppets/): no package to install
BUILT_IN_PUPPETS = ("ilink",)


def _service_checks(config: Config, env: Mapping[str, str]) -> list[bool]:
    """The puppet-service token has its ``prefix_`` form and the endpoint answers (TCP)."""
    puppet = config.raw.get("puppet") or {}
    options = puppet.get("options") or {}
    raw_tls = options.get("tls")
    tls: dict[str, Any] = raw_tls if isinstance(raw_tls, dict) else {}
    token = puppet.get("token") or options.get("token") or env.get("WECHATY_PUPPET_SERVICE_TOKEN")
    results = [
        _check(
            bool(token),
            "a puppet-service token is set",
            "set puppet.token in the config or METAPUPPET_PUPPET_SERVICE_TOKEN",
        )
    ]
    if token:
        cut = str(token).rfind("_")
        results.append(
            _check(
                0 < cut < len(str(token)) - 1 or bool(tls.get("serverName")),
                "the puppet-service token has the <prefix>_<secret> form",
                "a puppet-service token reads like insecure_<uuid> (the prefix is the TLS "
                "server name): use the whole token your provider gave, or set "
                "puppet.options.tls.serverName",
            )
        )
    endpoint = (
        env.get("METAPUPPET_PUPPET_SERVICE_ENDPOINT")
        or options.get("endpoint")
        or env.get("WECHATY_PUPPET_SERVICE_ENDPOINT")
    )
    if not endpoint:
        results.append(
            _check(
                False,
                "a puppet-service endpoint is set",
                'set puppet.options.endpoint to the service\'s host:port (e.g. "127.0.0.1:8788") '
                "or METAPUPPET_PUPPET_SERVICE_ENDPOINT; token discovery does not work",
            )
        )
        return results
    host, sep, port = str(endpoint).rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        results.append(
            _check(False, f"puppet-service endpoint {endpoint!r}", "give it as host:port")
        )
        return results
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            answered, why = True, ""
    except OSError as exc:
        answered, why = False, f": {exc.strerror or exc}"
    disabled = tls.get("disable")
    mode = "plain gRPC (tls.disable)" if disabled else "TLS"
    results.append(
        _check(
            answered,
            f"the puppet service at {endpoint} answers (TCP; the client will use {mode})"
            + ("" if answered else f"{why}"),
            "start the puppet service, or fix puppet.options.endpoint / "
            "METAPUPPET_PUPPET_SERVICE_ENDPOINT",
        )
    )
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metapuppet", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the offline demo (mock puppet, or ilink + simulator)")
    demo.add_argument("--once", action="store_true", help="play the script once and exit")
    demo.add_argument(
        "--puppet",
        choices=("mock", "ilink"),
        default="mock",
        help="mock (default), or ilink: MetaPuppet's puppet for the official WeChat bot API "
        "against an offline simulator, QR scan included",
    )
    demo.add_argument("--log-level", default="warn", help="the Node client's log level")
    demo.set_defaults(func=cmd_demo)

    serve = sub.add_parser(
        "serve",
        help="run the server with your robot",
        epilog=f"exit status: 0 after a graceful stop, {EXIT_UNSAVED} when the stop could not "
        "save something (named on stderr), 2 on a configuration problem",
    )
    serve.add_argument("--bot", help=f"your robot: {BOT_HELP} (default TestBot)")
    serve.add_argument("--config", help="config file (default $METAPUPPET_CONFIG or ./config.json)")
    serve.add_argument("--host", help="bind address (default from config: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default from config: 8080)")
    serve.add_argument(
        "--rate-limit",
        metavar="SPEC",
        help="outgoing rate limit, overrides server.rate_limit: "
        + RATE_LIMIT_HELP
        + "; default per_chat=1/1s:5,per_bot=40/1m:20",
    )
    serve.add_argument(
        "--redis",
        metavar="URL",
        help="join a cluster of server processes on this Redis (overrides cluster.redis_url "
        "and METAPUPPET_REDIS_URL; docs/scaling.md)",
    )
    serve.add_argument(
        "--reload",
        action="store_true",
        help="restart the server when the robot's files change (development; the Node "
        "client keeps running and its outbox covers the gap)",
    )
    serve.set_defaults(func=cmd_serve)

    plugins = sub.add_parser("plugins", help="list, enable or disable installed plugins")
    plugins.add_argument("--config", help="config file (enable/disable write to it)")
    plugins.add_argument("action", choices=("list", "enable", "disable"))
    plugins.add_argument("name", nargs="?", help="the plugin (enable, disable)")
    plugins.set_defaults(func=cmd_plugins)

    client = sub.add_parser("client", help="run the Node client with the same config")
    client.add_argument("--config", help="config file")
    client.set_defaults(func=cmd_client)

    doctor = sub.add_parser("doctor", help="check the set-up and say how to fix it")
    doctor.add_argument("--config", help="config file")
    doctor.set_defaults(func=cmd_doctor)

    init = sub.add_parser("init", help="write config.json with a fresh random token")
    init.add_argument("--path", default="config.json")
    init.add_argument("--bot", help="the bot's name")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.add_argument(
        "--token-only",
        action="store_true",
        help="add a fresh server.token to an existing file, keeping everything else "
        "(with --force: replace its token)",
    )
    init.set_defaults(func=cmd_init)
    add_mock_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "serve":
        logging.getLogger("MetaPuppet").setLevel(
            logging.INFO if not args.verbose else logging.DEBUG
        )
    try:
        return int(args.func(args))
    except MetaPuppetError as exc:
        print(f"metapuppet {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
