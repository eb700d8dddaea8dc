"""Cluster: one server process's part in a cluster of them on one Redis.

Built by the server when ``cluster.redis_url`` is set (see docs/scaling.md), it wires the
parts of this package into the server through its public seams:

* the Socket.IO server runs on python-socketio's ``AsyncRedisManager``
  (:class:`~.manager.ClusterManager`), so emits and calls to a sid reach it anywhere;
* :class:`~.directory.Directory` puts this process's clients in Redis and the others'
  bots in the registry (:class:`~.links.RemotePuppetLink`); ``list_clients()`` lists all;
* :class:`~.intake.ClusterIntake` (the transport's handlers) dedupes events across
  processes (:class:`~.seen.RedisSeenIds`);
* :class:`~.ratelimit.ClusterRateLimiter` replaces the client's rate limiter (the buckets
  stay in memory on the process holding the bot; other processes book with it) and
  :class:`~.budget.RedisSendBudgets` its send budgets;
* :class:`~.forward.EventForwarder` shows every bot's events to every process's web hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

from ..errors import ClusterUnavailable
from ..presence import ClientInfo, Presence
from ..protocol import BotEvent
from ..ratelimit import RateLimiter
from ..transport.registry import PuppetRegistry
from ..transport.sio import SocketTransport
from .budget import RedisSendBudgets
from .directory import Directory
from .forward import EventForwarder
from .intake import ClusterIntake
from .links import RemotePuppetLink
from .manager import ClusterManager
from .ratelimit import ClusterRateLimiter
from .seen import RedisSeenIds
from .settings import ClusterSettings
from .state import CONNECT_TIMEOUT_S, SharedState

__all__ = ["Cluster", "ClusterHost"]

log = logging.getLogger("MetaPuppet.cluster")


class _Shows(Protocol):
    def show_event(self, event: BotEvent) -> None: ...


class _Client(Protocol):
    rate_limiter: Any
    budgets: Any

    def note_event(self, event: BotEvent) -> None: ...


class ClusterHost(Protocol):
    """What the cluster needs of the server (the composition root)."""

    registry: PuppetRegistry
    presence: Presence
    transport: SocketTransport

    @property
    def client(self) -> _Client: ...

    @property
    def web(self) -> _Shows: ...

    def add_event_listener(self, listener: Callable[[BotEvent], Any]) -> Callable[[], None]: ...


class Cluster:
    """This process's part of a cluster (see the module docstring)."""

    def __init__(self, settings: ClusterSettings) -> None:
        self.settings = settings
        self.manager = ClusterManager(settings.redis_url, settings.channel, self._on_notice)
        self.state = SharedState(settings)
        self.state.on_back.append(self._redis_back)
        self.directory: Directory | None = None
        self.intake: ClusterIntake | None = None
        self.forwarder: EventForwarder | None = None
        self.seen: RedisSeenIds | None = None
        self.limiter: ClusterRateLimiter | None = None
        self._sio: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._keeper: asyncio.Task[None] | None = None

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], redis_url: str | None = None) -> Cluster | None:
        """The cluster of the config's ``cluster`` section (None: no cluster)."""
        settings = ClusterSettings.from_config(raw, redis_url)
        return None if settings is None else cls(settings)

    @property
    def host_id(self) -> str:
        """This process's id in the cluster (python-socketio's ``host_id``)."""
        return str(self.manager.host_id)

    def install(self, host: ClusterHost) -> None:
        """Wire the cluster into ``host`` (before it starts)."""
        transport = host.transport
        self._sio = transport.sio
        self.directory = Directory(
            self.state, self.manager, transport.sio, host.registry, host.presence
        )
        host.presence.extend = self.directory.merge
        self.seen = RedisSeenIds(self.state, self.host_id)
        self.intake = ClusterIntake(
            transport.handlers,
            self.seen,
            on_client=self._client_changed,
            shared=lambda data: _runs_robot(host, data),
        )
        transport.handlers = self.intake
        client = host.client
        limiter = client.rate_limiter
        if isinstance(limiter, RateLimiter):
            self.limiter = ClusterRateLimiter(
                limiter.per_chat,
                limiter.per_bot,
                where=lambda bot: _holder(host.registry, bot, self.host_id),
                notify=self.manager.notify,
                host_id=self.host_id,
                check=self.state.check,
            )
            client.rate_limiter = self.limiter
        elif limiter is not None:
            log.warning(
                "cluster mode: the custom rate limiter %r is kept as it is; its limits hold "
                "in this process only",
                limiter,
            )
        client.budgets = RedisSendBudgets(self.state)
        self.forwarder = EventForwarder(
            self.manager,
            self.state,
            show=host.web.show_event,
            note=client.note_event,
            max_bytes=self.settings.forward_max_bytes,
            peers=lambda: bool(self.directory is not None and self.directory.remote),
        )
        host.add_event_listener(self.forwarder)

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Reach Redis (or fail with an error naming it), join the cluster, start the loops."""
        assert self.directory is not None and self.forwarder is not None, "install() first"
        url = self.settings.safe_url
        try:
            await asyncio.wait_for(self.state.client.ping(), CONNECT_TIMEOUT_S * 2)
        except Exception as exc:
            await self.state.close()
            raise ClusterUnavailable(
                f"cannot reach the cluster's Redis at {url} (cluster.redis_url, "
                f"METAPUPPET_REDIS_URL or --redis): {exc or type(exc).__name__}; start Redis "
                "or fix the URL"
            ) from None
        self.state.back()
        await self.directory.refresh()
        # python-socketio starts the manager's listener with the first connection; a process
        # that takes calls or notices before any client connected needs it now
        if not self._sio.manager_initialized:
            self._sio.manager_initialized = True
            self.manager.initialize()
        self.forwarder.start()
        self._keeper = asyncio.get_running_loop().create_task(self._keep_alive())
        log.info(
            "joined the cluster on %s as %s (%d other server processes)",
            url,
            self.directory.name,
            len(self.directory.remote),
        )

    async def stop(self) -> None:
        """Leave the cluster (after the clients were disconnected) and close."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._keeper
            self._keeper = None
        if self.forwarder is not None:
            await self.forwarder.stop()
        if self.directory is not None and self.state.up:
            await self.directory.leave()
        thread = getattr(self.manager, "thread", None)
        if isinstance(thread, asyncio.Task):
            thread.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await thread
        for client in (getattr(self.manager, "pubsub", None), getattr(self.manager, "redis", None)):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()
        await self.state.close()

    async def _keep_alive(self) -> None:
        assert self.directory is not None
        while True:
            try:
                await self.directory.refresh()
            except ClusterUnavailable:
                pass  # logged once by SharedState; tried again next round
            except Exception:
                log.exception("the cluster's refresh failed")
            await asyncio.sleep(self.settings.refresh_s)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ hooks

    def _client_changed(self, info: ClientInfo, connected: bool) -> None:
        if connected and info.role == "puppet" and info.bot and self.limiter is not None:
            self.limiter.moved_here(info.bot)
        if self.directory is not None and self.state.up:
            self._spawn(self.directory.announce(info, connected))

    def _on_notice(self, kind: str, data: Any, host: str) -> None:
        if self.directory is None or self.forwarder is None:
            return
        if kind == "events":
            self.forwarder.on_events(data, host)
        elif kind == "attach":
            self.directory.on_attach(data, host)
        elif kind == "detach":
            self.directory.on_detach(data, host)
        elif kind == "book" and self.limiter is not None:
            self._spawn(self.limiter.on_book(data, host))
        elif kind == "booked" and self.limiter is not None:
            self.limiter.on_booked(data)

    def _redis_back(self) -> None:
        """Redis answers again: connections whose events were turned away meanwhile are
        closed, so their clients reconnect and send them again, in order."""
        intake = self.intake
        if intake is None or not intake.deferred or self._sio is None:
            return
        sids, intake.deferred = list(intake.deferred), set()
        log.info(
            "the cluster's Redis is back: %d puppets reconnect to send what they kept", len(sids)
        )
        for sid in sids:
            self._spawn(self._sio.disconnect(sid))


def _runs_robot(host: object, data: dict[str, Any]) -> bool:
    """Whether the robot may run for this event: the bot's own messages (the echo of every
    reply) do not, unless it asks for them, so they need no shared dedupe (a copy re-sent
    after a fail-over only shows twice in another process's feed)."""
    if data.get("name") != "message":
        return True
    payload = data.get("payload")
    if not isinstance(payload, dict) or not payload.get("self"):
        return True
    return bool(getattr(getattr(host, "robot", None), "handle_self_messages", False))


def _holder(registry: PuppetRegistry, bot: str, here: str) -> str | None:
    """The host id of the process holding ``bot``'s connection (None: not connected)."""
    link = registry.get(bot)
    if link is None:
        return None
    return link.host if isinstance(link, RemotePuppetLink) else here
