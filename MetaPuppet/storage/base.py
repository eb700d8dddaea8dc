"""The state-store interface: JSON values under a (bot, chat, user) key, with a TTL and a lock."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..errors import MetaPuppetError

__all__ = [
    "DEFAULT_LOCK_WAIT",
    "BaseStorage",
    "KeyLocks",
    "LockTimeout",
    "StorageError",
    "StorageKey",
]

#: How long ``lock()`` waits for a busy key before it gives up (seconds).
DEFAULT_LOCK_WAIT = 30.0


class StorageError(MetaPuppetError):
    """A state store failed (unreachable server, corrupt value, ...)."""


class LockTimeout(StorageError, TimeoutError):
    """A key stayed locked by someone else for longer than the caller would wait."""


@dataclass(frozen=True, slots=True)
class StorageKey:
    """Where one conversation's state lives: a bot account, a chat (contact or room), a user."""

    bot: str
    chat: str
    user: str

    def encode(self, namespace: str) -> str:
        """A flat string key; every part is escaped, so ids with ``:`` cannot collide."""
        parts = (quote(self.bot, safe=""), quote(self.chat, safe=""), quote(self.user, safe=""))
        return f"{namespace}:{':'.join(parts)}"


class BaseStorage(ABC):
    """A small key-value store for conversation state.

    Values are JSON objects (``dict``); every implementation round-trips them through JSON,
    so what works with :class:`MemoryStorage` in tests works with SQLite and Redis too.
    ``ttl`` is in seconds (``None``: keep until deleted). ``lock(key)`` is an async context
    manager that serialises work on one key::

        async with store.lock(key):
            state = await store.get(key) or {}
            state["count"] = state.get("count", 0) + 1
            await store.set(key, state, ttl=3600)
    """

    @abstractmethod
    async def get(self, key: StorageKey) -> dict[str, Any] | None:
        """The value under ``key``, or None when absent or expired."""

    @abstractmethod
    async def set(self, key: StorageKey, value: dict[str, Any], ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` (replacing any old value), expiring after ``ttl`` s."""

    @abstractmethod
    async def delete(self, key: StorageKey) -> None:
        """Remove ``key``; removing an absent key is not an error."""

    @abstractmethod
    def lock(
        self, key: StorageKey, timeout: float = DEFAULT_LOCK_WAIT
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold ``key`` exclusively; raises :class:`LockTimeout` after waiting ``timeout`` s."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and threads; the store is unusable afterwards."""


class KeyLocks:
    """One ``asyncio.Lock`` per key in use; a key's lock is dropped once nobody holds or waits."""

    def __init__(self) -> None:
        self._locks: dict[StorageKey, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, key: StorageKey, timeout: float) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            try:
                await asyncio.wait_for(lock.acquire(), timeout)
            except TimeoutError:
                raise LockTimeout(f"{key} stayed locked for more than {timeout:.1f} s") from None
            try:
                yield
            finally:
                lock.release()
        finally:
            current, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (current, users - 1)
