"""Send keys: each send of a handler gets a key made of its event's id and its place.

A process killed with SIGKILL in the middle of a handler leaves its event claimed and not
acknowledged; the Node client sends it again, another process takes the claim over and runs
the handler again. Its sends carry the same keys (``<event id>#<n>``, the n-th send of that
run), and the ``SAY`` snippet in the Node process, which outlives the server processes,
sends each key once and answers a repeat with the first send's result. So a reply the
killed process had already sent is not sent twice.

The key follows the handler through a context variable that :class:`~.intake.ClusterIntake`
sets before it hands the event on: tasks the handler starts inherit it. Sends outside a
handler (``say`` from a web client, a job) carry no key. A handler whose sends differ from
one run to the next (random text, a clock) still gets one send per place.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["handling", "send_key"]


class _Run:
    __slots__ = ("event_id", "sends")

    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        self.sends = 0


_RUN: contextvars.ContextVar[_Run | None] = contextvars.ContextVar(
    "metapuppet_cluster_run", default=None
)


@contextmanager
def handling(event_id: str) -> Iterator[None]:
    """Tasks started inside this block (the handler's) key their sends by ``event_id``."""
    token = _RUN.set(_Run(event_id))
    try:
        yield
    finally:
        _RUN.reset(token)


def send_key() -> str | None:
    """The key of the next send of the handler running here (None outside a handler)."""
    run = _RUN.get()
    if run is None:
        return None
    key = f"{run.event_id}#{run.sends}"
    run.sends += 1
    return key
