"""SQLiteStorage: state in one SQLite file; embedded, no server, survives restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .base import DEFAULT_LOCK_WAIT, BaseStorage, KeyLocks, StorageError, StorageKey

log = logging.getLogger("MetaPuppet.storage")
T = TypeVar("T")

_SWEEP_EVERY = 1000


class SQLiteStorage(BaseStorage):
    """Keeps values in a SQLite file (stdlib ``sqlite3``, WAL mode).

    Every query runs on one dedicated thread, never on the event loop. The file survives a
    restart of the server, so dialogs continue where they stopped. Locks hold within one
    process: for several server processes sharing state, use :class:`RedisStorage`::

        store = SQLiteStorage("data/metapuppet.db")
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        namespace: str = "metapuppet",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.namespace = namespace
        self._clock = clock
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="metapuppet-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._locks = KeyLocks()
        self._writes = 0
        self._closed = False

    # all of these run on the store's own thread --------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS metapuppet_state ("
                "key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL)"
            )
            self._conn = conn
        return self._conn

    def _get(self, key: str, now: float) -> str | None:
        row = (
            self._connection()
            .execute(
                "SELECT value FROM metapuppet_state "
                "WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
                (key, now),
            )
            .fetchone()
        )
        return None if row is None else str(row[0])

    def _set(
        self, key: str, text: str, expires_at: float | None, sweep_before: float | None
    ) -> None:
        conn = self._connection()
        conn.execute(
            "INSERT INTO metapuppet_state (key, value, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET "
            "value = excluded.value, expires_at = excluded.expires_at",
            (key, text, expires_at),
        )
        if sweep_before is not None:
            conn.execute("DELETE FROM metapuppet_state WHERE expires_at <= ?", (sweep_before,))

    def _delete(self, key: str) -> None:
        self._connection().execute("DELETE FROM metapuppet_state WHERE key = ?", (key,))

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # the async API ----------------------------------------------------------------------

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StorageError(f"the SQLite store {self.path} is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, func, *args)
        except sqlite3.Error as exc:
            raise StorageError(f"SQLite store {self.path}: {exc}") from exc

    async def get(self, key: StorageKey) -> dict[str, Any] | None:
        text = await self._run(self._get, key.encode(self.namespace), self._clock())
        if text is None:
            return None
        value: dict[str, Any] = json.loads(text)
        return value

    async def set(self, key: StorageKey, value: dict[str, Any], ttl: float | None = None) -> None:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        now = self._clock()
        self._writes += 1
        sweep = now if self._writes % _SWEEP_EVERY == 0 else None
        expires = None if ttl is None else now + ttl
        await self._run(self._set, key.encode(self.namespace), text, expires, sweep)

    async def delete(self, key: StorageKey) -> None:
        await self._run(self._delete, key.encode(self.namespace))

    def lock(
        self, key: StorageKey, timeout: float = DEFAULT_LOCK_WAIT
    ) -> contextlib.AbstractAsyncContextManager[None]:
        return self._locks.hold(key, timeout)

    async def close(self) -> None:
        if self._closed:
            return
        await self._run(self._close)
        self._closed = True
        self._thread.shutdown(wait=False)
