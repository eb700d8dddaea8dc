"""The shared state's Redis client, and whether Redis answers right now.

One redis-py asyncio client per process (a blocking pool: a busy process waits for a free
connection instead of failing). Every command goes through :meth:`SharedState.run`, which
turns a Redis failure into :class:`~MetaPuppet.errors.ClusterUnavailable` naming the URL
(never its password) and marks Redis as lost until a later command works again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ..errors import ClusterUnavailable, ConfigError
from .settings import ClusterSettings

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Batcher", "SharedState", "connect_redis"]

log = logging.getLogger("MetaPuppet.cluster")
T = TypeVar("T")

#: a Redis that does not take the connection within this long counts as unreachable
CONNECT_TIMEOUT_S = 3.0
#: commands running at once per process; more wait for a free connection
MAX_CONNECTIONS = 64


def connect_redis(settings: ClusterSettings) -> Redis:
    """A redis-py asyncio client for ``settings.redis_url``.

    ``redis+sentinel://`` URLs are read with python-socketio's own parser (the manager reads
    them the same way); ``valkey://`` URLs speak the same protocol and use redis-py here.
    """
    try:
        import redis.asyncio as redis_asyncio
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "cluster mode needs the redis package: pip install 'MetaPuppet[redis]'"
        ) from None
    url = settings.redis_url
    scheme = url.partition("://")[0].lower()
    if scheme.endswith("+sentinel"):
        from redis.asyncio.sentinel import Sentinel
        from socketio.redis_manager import parse_redis_sentinel_url

        sentinels, service, options = parse_redis_sentinel_url(url)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            sentinels, socket_connect_timeout=CONNECT_TIMEOUT_S, **options
        )
        client: Redis = sentinel.master_for(service or settings.channel)
        return client
    if scheme in ("valkey", "valkeys"):
        parts = urlsplit(url)
        url = urlunsplit(("redis" if scheme == "valkey" else "rediss", *parts[1:]))
    pool = redis_asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=CONNECT_TIMEOUT_S * 2,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
    )
    return redis_asyncio.Redis(connection_pool=pool)


class Batcher:
    """Commands of many concurrent callers sent to Redis in one pipeline (one round trip).

    A command submitted while no batch is in flight goes out in the next turn of the event
    loop, with whatever else was submitted in that turn; while a batch is in flight, new
    commands wait for it and then go out together. So an idle process pays no delay and a
    busy one sends one pipeline where it would send dozens of commands: with redis-py, a
    round trip costs several times the Python CPU of a command in a pipeline.
    """

    #: at most this many commands in one pipeline
    MAX_BATCH = 256
    #: a command that may wait (``submit(lazy=True)``) goes out this long after it was
    #: submitted, unless it was withdrawn meanwhile
    LAZY_S = 0.1

    def __init__(self, client: Redis, *, in_flight: int = 1) -> None:
        self.client = client
        self._pending: list[tuple[Callable[[Any], Any], asyncio.Future[Any]]] = []
        #: pipelines that may be in flight at once (more: the next waits for one to return)
        self.in_flight = in_flight
        self._flying = 0
        self._scheduled = False
        #: lazy commands by their future, with the time each is due (oldest first)
        self._lazy: dict[asyncio.Future[Any], tuple[Callable[[Any], Any], float]] = {}
        self._lazy_timer: asyncio.TimerHandle | None = None
        #: pipelines sent and commands in them (for tests and the bench)
        self.batches = 0
        self.commands = 0

    def submit(self, add: Callable[[Any], Any], *, lazy: bool = False) -> asyncio.Future[Any]:
        """``add(pipeline)`` queues one command; the future gets its reply (or error).

        ``lazy``: the command goes out :attr:`LAZY_S` later (with what is pending then), and
        :meth:`withdraw` can take it back until then.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if lazy:
            self._lazy[future] = (add, loop.time() + self.LAZY_S)
            if self._lazy_timer is None:
                self._lazy_timer = loop.call_later(self.LAZY_S, self._wake, loop)
            return future
        self._pending.append((add, future))
        if not self._scheduled and self._flying < self.in_flight:
            self._scheduled = True
            loop.call_soon(self._flush, loop)
        return future

    def withdraw(self, future: asyncio.Future[Any]) -> bool:
        """Take back a lazy command that has not gone out yet (True: taken back; its
        future is left pending for the caller to settle)."""
        return self._lazy.pop(future, None) is not None

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        """Lazy commands that are due join the pending ones; the timer is set for the next."""
        self._lazy_timer = None
        now = loop.time() + 0.001
        due = []
        for future, (add, at) in self._lazy.items():
            if at > now:
                self._lazy_timer = loop.call_at(at, self._wake, loop)
                break
            due.append(future)
            self._pending.append((add, future))
        for future in due:
            del self._lazy[future]
        if due and not self._scheduled and self._flying < self.in_flight:
            self._scheduled = True
            self._flush(loop)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        while self._pending and self._flying < self.in_flight:
            batch = self._pending[: self.MAX_BATCH]
            del self._pending[: self.MAX_BATCH]
            self._flying += 1
            task = loop.create_task(self._send(batch))
            task.add_done_callback(lambda _: self._landed(loop))

    def _landed(self, loop: asyncio.AbstractEventLoop) -> None:
        self._flying -= 1
        if self._pending and not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush, loop)

    async def _send(self, batch: list[tuple[Callable[[Any], Any], asyncio.Future[Any]]]) -> None:
        self.batches += 1
        self.commands += len(batch)
        try:
            pipe = self.client.pipeline(transaction=False)
            for add, _ in batch:
                add(pipe)
            replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)


class SharedState:
    """This process's client of the shared Redis, and its health.

    ``on_back`` hooks run (as tasks, by the caller's loop) when Redis answers again after it
    was lost.
    """

    def __init__(self, settings: ClusterSettings) -> None:
        self.settings = settings
        self.client = connect_redis(settings)
        #: the hot commands (event claims, rate buckets) go through one pipeline
        self.batcher = Batcher(self.client)
        self.up = False
        self.lost_at: float | None = None
        self.on_back: list[Callable[[], Any]] = []
        self._failures = 0

    def key(self, *parts: str) -> str:
        """A key of ours: ``<key_prefix>:<part>:<part>...``."""
        return ":".join((self.settings.key_prefix, *parts))

    def unavailable(self, what: str, cause: object = None) -> ClusterUnavailable:
        detail = f" ({cause})" if cause else ""
        return ClusterUnavailable(
            f"{what}: the cluster's Redis at {self.settings.safe_url} cannot be reached"
            f"{detail}; events wait in the Node clients' outboxes until it is back"
        )

    def check(self, what: str) -> None:
        """Raise :class:`ClusterUnavailable` at once while Redis is lost."""
        if not self.up:
            raise self.unavailable(what, "lost since " + _clock(self.lost_at))

    async def run(self, what: str, command: Awaitable[T]) -> T:
        """Await one Redis command; a failure marks Redis lost and raises ClusterUnavailable."""
        try:
            result = await command
        except Exception as exc:
            if not _is_redis_failure(exc):
                raise
            self.lost(exc)
            raise self.unavailable(what, exc) from None
        self.back()
        return result

    async def batched(self, what: str, add: Callable[[Any], Any]) -> Any:
        """:meth:`run` for one command ``add(pipeline)`` queues, sent with others
        (:class:`Batcher`)."""
        return await self.run(what, self.batcher.submit(add))

    def lost(self, cause: object) -> None:
        """Redis stopped answering."""
        self._failures += 1
        if self.up or self.lost_at is None:
            self.lost_at = time.time()
            log.error(
                "lost the cluster's Redis at %s (%s): calls fail with ClusterUnavailable and "
                "events wait in the Node clients' outboxes until it is back",
                self.settings.safe_url,
                cause,
            )
        self.up = False

    def back(self) -> None:
        """Redis answers (again)."""
        if self.up:
            return
        if self.lost_at is not None and self._failures:
            log.warning(
                "the cluster's Redis at %s answers again (lost for %.1f s)",
                self.settings.safe_url,
                time.time() - self.lost_at,
            )
        self.up = True
        self._failures = 0
        for hook in list(self.on_back):
            hook()

    async def close(self) -> None:
        try:
            await self.client.aclose()
            await self.client.connection_pool.disconnect()
        except Exception:  # pragma: no cover - best effort on the way out
            log.debug("closing the Redis client failed", exc_info=True)


def _is_redis_failure(exc: BaseException) -> bool:
    """A lost or unreachable Redis (not a bad command: that is a bug, raised as it is)."""
    try:
        from redis import exceptions
    except ImportError:  # pragma: no cover
        return isinstance(exc, OSError | TimeoutError)
    lost = (exceptions.ConnectionError, exceptions.TimeoutError, exceptions.ReadOnlyError)
    return isinstance(exc, (*lost, OSError, TimeoutError))


def _clock(at: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at)) if at else "the start"
