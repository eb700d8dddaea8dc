"""Every bot's events for the web clients and dashboards of every process.

Events are handled where the bot is connected; the web hub of every other process shows
them too (subscriptions, the live feed, the dashboard's bot states). This process's events
go out in batches (at most one notice every ``interval`` seconds, like the hub's own
fan-out) through the Socket.IO manager; the other processes' batches come in through the
same channel and go to ``show`` (the hub), login events also to ``note`` (capabilities).

Bounded: at most ``max_queue`` events wait; past that (Redis too slow or lost) the oldest
are dropped with a log line, as a slow web client is. An event larger than
``max_bytes`` goes without its payload: a 30 MB file message would otherwise be copied to
every process, and Redis disconnects pub/sub readers that fall 32 MB behind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import orjson

from ..protocol import BotEvent
from .manager import ClusterManager
from .state import SharedState

__all__ = ["EventForwarder"]

log = logging.getLogger("MetaPuppet.cluster")

MAX_BATCH: Final = 256
MAX_BATCH_BYTES: Final = 1024 * 1024


class EventForwarder:
    """Publishes this process's bot events; shows the other processes' ones."""

    def __init__(
        self,
        manager: ClusterManager,
        state: SharedState,
        *,
        show: Callable[[BotEvent], None],
        note: Callable[[BotEvent], None],
        max_bytes: int,
        interval: float = 0.02,
        max_queue: int = 10_000,
        peers: Callable[[], bool] = lambda: True,
    ) -> None:
        self.manager = manager
        self.state = state
        self.show = show
        self.note = note
        self.max_bytes = max_bytes
        #: whether another server process is known: alone, nothing is published
        self.peers = peers
        self.interval = interval
        self._queue: deque[tuple[dict[str, Any], int]] = deque()
        self.max_queue = max_queue
        self.dropped = 0
        self.published = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._dropped_logged = 0.0

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    # ------------------------------------------------------------------ out

    def __call__(self, event: BotEvent) -> None:
        """A pipeline listener: queue this process's event for the others."""
        if self._wake is None or not self.peers():
            return  # a process that joins later shows what happens from then on
        wire = event.to_wire()
        size = len(orjson.dumps(wire))
        if size > self.max_bytes:
            wire = {
                **wire,
                "payload": {"omitted": f"a payload of {size} bytes is not shown across processes"},
            }
            size = 256
        if len(self._queue) >= self.max_queue:
            self._queue.popleft()
            self._drop(1)
        self._queue.append((wire, size))
        self._wake.set()

    def _drop(self, count: int) -> None:
        self.dropped += count
        now = time.monotonic()
        if now - self._dropped_logged >= 30:
            self._dropped_logged = now
            log.warning(
                "%d events could not be shown to the other server processes so far (the "
                "cluster's Redis is lost or too slow); their own clients still got them",
                self.dropped,
            )

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.interval)  # what arrives meanwhile joins this batch
            self._wake.clear()
            while self._queue:
                batch: list[dict[str, Any]] = []
                total = 0
                while self._queue and len(batch) < MAX_BATCH and total < MAX_BATCH_BYTES:
                    wire, size = self._queue.popleft()
                    batch.append(wire)
                    total += size
                if not self.state.up:
                    self._drop(len(batch))
                    continue
                try:
                    await self.manager.notify("events", batch)
                    self.published += 1
                except Exception:
                    log.exception("publishing %d events to the other processes failed", len(batch))

    # ------------------------------------------------------------------ in

    def on_events(self, data: Any, host: str) -> None:
        """Notice: another process's batch of events."""
        if not isinstance(data, list):
            return
        for wire in data:
            try:
                event = BotEvent(
                    str(wire["id"]),
                    str(wire["bot"]),
                    str(wire["name"]),
                    wire["payload"],
                    wire["ts"],
                )
            except (KeyError, TypeError):
                continue
            if not isinstance(event.payload, dict):
                continue
            if event.name == "login":
                self.note(event)
            self.show(event)
