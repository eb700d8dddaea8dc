"""The ``metapuppet`` command: demo, serve, client, doctor, init."""

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
from pathlib import Path

from .config import MIN_EXPOSED_TOKEN_LENGTH, Config, load_config, write_config
from .errors import ConfigError, MetaPuppetError
from .protocol import BotEvent
from .robot import RobotBase
from .server import SocketServerCore

__all__ = [
    "build_parser",
    "cmd_client",
    "cmd_demo",
    "cmd_doctor",
    "cmd_init",
    "cmd_serve",
    "main",
]


def _load_robot(spec: str) -> RobotBase:
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise ConfigError(f"--bot takes module:Class (e.g. mybot:MyBot), got {spec!r}")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}") from None
    robot_class = getattr(module, class_name, None)
    if robot_class is None:
        raise ConfigError(f"{module_name} has no {class_name}")
    robot = robot_class()
    if not isinstance(robot, RobotBase):
        raise ConfigError(f"{spec} is not a RobotBase subclass")
    return robot


async def _serve(args: argparse.Namespace, config: Config) -> int:
    from .sweet import SweetSocketServer

    robot = _load_robot(args.bot) if args.bot else None
    if robot is None:
        from .robot import TestBot

        robot = TestBot()
    server = SweetSocketServer(
        robot=robot, config=config, host=args.host, port=args.port, data_dir=config.data_dir
    )
    loop = asyncio.get_running_loop()

    def snapshot_after_login(event: BotEvent) -> None:
        if event.name == "login":
            # contacts arrive in the moments after login; give them a little time
            loop.call_later(3.0, lambda: loop.create_task(_snapshot(server, event.bot)))

    server.add_event_listener(snapshot_after_login)
    server.on_shutdown(server.write_snapshots)
    if getattr(robot, "dialog_store", "absent") is None:
        # dialogs survive a restart by default: the embedded SQLite store, no server needed
        from .storage import SQLiteStorage

        robot.dialog_store = SQLiteStorage(config.data_dir / "dialogs.db")
    store = getattr(robot, "dialog_store", None)
    if store is not None:
        server.on_shutdown(store.close)  # after the last handler: every write is committed
    await server.start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"MetaPuppet serving {type(robot).__name__} on {server.url}; Ctrl-C stops.", flush=True)
    await stop.wait()
    print("stopping: finishing running handlers, writing snapshots…", flush=True)
    await server.stop()
    return 0


async def _snapshot(server: SocketServerCore, bot: str) -> None:
    with contextlib.suppress(MetaPuppetError):
        await server.write_snapshot(bot)


def cmd_serve(args: argparse.Namespace) -> int:
    return asyncio.run(_serve(args, load_config(args.config)))


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return asyncio.run(run_demo(once=args.once, log_level=args.log_level))


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
    process = subprocess.Popen(command, cwd=client_dir, env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        return process.wait()


def cmd_init(args: argparse.Namespace) -> int:
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
    results.append(
        _check(bool(token), "a token is set", "run `metapuppet init` or set METAPUPPET_TOKEN")
    )
    if token:
        results.append(
            _check(
                len(token) >= MIN_EXPOSED_TOKEN_LENGTH,
                f"token strength ({len(token)} characters)",
                f"use at least {MIN_EXPOSED_TOKEN_LENGTH} random characters (`metapuppet init`)",
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
    if client_dir is not None:
        package = "wechaty-puppet-mock" if puppet == "mock" else puppet
        installed = (client_dir / "node_modules" / package / "package.json").is_file()
        results.append(
            _check(
                installed, f"puppet package {package}", f"cd {client_dir} && npm install {package}"
            )
        )
    return 0 if all(results) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metapuppet", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the offline demo on the mock puppet")
    demo.add_argument("--once", action="store_true", help="play the script once and exit")
    demo.add_argument("--log-level", default="warn", help="the Node client's log level")
    demo.set_defaults(func=cmd_demo)

    serve = sub.add_parser("serve", help="run the server with your robot")
    serve.add_argument("--bot", help="module:Class of your RobotBase subclass (default TestBot)")
    serve.add_argument("--config", help="config file (default $METAPUPPET_CONFIG or ./config.json)")
    serve.add_argument("--host", help="bind address (default from config: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default from config: 8080)")
    serve.set_defaults(func=cmd_serve)

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
    init.set_defaults(func=cmd_init)
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
