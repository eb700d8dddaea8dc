"""NodeClient: one real ``socket_client`` process with its own config file, log and outbox."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from .._files import write_json
from ..errors import MetaPuppetError

__all__ = ["NodeClient", "NodeClientError", "find_client_dir", "node_command"]

_LIVE_PROCESSES: set[int] = set()


def _kill_leftovers() -> None:
    for pid in list(_LIVE_PROCESSES):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


atexit.register(_kill_leftovers)


class NodeClientError(MetaPuppetError):
    """The Node client could not be started, or stopped unexpectedly."""


def find_client_dir() -> Path:
    """Where ``socket_client/`` is: ``$METAPUPPET_CLIENT_DIR`` or beside the package."""
    configured = os.environ.get("METAPUPPET_CLIENT_DIR")
    candidates = [Path(configured)] if configured else []
    candidates += [Path(__file__).resolve().parents[2] / "socket_client", Path("socket_client")]
    for candidate in candidates:
        if (candidate / "src" / "main.ts").is_file():
            if not (candidate / "node_modules" / "tsx").is_dir():
                raise NodeClientError(
                    f"{candidate} has no node_modules: run `npm ci` there (or `make setup`)"
                )
            return candidate.resolve()
    raise NodeClientError(
        "cannot find socket_client/ (the Node client); set METAPUPPET_CLIENT_DIR to its path"
    )


def node_command(client_dir: Path, config_path: Path) -> list[str]:
    node = shutil.which("node")
    if node is None:
        raise NodeClientError("node is not on PATH: install Node.js 20")
    return [node, "--import", "tsx", "src/main.ts", "--config", str(config_path)]


class NodeClient:
    """One ``socket_client`` process with its own config file and log."""

    def __init__(self, config: dict[str, Any], *, log_level: str = "info") -> None:
        self.config = config
        self.log_level = log_level
        self.client_dir = find_client_dir()
        self._dir = Path(tempfile.mkdtemp(prefix="metapuppet-node-"))
        self.config_path = self._dir / "config.json"
        self.log_path = self._dir / "client.log"
        #: the client's outbox file survives a restart of the client (not of the kit)
        self.outbox_path = self._dir / "outbox.jsonl"
        config.setdefault("client", {}).setdefault("outbox_path", str(self.outbox_path))
        #: the client's data (a puppet's saved login, say) survives a restart of the client
        self.data_dir = self._dir / "data"
        config.setdefault("server", {}).setdefault("data_dir", str(self.data_dir))
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        # the config holds the token: 0600 in the kit's 0700 folder, whatever the umask
        write_json(self.config_path, self.config)
        env = {k: v for k, v in os.environ.items() if not k.startswith("METAPUPPET_")} | {
            "METAPUPPET_LOG_LEVEL": self.log_level,
            # the client stops by itself if this process is killed (no orphaned Node clients)
            "METAPUPPET_PARENT_PID": str(os.getpid()),
        }
        descriptor = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(descriptor, 0o600)
        log_file = os.fdopen(descriptor, "ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                *node_command(self.client_dir, self.config_path),
                cwd=self.client_dir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
            )
        finally:
            log_file.close()
        _LIVE_PROCESSES.add(self.process.pid)

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self, timeout: float = 5.0, *, keep_files: bool = False) -> None:
        """SIGTERM the client (SIGKILL after ``timeout``); remove its files unless kept."""
        process = self.process
        if process is None:
            if not keep_files:
                shutil.rmtree(self._dir, ignore_errors=True)
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        # the client's own children (if any) go with its process group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        _LIVE_PROCESSES.discard(process.pid)
        if not keep_files:
            shutil.rmtree(self._dir, ignore_errors=True)

    async def kill(self) -> None:
        """SIGKILL the client (a crash, for reliability tests)."""
        if self.process is not None and self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()
            _LIVE_PROCESSES.discard(self.process.pid)
