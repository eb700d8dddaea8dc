"""Metrics: counters kept on the hot path, exposed in the Prometheus format at ``/metrics``.

The hot path (every event, every handler call, every exec) only adds to plain integers
and floats owned by this object: no lock, no label look-up in a metrics library, no
allocation beyond a small key. At scrape time a custom collector hands them to the
official ``prometheus_client`` library as metric families, which renders the text format
(``prometheus_client`` is the ``metapuppet[metrics]`` extra; only ``/metrics`` needs it).

The same counters feed the dashboard's live chart: messages per minute and handler
latency (average and slowest) for the last hour, kept in a ring of 60 minutes.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

from .protocol import BotEvent

__all__ = ["EXEC_BUCKETS", "HANDLER_BUCKETS", "MINUTES", "Histogram", "Metrics"]

HANDLER_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
EXEC_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30)
MINUTES: Final = 60


class Histogram:
    """Bucket counts and a sum (non-cumulative here; Prometheus's cumulative at scrape)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        running, out = 0, []
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out


class Metrics:
    """What the server counts (``server.metrics``)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.events: dict[tuple[str, str], int] = {}
        self.replies: dict[str, int] = {}
        self.errors: dict[tuple[str, str], int] = {}
        self.refusals: dict[tuple[str, str], int] = {}
        self.handlers: dict[str, Histogram] = {}
        self.exec = Histogram(EXEC_BUCKETS)
        #: the Node client's outbox, from its heartbeats: bot -> (events, bytes)
        self.node_outbox: dict[str, tuple[int, int]] = {}
        #: the per-minute ring: minute number, messages, handled, latency sum, slowest
        self._minute = [-1] * MINUTES
        self._messages = [0] * MINUTES
        self._handled = [0] * MINUTES
        self._latency = [0.0] * MINUTES
        self._slowest = [0.0] * MINUTES
        #: set by the server: connected clients, proactive counts by state
        self.clients: Callable[[], list[dict[str, Any]]] = list
        self.proactive: Callable[[], dict[str, int]] = dict

    # ------------------------------------------------------------------ the hot path

    def on_event(self, event: BotEvent) -> None:
        """An event listener: count it; heartbeats carry the Node client's outbox depth."""
        key = (event.bot, event.name)
        self.events[key] = self.events.get(key, 0) + 1
        if event.name == "message":
            self._messages[self._slot()] += 1
        elif event.name == "heartbeat":
            outbox = event.payload.get("outbox")
            if isinstance(outbox, dict):
                self.node_outbox[event.bot] = (
                    int(outbox.get("pending") or 0),
                    int(outbox.get("bytes") or 0),
                )

    def handled(self, event: BotEvent, seconds: float, error: BaseException | None) -> None:
        """The pipeline handled ``event`` in ``seconds`` (``error``: what its hook raised)."""
        histogram = self.handlers.get(event.name)
        if histogram is None:
            histogram = self.handlers[event.name] = Histogram(HANDLER_BUCKETS)
        histogram.observe(seconds)
        if error is not None:
            self.error("handler", type(error).__name__)
        if event.name == "message":
            slot = self._slot()
            self._handled[slot] += 1
            self._latency[slot] += seconds
            if seconds > self._slowest[slot]:
                self._slowest[slot] = seconds

    def exec_finished(self, seconds: float, error_kind: str | None) -> None:
        self.exec.observe(seconds)
        if error_kind is not None:
            self.error("exec", error_kind)

    def sent(self, bot: str) -> None:
        self.replies[bot] = self.replies.get(bot, 0) + 1

    def refused(self, bot: str, source: str) -> None:
        """A send the window did not allow: ``budget`` (the model said no before sending)
        or ``channel`` (WeChat refused it)."""
        key = (bot, source)
        self.refusals[key] = self.refusals.get(key, 0) + 1

    def error(self, where: str, kind: str) -> None:
        key = (where, kind)
        self.errors[key] = self.errors.get(key, 0) + 1

    def _slot(self) -> int:
        """Reset the current minute's slot of the ring when a new minute began."""
        minute = int(self.clock() // 60)
        slot = minute % MINUTES
        if self._minute[slot] != minute:
            self._minute[slot] = minute
            self._messages[slot] = self._handled[slot] = 0
            self._latency[slot] = self._slowest[slot] = 0.0
        return slot

    # ------------------------------------------------------------------ reading

    def per_minute(self) -> list[dict[str, Any]]:
        """The last hour, oldest first: ``{minute, messages, handled, avg_ms, max_ms}``."""
        now = int(self.clock() // 60)
        series = []
        for minute in range(now - MINUTES + 1, now + 1):
            slot = minute % MINUTES
            fresh = self._minute[slot] == minute
            handled = self._handled[slot] if fresh else 0
            series.append(
                {
                    "minute": minute * 60,
                    "messages": self._messages[slot] if fresh else 0,
                    "handled": handled,
                    "avg_ms": round(1000 * self._latency[slot] / handled, 2) if handled else None,
                    "max_ms": round(1000 * self._slowest[slot], 2) if handled else None,
                }
            )
        return series

    def collect(self) -> Iterator[Any]:
        """The metric families for ``prometheus_client`` (a custom collector)."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        events = CounterMetricFamily(
            "metapuppet_events", "Bot events received, by bot and kind", labels=["bot", "kind"]
        )
        for (bot, kind), count in sorted(self.events.items()):
            events.add_metric([bot, kind], count)
        yield events
        replies = CounterMetricFamily(
            "metapuppet_replies_sent",
            "Messages the bots sent (replies and proactive)",
            labels=["bot"],
        )
        for bot, count in sorted(self.replies.items()):
            replies.add_metric([bot], count)
        yield replies
        handler = HistogramMetricFamily(
            "metapuppet_handler_seconds", "Time the robot took per event", labels=["kind"]
        )
        for kind, histogram in sorted(self.handlers.items()):
            handler.add_metric([kind], histogram.cumulative(), histogram.total)
        yield handler
        exec_family = HistogramMetricFamily(
            "metapuppet_exec_seconds", "Round trip of snippet and say calls to the Node client"
        )
        exec_family.add_metric([], self.exec.cumulative(), self.exec.total)
        yield exec_family
        errors = CounterMetricFamily(
            "metapuppet_errors", "Errors by where and kind", labels=["where", "kind"]
        )
        for (where, kind), count in sorted(self.errors.items()):
            errors.add_metric([where, kind], count)
        yield errors
        refusals = CounterMetricFamily(
            "metapuppet_send_window_refusals",
            "Sends the channel's send window did not allow",
            labels=["bot", "source"],
        )
        for (bot, source), count in sorted(self.refusals.items()):
            refusals.add_metric([bot, source], count)
        yield refusals
        outbox = GaugeMetricFamily(
            "metapuppet_node_outbox_events",
            "Events in the Node client's outbox not yet acknowledged (last heartbeat)",
            labels=["bot"],
        )
        outbox_bytes = GaugeMetricFamily(
            "metapuppet_node_outbox_bytes", "Bytes in the Node client's outbox", labels=["bot"]
        )
        for bot, (pending, size) in sorted(self.node_outbox.items()):
            outbox.add_metric([bot], pending)
            outbox_bytes.add_metric([bot], size)
        yield outbox
        yield outbox_bytes
        proactive = GaugeMetricFamily(
            "metapuppet_proactive_messages", "Proactive messages by state", labels=["state"]
        )
        for state, count in sorted(self.proactive().items()):
            proactive.add_metric([state], count)
        yield proactive
        clients = GaugeMetricFamily(
            "metapuppet_connected_clients", "Clients connected now, by role", labels=["role"]
        )
        roles: dict[str, int] = {"puppet": 0, "web": 0}
        for client in self.clients():
            role = str(client.get("role"))
            roles[role] = roles.get(role, 0) + 1
        for role, count in sorted(roles.items()):
            clients.add_metric([role], count)
        yield clients

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)  # a collector: anything with collect()
        return generate_latest(registry), CONTENT_TYPE_LATEST
