"""MemoryStorage: state in a dict, for tests and single-process bots that may forget on restart."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from .base import DEFAULT_LOCK_WAIT, BaseStorage, KeyLocks, StorageKey

__all__ = [
    "MemoryStorage",
]

_SWEEP_EVERY = 1000


class MemoryStorage(BaseStorage):
    """Keeps values (as JSON text, like the other stores) in this process's memory.

    ``clock`` is injectable for tests of expiry. Locks hold within this process only.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._data: dict[StorageKey, tuple[str, float | None]] = {}
        self._locks = KeyLocks()
        self._writes = 0

    def __len__(self) -> int:
        now = self._clock()
        return sum(1 for _, expires in self._data.values() if expires is None or expires > now)

    async def get(self, key: StorageKey) -> dict[str, Any] | None:
        item = self._data.get(key)
        if item is None:
            return None
        text, expires = item
        if expires is not None and expires <= self._clock():
            del self._data[key]
            return None
        value: dict[str, Any] = json.loads(text)
        return value

    async def set(self, key: StorageKey, value: dict[str, Any], ttl: float | None = None) -> None:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        self._data[key] = (text, None if ttl is None else self._clock() + ttl)
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            self._sweep()

    async def delete(self, key: StorageKey) -> None:
        self._data.pop(key, None)

    def lock(
        self, key: StorageKey, timeout: float = DEFAULT_LOCK_WAIT
    ) -> contextlib.AbstractAsyncContextManager[None]:
        return self._locks.hold(key, timeout)

    def _sweep(self) -> None:
        now = self._clock()
        for key in [k for k, (_, exp) in self._data.items() if exp is not None and exp <= now]:
            del self._data[key]
