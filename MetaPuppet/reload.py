"""``metapuppet serve --reload``: restart the Python server when the robot's files change.

The server runs as a child process (``metapuppet serve`` without ``--reload``); watchfiles
watches the robot's folder (``*.py``) and the config file, and on a change, stops the child with
SIGINT (a graceful stop: running handlers finish, events that arrive meanwhile are answered
"unavailable") and starts the next one. The next child is started **ahead of time**: it imports
MetaPuppet and its libraries (about a second) and then waits on its stdin; a restart only
releases it, so it reads the config and imports the robot's changed files at that moment and
the turn-around is the stop plus the robot's own import. The Node client is a separate process
(``metapuppet client``) and is not restarted: it reconnects with its backoff, and every
event of the gap waits in its outbox until the new server acknowledges it, so none is lost.
For a quick turn-around in development keep ``client.reconnect_delay_max_ms`` small.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from watchfiles import Change

__all__ = [
    "GATE_ENV",
    "child_command",
    "released_if_waiting",
    "serve_with_reload",
    "wait_at_gate",
    "watched_paths",
]

log = logging.getLogger("MetaPuppet.reload")

#: set in a child started ahead of time: it waits for a line on stdin before it serves
GATE_ENV = "METAPUPPET_RELOAD_GATE"
#: how long a stopping child may take before it is killed
STOP_TIMEOUT_S = 10.0
#: ``python -m MetaPuppet`` with SIGINT ignored from the first moment
_IGNORE_SIGINT_THEN_RUN = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "runpy.run_module('MetaPuppet', run_name='__main__', alter_sys=True)"
)


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


def released_if_waiting() -> bool:
    """True when this process should serve: at once, or (started ahead of time by
    ``--reload``) once the parent releases it; the config and the robot are read after."""
    if not os.environ.pop(GATE_ENV, None):
        return True
    return wait_at_gate()


def wait_at_gate() -> bool:
    """In a child started ahead of time: import what every server needs, then wait until the
    parent releases it. False when the parent went away (stdin closed) or Ctrl-C came first:
    the child then exits without serving."""
    from . import sweet  # noqa: F401 - the slow part of a start, done before the change

    released = sys.stdin.readline() != ""
    if released:  # a server from here on: Ctrl-C stops it as usual
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return released


class _Children:
    """The running server and the one waiting to replace it."""

    def __init__(self, command: list[str]) -> None:
        self.command = command
        self.env = {**os.environ, "METAPUPPET_RELOADING": "1", GATE_ENV: "1"}
        self.running: subprocess.Popen[bytes] | None = None
        self.warm = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        # Ctrl-C reaches the whole process group: until it is released, the waiting child
        # ignores it (it would break its imports with a traceback) and ends on end of file
        python, _, _, *rest = self.command  # python -m MetaPuppet serve ...
        command = [python, "-c", _IGNORE_SIGINT_THEN_RUN, *rest]
        return subprocess.Popen(command, stdin=subprocess.PIPE, env=self.env)

    def start_next(self) -> None:
        """Release the waiting child (a new one if it died) and start the one after it."""
        child = self.warm
        if child.poll() is not None:
            child = self._spawn()
        assert child.stdin is not None
        try:
            child.stdin.write(b"go\n")
            child.stdin.close()
        except OSError:  # it died between the check and the write: start one the slow way
            child = self._spawn()
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            child.stdin.close()
        self.running = child
        self.warm = self._spawn()

    def stop_running(self) -> None:
        child, self.running = self.running, None
        if child is None or child.poll() is not None:
            return
        child.send_signal(signal.SIGINT)
        try:
            child.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("the server did not stop within %.0f s; killed", STOP_TIMEOUT_S)
            child.kill()
            child.wait()

    def close(self) -> None:
        self.stop_running()
        warm = self.warm
        if warm.stdin is not None:
            warm.stdin.close()  # it reads end of file and exits without serving
        try:
            warm.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            warm.kill()


def serve_with_reload(args: argparse.Namespace) -> int:
    """Run the server as a child and restart it whenever a watched file changes."""
    try:
        from watchfiles import DefaultFilter, watch
    except ImportError:
        raise ConfigError("--reload needs watchfiles: pip install 'metapuppet[reload]'") from None
    paths = watched_paths(args.bot, args.config)
    command = child_command(args)
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
    children = _Children(command)

    def terminated(signum: int, frame: object) -> None:
        raise SystemExit(0)  # through the finally below: the children stop too

    signal.signal(signal.SIGTERM, terminated)
    try:
        children.start_next()
        for changes in watch(*paths, watch_filter=wanted, debounce=400):
            restarted(changes)
            children.stop_running()
            children.start_next()
    except KeyboardInterrupt:
        pass  # Ctrl-C reached the children too; the running one is finishing its handlers
    finally:
        children.close()
    return 0
