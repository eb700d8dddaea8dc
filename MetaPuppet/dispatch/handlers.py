"""Handlers: one registered callback with its filters, and what a call of it knows."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from ..types import Friendship, Message, RoomInvitation, chat_of
from .dialog_spec import DialogSpec
from .filters import Filter
from .host import DispatchHost

__all__ = [
    "CONTINUE",
    "INJECTABLE",
    "FlowControl",
    "Handler",
    "Invocation",
    "call_function",
    "handler_name",
    "wanted_arguments",
]


class _Continue:
    def __repr__(self) -> str:
        return "CONTINUE"


#: Return this from a handler (or middleware) to pass the event on to the next handler.
CONTINUE: Final[Any] = _Continue()


class FlowControl(Exception):  # noqa: N818 - raised on purpose, like StopIteration
    """Raised on purpose to steer routing (not an error: error handlers never see it)."""


#: The extra arguments a handler may declare; it gets those its filters produced.
INJECTABLE: Final = frozenset({"match", "args", "command", "invocation"})


@dataclass(eq=False)
class Handler:
    """One registered handler: its callback, filters and priority."""

    kind: str
    callback: Callable[..., Any]
    filters: tuple[Filter, ...]
    priority: int
    name: str
    wants: frozenset[str] | None  # None: the callback takes **kwargs
    dialog: DialogSpec | None = None

    async def match(self, event: Any) -> dict[str, Any] | None:
        """The data the filters produced when all of them match, else None."""
        data: dict[str, Any] = {}
        for check in self.filters:
            result = check(event)
            if inspect.isawaitable(result):
                result = await result
            if result is None or result is False:
                return None
            if isinstance(result, dict):
                data.update(result)
            elif not result:
                return None
        return data


@dataclass(eq=False)
class Invocation:
    """What middleware and error handlers learn about one handler call."""

    kind: str
    event: Any
    handler: str
    robot: Any = None
    server: DispatchHost | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def bot(self) -> str:
        return str(getattr(self.event, "bot", ""))

    @property
    def chat(self) -> str | None:
        """The contact or room the event belongs to."""
        payload = getattr(self.event, "payload", None)
        return chat_of(self.kind, payload) if isinstance(payload, dict) else None

    @property
    def user(self) -> str | None:
        """The person behind the event (the talker, the new friend, the inviter)."""
        event = self.event
        if isinstance(event, Message):
            return event.talker_id
        if isinstance(event, Friendship):
            return event.contact_id
        if isinstance(event, RoomInvitation):
            return event.inviter.id
        return None


def handler_name(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', None) or '?'}.{getattr(func, '__qualname__', repr(func))}"


def wanted_arguments(func: Callable[..., Any]) -> frozenset[str] | None:
    """The injectable arguments ``func`` declares (None: it takes ``**kwargs``)."""
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return frozenset()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters) & INJECTABLE


async def call_function(server: DispatchHost | None, func: Callable[..., Any], *args: Any) -> Any:
    """Call user code: coroutines on the loop, plain functions in the host's thread pool."""
    if server is not None:
        return await server.call_handler(func, *args)
    if inspect.iscoroutinefunction(func):
        return await func(*args)
    result = await asyncio.to_thread(func, *args)
    if inspect.isawaitable(result):
        result = await result
    return result
