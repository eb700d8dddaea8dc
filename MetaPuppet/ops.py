"""What an operator runs a bot with: the scheduler, proactive messages, plugins, metrics.

:class:`Ops` builds the four parts and hooks them into the server's pipeline and client
through their public hooks (an event listener, ``pipeline.after_handled``,
``pipeline.observer``, ``client.observer``); :class:`OpsAPI` is the server's share of
methods (``send_later``, ``outbox_status``, ...), mixed into
:class:`~MetaPuppet.server.SocketServerCore` like the original project's names are.

Config sections (all optional): ``schedule`` (``missed``, ``grace_s``, ``timezone``,
``store``), ``proactive`` (``expires_s``, ``reserve``, ``max_queued``, ``max_per_chat``,
``max_message_bytes``, ``retry_s``), ``plugins`` (``disabled``, ``settings``), ``metrics``
(``public``: serve ``/metrics`` without a token).
"""

from __future__ import annotations

import importlib.util
import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from ._loop import on_loop, running_loop
from ._sync import sync_twin
from .client import PuppetClient
from .config import Config
from .metrics import Metrics
from .outbox_store import OutboxRecord
from .pipeline import EventPipeline
from .plugins import Plugin, PluginManager, PluginState
from .presence import Presence
from .proactive import ProactiveOutbox

__all__ = ["Ops", "OpsAPI", "OpsHost"]

log = logging.getLogger("MetaPuppet.ops")


class OpsHost(Protocol):
    """What :class:`Ops` needs of the server."""

    config: Config
    client: PuppetClient
    pipeline: EventPipeline
    presence: Presence

    @property
    def robot(self) -> Any: ...

    @property
    def data_dir(self) -> Path | None: ...

    async def call_handler(self, handler: Any, *args: Any) -> Any: ...

    async def send_later(
        self,
        contact: Any,
        message: Any,
        *,
        expires: Any = None,
        bot: str | None = None,
        room: bool | None = None,
    ) -> Any: ...


class Ops:
    """The scheduler, the proactive outbox, the plugins and the metrics of one server."""

    def __init__(self, host: OpsHost) -> None:
        self.host = host
        raw = host.config.raw
        self.metrics = Metrics()
        self.outbox = ProactiveOutbox(host.client, raw.get("proactive"))
        self.plugins = PluginManager(raw.get("plugins"))
        self._scheduler: Any = None
        self.metrics_public = bool((raw.get("metrics") or {}).get("public", False))
        self.metrics.clients = host.presence.list
        self.metrics.proactive = self.outbox.counts
        host.client.observer = self.metrics
        host.pipeline.observer = self.metrics
        # neither needs the bot's own messages: the Node clients need not forward them
        host.pipeline.add_listener(self.metrics.on_event, self_messages=False)
        host.pipeline.add_listener(self.outbox.on_event, self_messages=False)
        host.pipeline.after_handled.append(self.outbox.after_handled)

    @property
    def scheduler(self) -> Any:
        """The :class:`~MetaPuppet.scheduler.Scheduler` (APScheduler is imported on first
        use: it is the ``metapuppet[schedule]`` extra)."""
        if self._scheduler is None:
            from .scheduler import Scheduler

            self._scheduler = Scheduler(self.host, self.host.config.raw.get("schedule"))
        return self._scheduler

    def _wants_scheduler(self) -> bool:
        """A robot that can declare jobs gets a scheduler (when APScheduler is installed;
        without it, declaring a job is the error)."""
        if self._scheduler is not None:
            return True
        jobs = getattr(self.host.robot, "jobs", None)
        if jobs is None:
            return False
        return bool(jobs.specs) or importlib.util.find_spec("apscheduler") is not None

    async def start(self) -> None:
        """Open the durable parts (data directory) and start the background work."""
        data_dir = self.host.data_dir
        await self.outbox.start(data_dir)
        robot_jobs = getattr(self.host.robot, "jobs", None)
        if self._wants_scheduler():
            if robot_jobs is not None:
                self.scheduler.attach(robot_jobs)
            await self.scheduler.start(data_dir)
        await self.plugins.started(self.host)

    async def stop(self) -> None:
        if self._scheduler is not None:
            await self._scheduler.stop()
        await self.outbox.stop()

    def jobs(self) -> list[dict[str, Any]]:
        return [] if self._scheduler is None else self._scheduler.jobs()

    def runs(self) -> list[dict[str, Any]]:
        return [] if self._scheduler is None else self._scheduler.runs()


class OpsAPI:
    """The server's methods for proactive messages, jobs and plugins (a mixin)."""

    ops: Ops
    robot: Any
    _loop: Any
    #: how long a stop waits for open connections to close (aiohttp's shutdown_timeout,
    #: waited twice per connection); ``serve --reload`` restarts with 0.25
    shutdown_timeout: float = 2.0

    async def send_later(
        self,
        contact: Any,
        message: Any,
        *,
        expires: float | timedelta | datetime | None = None,
        bot: str | None = None,
        room: bool | None = None,
    ) -> OutboxRecord:
        """Send ``message`` (text, FileBox, UrlLink) to ``contact`` on the bot's own
        initiative, within the channel's send window.

        It is written to a durable queue first; delivered now when the channel allows
        (always, on channels without a send budget), else when the user writes again,
        after the robot's reply. ``expires`` (seconds, a timedelta or a datetime; default
        ``proactive.expires_s``, 24 h; ``MetaPuppet.proactive.NEVER``) ends a message that
        could not be delivered in time as ``expired``. Returns its record: follow it with
        :meth:`outbox_status`.
        """
        call = self.ops.outbox.send_later(contact, message, bot=bot, expires=expires, room=room)
        if self._loop is not None and running_loop() is not self._loop:
            return await on_loop(self._loop, call)
        return await call

    send_later_sync = sync_twin(send_later)

    def outbox_status(self, message_id: str) -> OutboxRecord | None:
        """Where proactive message ``message_id`` stands (None: unknown or forgotten)."""
        return self.ops.outbox.status(message_id)

    def outbox_messages(
        self,
        *,
        contact: Any = None,
        state: str | None = None,
        bot: str | None = None,
        limit: int = 100,
    ) -> list[OutboxRecord]:
        """Proactive messages, newest first, by contact, state and bot."""
        return self.ops.outbox.messages(bot=bot, contact=contact, state=state, limit=limit)

    @property
    def scheduler(self) -> Any:
        """The jobs' scheduler (:class:`~MetaPuppet.scheduler.Scheduler`)."""
        return self.ops.scheduler

    @property
    def metrics(self) -> Metrics:
        return self.ops.metrics

    @property
    def plugins(self) -> PluginManager:
        return self.ops.plugins

    def use_plugin(self, plugin: Plugin) -> PluginState:
        """Load ``plugin`` onto the robot (installed plugins: :meth:`load_plugins`)."""
        return self.ops.plugins.use(plugin, self.robot, _LazyScheduler(self.ops))

    def load_plugins(self) -> list[PluginState]:
        """Load every installed plugin that is not disabled (``metapuppet serve`` does)."""
        return self.ops.plugins.load_installed(self.robot, _LazyScheduler(self.ops))


class _LazyScheduler:
    """Creates the scheduler only when a plugin has jobs."""

    def __init__(self, ops: Ops) -> None:
        self.ops = ops

    def attach(self, jobs: Any) -> None:
        self.ops.scheduler.attach(jobs)
