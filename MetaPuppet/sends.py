"""Send ids: which send of which handling a send is, the same when a handler runs again.

The pipeline opens a :class:`Handling` for every event it hands to the robot, in a context
variable, so every coroutine, task and handler thread started from there sees it. Each
send made inside gets the id ``<event id>#<n>`` (:func:`~MetaPuppet.protocol.send_id_of`):
the n-th send of that handling. A handler that runs again after a crash makes its sends in
the same order, so they get the same ids, and the Node client, which keeps a durable
record of every completed send id, answers a repeated one with the recorded result instead
of sending again. Sends outside any handling (proactive sends, scripts) get a random id.

A handling may also *collect*: then the reply a robot hook returns is not sent at once but
travels as typed actions in the event's acknowledgement (one frame instead of four).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from .presence import ClientInfo
from .protocol import random_send_id, send_id_of

__all__ = ["Handling", "current", "next_send_id", "open_handling"]


@dataclass(slots=True, eq=False)
class Handling:
    """The handling of one event: its sends so far, and the actions its ack will carry."""

    event_id: str
    bot: str
    #: sends made so far (the next one is ``<event id>#<sends>``)
    sends: int = 0
    #: the reply's typed actions for the acknowledgement; None: every send goes at once
    actions: list[dict[str, Any]] | None = None
    #: False once the acknowledgement is built: later sends (a task the handler left
    #: running) go at once, with ids that go on counting
    open: bool = True
    #: the Node client the event came from (None: fed by the server itself)
    source: ClientInfo | None = None
    #: cut short because that client went away: not recorded, run again when re-sent
    retry: bool = False

    def next_send_id(self) -> str:
        send_id = send_id_of(self.event_id, self.sends)
        self.sends += 1
        return send_id

    def collects_for(self, bot: str) -> bool:
        """Whether a reply to ``bot`` may travel in this event's acknowledgement."""
        return self.open and self.actions is not None and bot == self.bot


_current: ContextVar[Handling | None] = ContextVar("metapuppet_handling", default=None)


def current() -> Handling | None:
    """The handling this code runs in, if any."""
    return _current.get()


def open_handling(event_id: str, bot: str, *, collect: bool) -> Handling:
    """Start the handling of ``event_id`` in the current context (a task of its own)."""
    handling = Handling(event_id, bot, actions=[] if collect else None)
    _current.set(handling)
    return handling


def next_send_id() -> str:
    """The id of the next send made here: ``<event id>#<n>`` inside a handling, else random."""
    handling = _current.get()
    return random_send_id() if handling is None else handling.next_send_id()
