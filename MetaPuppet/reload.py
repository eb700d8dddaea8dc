"""``metapuppet serve --reload``: restart the Python server when the robot's files change.

The server runs as a child process (``metapuppet serve`` without ``--reload``); watchfiles
watches the robot's folder (``*.py``) and the config file, and on a change, stops the child with
SIGINT (a graceful stop: running handlers finish, events that arrive meanwhile are answered
"unavailable") and starts it again. The Node client is a separate process
(``metapuppet client``) and is not restarted: it reconnects with its backoff, and every
event of the gap waits in its outbox until the new server acknowledges it, so none is lost.
For a quick turn-around in development keep ``client.reconnect_delay_max_ms`` small.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from watchfiles import Change

__all__ = ["child_command", "serve_with_reload", "watched_paths"]

log = logging.getLogger("MetaPuppet.reload")


def watched_paths(bot: str | None, config: str | None) -> list[Path]:
    """The folder of the robot's module (the working folder when it cannot tell) and the
    config file."""
    paths: list[Path] = []
    module = (bot or "").partition(":")[0].strip()
    if module.endswith(".py"):
        paths.append(Path(module).resolve().parent)
    elif module:
        sys.path.insert(0, os.getcwd())
        try:
            spec = importlib.util.find_spec(module.split(".")[0])
        except (ImportError, ValueError):
            spec = None
        finally:
            sys.path.pop(0)
        origin = getattr(spec, "origin", None)
        if origin and origin not in ("built-in", "frozen"):
            where = Path(origin).resolve().parent
            paths.append(where.parent if Path(origin).name == "__init__.py" else where)
    if not paths:
        paths.append(Path.cwd())
    if config and Path(config).is_file():
        config_path = Path(config).resolve()
        if not any(config_path.is_relative_to(p) for p in paths):
            paths.append(config_path)
    return paths


def data_dir_of(config: str | None) -> Path:
    from .config import load_config

    return load_config(config).data_dir.resolve()


def child_command(args: argparse.Namespace) -> list[str]:
    """``metapuppet serve`` with the same options, without ``--reload``."""
    command = [sys.executable, "-m", "MetaPuppet"]
    if getattr(args, "verbose", False):
        command.append("-v")
    command.append("serve")
    for flag, value in (
        ("--bot", args.bot),
        ("--config", args.config),
        ("--host", args.host),
        ("--port", args.port),
        ("--rate-limit", args.rate_limit),
        ("--redis", getattr(args, "redis", None)),
    ):
        if value is not None:
            command += [flag, str(value)]
    return command


def serve_with_reload(args: argparse.Namespace) -> int:
    """Run the server as a child and restart it whenever a watched file changes."""
    try:
        from watchfiles import DefaultFilter, run_process
    except ImportError:
        raise ConfigError("--reload needs watchfiles: pip install 'metapuppet[reload]'") from None
    paths = watched_paths(args.bot, args.config)
    command = shlex.join(child_command(args))
    config_file = Path(args.config).resolve() if args.config else None
    data_dir = str(data_dir_of(args.config))
    ignored = DefaultFilter()

    def wanted(change: Change, path: str) -> bool:
        """Python files of the robot and the config file; never the data directory
        (send budgets, seen ids, the Node outbox change all the time)."""
        if path.startswith(data_dir) or not ignored(change, path):
            return False
        return path.endswith(".py") or (config_file is not None and Path(path) == config_file)

    def restarted(changes: set[tuple[Change, str]]) -> None:
        names = sorted({Path(path).name for _, path in changes})
        print(f"metapuppet: {', '.join(names)} changed; restarting the server", flush=True)

    print(f"metapuppet: watching {', '.join(map(str, paths))} (--reload)", flush=True)
    os.environ["METAPUPPET_RELOADING"] = "1"  # the child stops without lingering
    run_process(
        *paths,
        target=command,
        target_type="command",
        callback=restarted,
        watch_filter=wanted,
        debounce=400,
        sigint_timeout=10,
    )
    return 0
