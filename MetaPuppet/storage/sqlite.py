"""SQLiteStorage: state in one SQLite file; embedded, no server, survives restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .._files import private_file
from .base import DEFAULT_LOCK_WAIT, BaseStorage, KeyLocks, StorageError, StorageKey

__all__ = [
    "SQLiteStorage",
]

log = logging.getLogger("MetaPuppet.storage")
T = TypeVar("T")

_SWEEP_EVERY = 1000


#: (key, JSON text or None to delete, expiry, sweep expired rows up to this time)
_Write = tuple[str, str | None, float | None, float | None]


def _settle(futures: list[asyncio.Future[None]], error: Exception | None, path: str) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            failure = StorageError(f"SQLite store {path}: {error}")
            failure.__cause__ = error
            future.set_exception(failure)


class SQLiteStorage(BaseStorage):
    """Keeps values in a SQLite file (stdlib ``sqlite3``, WAL mode).

    Every query runs on one dedicated thread, never on the event loop; writes that arrive
    together are committed together (one transaction), and each ``set``/``delete`` returns
    once its own write is committed. The file survives a restart of the server, so dialogs
    continue where they stopped.

    One process owns the file: locks hold within the process, and the store remembers the
    ``cache_size`` most recently used keys (values, and which keys are absent), so most reads
    need no query. For several server processes sharing state, use :class:`RedisStorage`::

        store = SQLiteStorage("data/metapuppet.db")
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        namespace: str = "metapuppet",
        clock: Callable[[], float] = time.time,
        cache_size: int = 10_000,
    ) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            # dialog state holds message text: the file is 0600 in a 0700 folder, and SQLite
            # gives its -wal and -shm files the database file's mode
            try:
                private_file(Path(self.path))
            except OSError as exc:
                raise StorageError(f"cannot create the SQLite store {self.path}: {exc}") from exc
        self.namespace = namespace
        self._clock = clock
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="metapuppet-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._locks = KeyLocks()
        self._writes = 0
        self._closed = False
        # key -> (JSON text or None when absent, expiry); exact, since only we write the file
        self._cache: OrderedDict[str, tuple[str | None, float | None]] = OrderedDict()
        self._cache_size = cache_size
        # writes waiting for the store's thread, and whether it is draining them
        self._batch: list[tuple[_Write, asyncio.Future[None]]] = []
        self._batch_lock = threading.Lock()
        self._draining = False

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

    def _get(self, key: str, now: float) -> tuple[str | None, float | None]:
        row = (
            self._connection()
            .execute(
                "SELECT value, expires_at FROM metapuppet_state "
                "WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
                (key, now),
            )
            .fetchone()
        )
        return (None, None) if row is None else (str(row[0]), row[1])

    def _apply(self, conn: sqlite3.Connection, write: _Write) -> None:
        key, text, expires_at, sweep_before = write
        if text is None:
            conn.execute("DELETE FROM metapuppet_state WHERE key = ?", (key,))
        else:
            conn.execute(
                "INSERT INTO metapuppet_state (key, value, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET "
                "value = excluded.value, expires_at = excluded.expires_at",
                (key, text, expires_at),
            )
        if sweep_before is not None:
            conn.execute("DELETE FROM metapuppet_state WHERE expires_at <= ?", (sweep_before,))

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit the waiting writes, a batch per transaction, until none are left."""
        while True:
            with self._batch_lock:
                batch, self._batch = self._batch, []
                if not batch:
                    self._draining = False
                    return
            error: Exception | None = None
            try:
                conn = self._connection()
                conn.execute("BEGIN")
                try:
                    for write, _ in batch:
                        self._apply(conn, write)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except Exception as exc:  # reported to every writer of the batch
                error = exc
            futures = [future for _, future in batch]
            try:
                loop.call_soon_threadsafe(_settle, futures, error, self.path)
            except RuntimeError:  # the loop is closed: nobody waits any more
                log.debug("SQLite store %s: writes finished after their loop closed", self.path)

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

    def _remember(self, name: str, text: str | None, expires: float | None) -> None:
        if self._cache_size <= 0:
            return
        self._cache[name] = (text, expires)
        self._cache.move_to_end(name)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def get(self, key: StorageKey) -> dict[str, Any] | None:
        name = key.encode(self.namespace)
        now = self._clock()
        cached = self._cache.get(name)
        if cached is not None:
            self._cache.move_to_end(name)
            text, expires = cached
            if expires is not None and expires <= now:
                text = None
        else:
            text, expires = await self._run(self._get, name, now)
            self._remember(name, text, expires)
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
        name = key.encode(self.namespace)
        self._cache.pop(name, None)  # unknown while the write is under way
        await self._write((name, text, expires, sweep))
        self._remember(name, text, expires)

    async def delete(self, key: StorageKey) -> None:
        name = key.encode(self.namespace)
        self._cache.pop(name, None)
        await self._write((name, None, None, None))
        self._remember(name, None, None)

    async def _write(self, write: _Write) -> None:
        if self._closed:
            raise StorageError(f"the SQLite store {self.path} is closed")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        with self._batch_lock:
            self._batch.append((write, done))
            start, self._draining = not self._draining, True
        if start:
            self._thread.submit(self._drain, loop)
        await done

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
