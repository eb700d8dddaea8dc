"""Routers: filtered handlers with priorities, composed routers, middleware and dialogs.

::

    router = Router()

    @router.on_message(contains="天气", priority=10)
    async def weather(message):
        return "晴"

    @router.command("help")                  # "/help", "/help topic"
    async def help_(message, args):
        return f"help about {args or 'everything'}"

    bot = MyRobot()
    bot.include_router(router)

    @bot.on_message(regex=r"^(\\d+)\\+(\\d+)$")   # the robot has the same decorators
    def add(message, match):                  # plain def: runs in the thread pool
        return str(int(match[1]) + int(match[2]))

Handlers of an event kind are tried by priority (higher first), then in the order they
were registered (a router's own handlers before those of the routers it includes). The
first handler whose filters all match **handles** the event: whatever it returns (``None``
included) ends routing, and a value other than ``None`` is sent as the reply. A handler
that returns :data:`CONTINUE` passes the event on to the next matching handler, and
finally to the robot's hook (``on_message`` / ``_process_message``, ``on_friendship``, ...),
which also gets every event no handler matched.

Middleware wraps every handler call: ``async def mw(call_next, invocation)`` awaits
``call_next()`` (or not, to stop the event) and returns the reply. A router's middleware
wraps the handlers of the routers it includes too. When a handler raises, the error
handlers of its routers (innermost first) may answer it; otherwise the server logs the
error with its event and calls the robot's ``on_error`` hook.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..types import Message, MessageType
from .dialog_spec import DEFAULT_CANCEL_MESSAGE, DEFAULT_CANCEL_WORDS, DEFAULT_TIMEOUT, DialogSpec
from .filters import (
    Filter,
    command_filter,
    contact_filter,
    contains_filter,
    custom_filter,
    message_filters,
    regex_filter,
    room_filter,
    strings,
)
from .handlers import CONTINUE, Handler, Invocation, call_function, handler_name, wanted_arguments
from .host import DispatchHost
from .middleware import ErrorHandler, Middleware, invoke

__all__ = ["Route", "Router"]

F = TypeVar("F", bound=Callable[..., Any])

_generation = 0


def _changed() -> None:
    """Any router changed: flattened handler lists are rebuilt on their next use."""
    global _generation
    _generation += 1


@dataclass(frozen=True, eq=False)
class Route:
    """A handler and the routers it is reached through (outermost first)."""

    handler: Handler
    chain: tuple[Router, ...]


class Router:
    """A set of handlers, middleware and dialogs; include it in a robot or another router.

    ``command_prefix`` is what :meth:`command` handlers expect before the command word
    (a string, or several; ``""`` accepts bare words).
    """

    def __init__(
        self, name: str | None = None, *, command_prefix: str | Iterable[str] = "/"
    ) -> None:
        self.name = name or f"router-{id(self):x}"
        prefixes = (command_prefix,) if isinstance(command_prefix, str) else tuple(command_prefix)
        # longest first, so "//" wins over "/"
        self.command_prefix: tuple[str, ...] = tuple(sorted(prefixes, key=len, reverse=True))
        self._handlers: list[Handler] = []
        self._routers: list[Router] = []
        self._middlewares: list[Middleware] = []
        self._error_handlers: list[ErrorHandler] = []
        self._flat: dict[str, tuple[int, list[Route]]] = {}

    @property
    def handlers(self) -> tuple[Handler, ...]:
        """This router's own handlers, in registration order."""
        return tuple(self._handlers)

    @property
    def routers(self) -> tuple[Router, ...]:
        """The routers included in this one."""
        return tuple(self._routers)

    @property
    def middlewares(self) -> tuple[Middleware, ...]:
        return tuple(self._middlewares)

    @property
    def error_handlers(self) -> tuple[ErrorHandler, ...]:
        return tuple(self._error_handlers)

    def __repr__(self) -> str:
        return (
            f"Router({self.name!r}, handlers={len(self._handlers)}, routers={len(self._routers)})"
        )

    # ---------------------------------------------------------------- registration

    def _register(
        self,
        kind: str,
        filters: list[Filter],
        priority: int,
        dialog: DialogSpec | None = None,
        name: str | None = None,
    ) -> Callable[[F], F]:
        def register(func: F) -> F:
            if not callable(func):
                raise TypeError(f"a handler must be callable, got {func!r}")
            self._handlers.append(
                Handler(
                    kind=kind,
                    callback=func,
                    filters=tuple(filters),
                    priority=int(priority),
                    name=name or handler_name(func),
                    wants=wanted_arguments(func),
                    dialog=dialog,
                )
            )
            _changed()
            return func

        return register

    def on_message(
        self,
        *,
        text: str | Iterable[str] | None = None,
        regex: str | re.Pattern[str] | None = None,
        contains: str | Iterable[str] | None = None,
        room: bool | str | Iterable[str] | None = None,
        contact: str | Iterable[str] | None = None,
        type: MessageType | int | Iterable[MessageType | int] | None = None,  # noqa: A002
        mention_self: bool | None = None,
        filter: Callable[[Any], Any] | None = None,  # noqa: A002
        priority: int = 0,
    ) -> Callable[[F], F]:
        """A handler for messages; every filter given must match.

        ``text`` is an exact text (or several), ``regex`` is searched (the handler may take
        a ``match`` argument), ``contains`` a substring (any of several). ``room`` is True
        (rooms only), False (direct messages only) or room ids / topics; ``contact`` is
        talker ids / names; ``type`` a :class:`MessageType` (or several); ``mention_self``
        whether the bot is @-mentioned; ``filter`` any predicate (may be async, may return a
        dict of extra handler arguments). In a room that mentions the bot, text filters see
        the text without the leading @mentions.
        """
        filters = message_filters(
            text=text,
            regex=regex,
            contains=contains,
            room=room,
            contact=contact,
            type=type,
            mention_self=mention_self,
            filter=filter,
        )
        return self._register("message", filters, priority)

    def command(
        self,
        name: str,
        *aliases: str,
        prefix: str | Iterable[str] | None = None,
        room: bool | str | Iterable[str] | None = None,
        contact: str | Iterable[str] | None = None,
        mention_self: bool | None = None,
        filter: Callable[[Any], Any] | None = None,  # noqa: A002
        priority: int = 0,
    ) -> Callable[[F], F]:
        """A handler for ``/name args`` (the router's prefix, or ``prefix``); case-insensitive.

        The handler may take ``args`` (the text after the command word) and ``command``
        (the word as written).
        """
        if prefix is None:
            prefixes = self.command_prefix
        else:
            prefixes = (prefix,) if isinstance(prefix, str) else tuple(prefix)
        names = strings((name, *aliases), "command")
        if any(not n or any(c.isspace() for c in n) for n in names):
            raise ValueError(f"a command is one word, got {sorted(names)}")
        filters = [command_filter(names, prefixes)]
        filters += message_filters(
            text=None,
            regex=None,
            contains=None,
            room=room,
            contact=contact,
            type=None,
            mention_self=mention_self,
            filter=filter,
        )
        return self._register("message", filters, priority)

    def on_friendship(
        self,
        *,
        type: int | Iterable[int] | None = None,  # noqa: A002
        contact: str | Iterable[str] | None = None,
        contains: str | Iterable[str] | None = None,
        regex: str | re.Pattern[str] | None = None,
        filter: Callable[[Any], Any] | None = None,  # noqa: A002
        priority: int = 0,
    ) -> Callable[[F], F]:
        """A handler for friend requests (and confirmations); ``contains``/``regex`` look
        at the request's greeting, ``type`` is a :class:`FriendshipType` (or several)."""
        filters: list[Filter] = []
        if type is not None:
            kinds = frozenset([type] if isinstance(type, int) else type)
            filters.append(lambda friendship: friendship.type in kinds)
        if contact is not None:
            filters.append(contact_filter(contact, lambda f: (f.contact.id, f.contact.name)))
        if contains is not None:
            filters.append(contains_filter(strings(contains, "contains="), lambda f: f.hello))
        if regex is not None:
            filters.append(regex_filter(regex, lambda f: f.hello))
        if filter is not None:
            filters.append(custom_filter(filter))
        return self._register("friendship", filters, priority)

    def _room_event(
        self,
        kind: str,
        room: str | Iterable[str] | None,
        filter: Callable[[Any], Any] | None,  # noqa: A002
        priority: int,
    ) -> Callable[[F], F]:
        filters: list[Filter] = []
        if room is not None:
            filters.append(room_filter(room, lambda e: (e.room.id, e.room.topic_text)))
        if filter is not None:
            filters.append(custom_filter(filter))
        return self._register(kind, filters, priority)

    def on_room_join(
        self,
        *,
        room: str | Iterable[str] | None = None,
        filter: Callable[[Any], Any] | None = None,  # noqa: A002
        priority: int = 0,
    ) -> Callable[[F], F]:
        """A handler for people joining a room (``room``: ids or topics)."""
        return self._room_event("room-join", room, filter, priority)

    def on_room_leave(
        self,
        *,
        room: str | Iterable[str] | None = None,
        filter: Callable[[Any], Any] | None = None,  # noqa: A002
        priority: int = 0,
    ) -> Callable[[F], F]:
        """A handler for people leaving a room."""
        return self._room_event("room-leave", room, filter, priority)

    def on_room_topic(
        self,
        *,
        room: str | Iterable[str] | None = None,
        filter: Callable[[Any], Any] | None = None,  # noqa: A002
        priority: int = 0,
    ) -> Callable[[F], F]:
        """A handler for room topic changes."""
        return self._room_event("room-topic", room, filter, priority)

    def on_room_invite(
        self,
        *,
        room: str | Iterable[str] | None = None,
        contact: str | Iterable[str] | None = None,
        filter: Callable[[Any], Any] | None = None,  # noqa: A002
        priority: int = 0,
    ) -> Callable[[F], F]:
        """A handler for invitations to a room (``room``: topics; ``contact``: inviter ids)."""
        filters: list[Filter] = []
        if room is not None:
            names = strings(room, "room=")
            filters.append(lambda invitation: invitation.topic in names)
        if contact is not None:
            inviters = strings(contact, "contact=")
            filters.append(lambda invitation: invitation.inviter.id in inviters)
        if filter is not None:
            filters.append(custom_filter(filter))
        return self._register("room-invite", filters, priority)

    def dialog(
        self,
        trigger: str | Iterable[str] | re.Pattern[str] | None = None,
        *,
        command: str | None = None,
        name: str | None = None,
        version: int | str = 1,
        timeout: Any = ...,
        timeout_message: Any = None,
        cancel_words: Iterable[str] | None = None,
        cancel_message: Any = ...,
        error_message: Any = None,
        regex: str | re.Pattern[str] | None = None,
        contains: str | Iterable[str] | None = None,
        room: bool | str | Iterable[str] | None = None,
        contact: str | Iterable[str] | None = None,
        mention_self: bool | None = None,
        filter: Callable[[Any], Any] | None = None,  # noqa: A002
        priority: int = 0,
    ) -> Callable[[F], F]:
        """A multi-step conversation started by ``trigger`` (exact text, or a compiled
        regex), ``command``, or the message filters. See :mod:`MetaPuppet.dialog`.

        ``timeout`` is seconds per question (default 60; None: no limit).
        """
        text: str | Iterable[str] | None = None
        if isinstance(trigger, re.Pattern):
            if regex is not None:
                raise ValueError("give the dialog a trigger pattern or regex=, not both")
            regex = trigger
        elif trigger is not None:
            text = trigger
        filters: list[Filter] = []
        if command is not None:
            filters.append(command_filter(strings(command, "command="), self.command_prefix))
        filters += message_filters(
            text=text,
            regex=regex,
            contains=contains,
            room=room,
            contact=contact,
            type=None,
            mention_self=mention_self,
            filter=filter,
        )
        if not filters:
            raise ValueError(
                "a dialog needs something that starts it: a trigger text, command=, regex=, "
                "contains= or filter="
            )

        def register(func: F) -> F:
            if not inspect.iscoroutinefunction(func):
                raise TypeError(
                    f"dialog {handler_name(func)} must be an async function: "
                    "async def my_dialog(d): ..."
                )
            spec = DialogSpec(
                name=name or handler_name(func),
                func=func,
                version=version,
                timeout=DEFAULT_TIMEOUT if timeout is ... else timeout,
                timeout_message=timeout_message,
                cancel_words=frozenset(
                    w.casefold()
                    for w in (DEFAULT_CANCEL_WORDS if cancel_words is None else cancel_words)
                ),
                cancel_message=DEFAULT_CANCEL_MESSAGE if cancel_message is ... else cancel_message,
                error_message=error_message,
            )
            existing = self.find_dialog(spec.name)
            if existing is not None:
                raise ValueError(
                    f"a dialog named {spec.name!r} is already registered: pass name= to tell "
                    "them apart (the name finds a dialog again after a restart)"
                )

            async def start_dialog(message: Message, invocation: Invocation) -> Any:
                manager = getattr(invocation.robot, "dialogs", None)
                if manager is None:
                    raise RuntimeError(
                        f"dialog {spec.name!r} needs a robot: include this router in a RobotBase"
                    )
                return await manager.start(spec, invocation)

            self._register("message", filters, priority, dialog=spec, name=f"dialog {spec.name}")(
                start_dialog
            )
            return func

        return register

    def include_router(self, router: Router) -> Router:
        """Add ``router``'s handlers (and dialogs) behind this router's middleware."""
        if not isinstance(router, Router):
            raise TypeError(f"include_router() takes a Router, got {type(router).__name__}")
        if router is self or self in router.descendants():
            raise ValueError(f"including {router.name!r} in {self.name!r} would make a cycle")
        if router in self._routers:
            raise ValueError(f"{router.name!r} is already included in {self.name!r}")
        self._routers.append(router)
        _changed()
        return router

    def middleware(self, middleware: Middleware) -> Middleware:
        """Wrap every handler of this router (and the routers it includes); a decorator."""
        if not callable(middleware):
            raise TypeError(f"middleware must be callable, got {middleware!r}")
        self._middlewares.append(middleware)
        _changed()
        return middleware

    def error_handler(self, handler: F) -> F:
        """Call ``handler(error, invocation)`` when a handler of this router raises; a
        value other than None is sent as the reply and the error counts as handled."""
        self._error_handlers.append(handler)
        _changed()
        return handler

    # ---------------------------------------------------------------- lookup

    def descendants(self) -> list[Router]:
        found: list[Router] = []
        stack = list(self._routers)
        while stack:
            router = stack.pop()
            if router not in found:
                found.append(router)
                stack.extend(router.routers)
        return found

    def collect(self, kind: str, chain: tuple[Router, ...], out: list[Route]) -> None:
        """Append the routes for ``kind`` of this tree, reached through ``chain``."""
        chain = (*chain, self)
        out.extend(Route(h, chain) for h in self._handlers if h.kind == kind)
        for router in self._routers:
            router.collect(kind, chain, out)

    def routes(self, kind: str) -> list[Route]:
        """Every handler for ``kind`` in this router tree, in the order they are tried."""
        cached = self._flat.get(kind)
        if cached is not None and cached[0] == _generation:
            return cached[1]
        routes: list[Route] = []
        self.collect(kind, (), routes)
        routes.sort(key=lambda route: -route.handler.priority)  # stable: keeps registration order
        self._flat[kind] = (_generation, routes)
        return routes

    def find_dialog(self, name: str) -> Route | None:
        """The route of the dialog called ``name`` in this router tree."""
        for route in self.routes("message"):
            spec = route.handler.dialog
            if spec is not None and spec.name == name:
                return route
        return None

    def has_dialogs(self) -> bool:
        return any(route.handler.dialog is not None for route in self.routes("message"))

    # ---------------------------------------------------------------- dispatch

    async def dispatch(
        self,
        kind: str,
        event: Any,
        *,
        robot: Any = None,
        server: DispatchHost | None = None,
    ) -> Any:
        """Offer ``event`` to the handlers of ``kind``; returns the reply, or
        :data:`CONTINUE` when no handler took it."""
        for route in self.routes(kind):
            handler = route.handler
            data = await handler.match(event)
            if data is None:
                continue
            invocation = Invocation(kind, event, handler.name, robot, server, data)
            if handler.wants is None:
                kwargs = {**data, "invocation": invocation}
            else:
                kwargs = {k: v for k, v in data.items() if k in handler.wants}
                if "invocation" in handler.wants:
                    kwargs["invocation"] = invocation
            func = functools.partial(handler.callback, **kwargs) if kwargs else handler.callback
            result = await invoke(
                route.chain, invocation, functools.partial(call_function, server, func, event)
            )
            if result is not CONTINUE:
                return result
        return CONTINUE
