"""RedisStorage: state in Redis, shared by several server processes."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .base import DEFAULT_LOCK_WAIT, BaseStorage, LockTimeout, StorageError, StorageKey

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "DEFAULT_LOCK_TTL",
    "RedisStorage",
]

log = logging.getLogger("MetaPuppet.storage")

#: A lock is released by Redis itself after this long, should its holder die mid-step.
DEFAULT_LOCK_TTL = 60.0


def _redis_module() -> Any:
    try:
        import redis.asyncio as redis_asyncio
    except ImportError:  # pragma: no cover - depends on the environment
        raise StorageError(
            "RedisStorage needs the redis package: pip install 'MetaPuppet[redis]'"
        ) from None
    return redis_asyncio


class RedisStorage(BaseStorage):
    """Keeps values in Redis (``redis-py`` asyncio client).

    Every write is one atomic ``SET ... PX`` command. ``lock(key)`` is a Redis lock (``SET NX
    PX`` with a random token, released by a compare-and-delete script), so two processes
    never hold the same key at once; a holder that dies releases it after ``lock_ttl`` s::

        store = RedisStorage.from_url("redis://localhost:6379/0")
    """

    def __init__(
        self,
        client: Redis,
        *,
        namespace: str = "metapuppet",
        lock_ttl: float = DEFAULT_LOCK_TTL,
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.lock_ttl = lock_ttl
        self._owns_client = owns_client

    @classmethod
    def from_url(cls, url: str, *, max_connections: int = 64, **kwargs: Any) -> RedisStorage:
        """Connect to ``redis://host:port/db`` (or ``unix:///path/redis.sock``).

        Up to ``max_connections`` commands run at once; more wait for a free connection
        (redis-py's default pool raises "Too many connections" instead, which a busy bot
        with hundreds of handlers running would hit). When you pass your own client, give
        it a ``BlockingConnectionPool`` for the same reason.
        """
        module = _redis_module()
        pool = module.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=DEFAULT_LOCK_WAIT
        )
        return cls(module.Redis(connection_pool=pool), owns_client=True, **kwargs)

    def _name(self, key: StorageKey) -> str:
        return key.encode(self.namespace)

    async def get(self, key: StorageKey) -> dict[str, Any] | None:
        try:
            raw = await self.client.get(self._name(key))
        except Exception as exc:
            raise StorageError(f"Redis GET failed: {exc}") from exc
        if raw is None:
            return None
        value: dict[str, Any] = json.loads(raw)
        return value

    async def set(self, key: StorageKey, value: dict[str, Any], ttl: float | None = None) -> None:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        px = None if ttl is None else max(1, int(ttl * 1000))
        try:
            await self.client.set(self._name(key), text, px=px)
        except Exception as exc:
            raise StorageError(f"Redis SET failed: {exc}") from exc

    async def delete(self, key: StorageKey) -> None:
        try:
            await self.client.delete(self._name(key))
        except Exception as exc:
            raise StorageError(f"Redis DEL failed: {exc}") from exc

    @contextlib.asynccontextmanager
    async def _hold(self, key: StorageKey, timeout: float) -> AsyncIterator[None]:
        lock = self.client.lock(
            self._name(key) + ":lock",
            timeout=self.lock_ttl,
            sleep=0.005,
            blocking_timeout=timeout,
        )
        try:
            acquired = await lock.acquire()
        except Exception as exc:
            raise StorageError(f"Redis lock on {key} failed: {exc}") from exc
        if not acquired:
            raise LockTimeout(f"{key} stayed locked for more than {timeout:.1f} s")
        try:
            yield
        finally:
            try:
                await lock.release()
            except Exception:
                # expired while held (a step longer than lock_ttl): someone else may own it now
                log.warning("the Redis lock on %s expired before it was released", key)

    def lock(
        self, key: StorageKey, timeout: float = DEFAULT_LOCK_WAIT
    ) -> contextlib.AbstractAsyncContextManager[None]:
        return self._hold(key, timeout)

    async def close(self) -> None:
        if self._owns_client:
            await self.client.aclose()
            await self.client.connection_pool.disconnect()
