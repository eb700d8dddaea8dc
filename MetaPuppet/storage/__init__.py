"""State stores for dialogs (and anything else keyed by bot, chat and user).

- :class:`MemoryStorage`: a dict in this process; tests, throwaway bots.
- :class:`SQLiteStorage`: one file, no server; survives restarts of one server process.
- :class:`RedisStorage`: a Redis server; several server processes share dialogs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import BaseStorage, LockTimeout, StorageError, StorageKey
from .memory import MemoryStorage
from .sqlite import SQLiteStorage

if TYPE_CHECKING:
    from .redis import RedisStorage


def __getattr__(name: str) -> Any:
    # redis-py is an optional dependency: import it only when RedisStorage is used
    if name == "RedisStorage":
        from .redis import RedisStorage

        return RedisStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BaseStorage",
    "LockTimeout",
    "MemoryStorage",
    "RedisStorage",
    "SQLiteStorage",
    "StorageError",
    "StorageKey",
]
