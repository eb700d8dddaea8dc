"""Routing: filtered handlers with priorities, composed routers, middleware and dialogs.

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
import logging
import re
import time
import types
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar

from .ratelimit import Rate, TokenBucket
from .wechaty import Friendship, Message, MessageType, RoomEvent, RoomInvitation, strip_mentions

if TYPE_CHECKING:
    from .dialog import DialogManager, DialogSpec
    from .server import SocketServerCore
    from .storage import BaseStorage

log = logging.getLogger("MetaPuppet.router")

F = TypeVar("F", bound=Callable[..., Any])


class _Continue:
    def __repr__(self) -> str:
        return "CONTINUE"


#: Return this from a handler (or middleware) to pass the event on to the next handler.
CONTINUE: Final[Any] = _Continue()


class FlowControl(Exception):  # noqa: N818 - raised on purpose, like StopIteration
    """Raised on purpose to steer routing (not an error: error handlers never see it)."""


#: The robot hooks that routed handlers sit in front of, and the event kind of each.
HOOK_KINDS: Final[dict[str, str]] = {
    "on_message": "message",
    "on_friendship": "friendship",
    "on_room_invite": "room-invite",
    "on_room_join": "room-join",
    "on_room_leave": "room-leave",
    "on_room_topic": "room-topic",
}

Filter = Callable[[Any], Any]
Middleware = Callable[[Callable[[], Awaitable[Any]], "Invocation"], Awaitable[Any]]
ErrorHandler = Callable[[Exception, "Invocation"], Any]

#: The extra arguments a handler may declare; it gets those its filters produced.
INJECTABLE: Final = frozenset({"match", "args", "command", "invocation"})


# --------------------------------------------------------------------------- text helpers


def message_text(message: Message) -> str:
    """The text filters and dialogs see: trimmed, and in a room that mentions the bot,
    without the leading ``@mentions``."""
    text = message.text.strip()
    if message.payload.get("roomId") and message.mention_self:
        text = strip_mentions(text)
    return text


def _strings(value: str | Iterable[str], what: str) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset({value})
    values = frozenset(value)
    if not values or not all(isinstance(v, str) for v in values):
        raise TypeError(f"{what} takes a string or strings, got {value!r}")
    return values


# --------------------------------------------------------------------------- filters


def _text_filter(values: frozenset[str]) -> Filter:
    return lambda message: message_text(message) in values


def _regex_filter(pattern: str | re.Pattern[str], text_of: Callable[[Any], str]) -> Filter:
    compiled = re.compile(pattern) if isinstance(pattern, str) else pattern

    def match(event: Any) -> dict[str, Any] | None:
        found = compiled.search(text_of(event))
        return {"match": found} if found else None

    return match


def _contains_filter(values: frozenset[str], text_of: Callable[[Any], str]) -> Filter:
    return lambda event: any(v in text_of(event) for v in values)


def _room_filter(
    room: bool | str | Iterable[str], room_of: Callable[[Any], tuple[str, str]]
) -> Filter:
    if isinstance(room, bool):
        wanted = room
        return lambda event: bool(room_of(event)[0]) == wanted
    names = _strings(room, "room=")
    return lambda event: not names.isdisjoint(room_of(event))


def _contact_filter(
    contact: str | Iterable[str], contact_of: Callable[[Any], tuple[str, str]]
) -> Filter:
    names = _strings(contact, "contact=")
    return lambda event: not names.isdisjoint(contact_of(event))


def _message_room(message: Message) -> tuple[str, str]:
    room = message.payload.get("room") or {}
    return str(message.payload.get("roomId") or ""), str(room.get("topic") or "")


def _message_talker(message: Message) -> tuple[str, str]:
    talker = message.talker
    return talker.id, talker.name


def _command_filter(names: frozenset[str], prefixes: tuple[str, ...]) -> Filter:
    folded = frozenset(n.casefold() for n in names)

    def match(message: Message) -> dict[str, Any] | None:
        text = message_text(message)
        for prefix in prefixes:
            body = text[len(prefix) :]
            if not text.startswith(prefix) or not body or body[0].isspace():
                continue
            head, *rest = body.split(maxsplit=1)
            if head.casefold() in folded:
                return {"command": head, "args": rest[0].strip() if rest else ""}
        return None

    return match


def _custom_filter(check: Callable[[Any], Any]) -> Filter:
    if not callable(check):
        raise TypeError(f"filter= takes a callable, got {check!r}")
    return check


def _message_filters(
    *,
    text: str | Iterable[str] | None,
    regex: str | re.Pattern[str] | None,
    contains: str | Iterable[str] | None,
    room: bool | str | Iterable[str] | None,
    contact: str | Iterable[str] | None,
    type: MessageType | int | Iterable[MessageType | int] | None,  # noqa: A002 - the issue's name
    mention_self: bool | None,
    filter: Callable[[Any], Any] | None,  # noqa: A002
) -> list[Filter]:
    filters: list[Filter] = []
    if text is not None:
        filters.append(_text_filter(_strings(text, "text=")))
    if regex is not None:
        filters.append(_regex_filter(regex, message_text))
    if contains is not None:
        filters.append(_contains_filter(_strings(contains, "contains="), message_text))
    if room is not None:
        filters.append(_room_filter(room, _message_room))
    if contact is not None:
        filters.append(_contact_filter(contact, _message_talker))
    if type is not None:
        kinds = frozenset(MessageType(t) for t in ([type] if isinstance(type, int) else list(type)))
        filters.append(lambda message: message.type in kinds)
    if mention_self is not None:
        wanted = bool(mention_self)
        filters.append(lambda message: message.mention_self == wanted)
    if filter is not None:
        filters.append(_custom_filter(filter))
    return filters


# --------------------------------------------------------------------------- handlers


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


@dataclass(frozen=True, eq=False)
class Route:
    """A handler and the routers it is reached through (outermost first)."""

    handler: Handler
    chain: tuple[Router, ...]


@dataclass(eq=False)
class Invocation:
    """What middleware and error handlers learn about one handler call."""

    kind: str
    event: Any
    handler: str
    robot: Any = None
    server: SocketServerCore | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def bot(self) -> str:
        return str(getattr(self.event, "bot", ""))

    @property
    def chat(self) -> str | None:
        """The contact or room the event belongs to."""
        event = self.event
        if isinstance(event, Message):
            return event.conversation_id
        if isinstance(event, Friendship):
            return event.contact.id
        if isinstance(event, RoomEvent):
            return event.room.id
        return None

    @property
    def user(self) -> str | None:
        """The person behind the event (the talker, the new friend, the inviter)."""
        event = self.event
        if isinstance(event, Message):
            return event.talker.id
        if isinstance(event, Friendship):
            return event.contact.id
        if isinstance(event, RoomInvitation):
            return event.inviter.id
        return None


def _handler_name(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', None) or '?'}.{getattr(func, '__qualname__', repr(func))}"


def _wanted_arguments(func: Callable[..., Any]) -> frozenset[str] | None:
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return frozenset()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters) & INJECTABLE


async def call_function(
    server: SocketServerCore | None, func: Callable[..., Any], *args: Any
) -> Any:
    """Call user code: coroutines on the loop, plain functions in the server's thread pool."""
    if server is not None:
        return await server.call_handler(func, *args)
    if inspect.iscoroutinefunction(func):
        return await func(*args)
    import asyncio

    result = await asyncio.to_thread(func, *args)
    if inspect.isawaitable(result):
        result = await result
    return result


_generation = 0


def _changed() -> None:
    """Any router changed: flattened handler lists are rebuilt on their next use."""
    global _generation
    _generation += 1


async def invoke(
    chain: Iterable[Router], invocation: Invocation, call: Callable[[], Awaitable[Any]]
) -> Any:
    """Run ``call`` inside the middleware of ``chain``; route its errors to their handlers."""
    routers = tuple(chain)
    middlewares = [mw for router in routers for mw in router._middlewares]

    async def run(index: int) -> Any:
        if index == len(middlewares):
            return await call()
        return await middlewares[index](functools.partial(run, index + 1), invocation)

    try:
        return await run(0)
    except FlowControl:
        raise
    except Exception as error:
        for router in reversed(routers):
            for handle_error in router._error_handlers:
                try:
                    reply = await call_function(invocation.server, handle_error, error, invocation)
                except Exception:
                    log.exception("error handler %s failed too", _handler_name(handle_error))
                    continue
                if reply is not None:
                    log.warning(
                        "handler %s failed on %s event (answered by %s)",
                        invocation.handler,
                        invocation.kind,
                        _handler_name(handle_error),
                        exc_info=error,
                    )
                    return reply
        raise


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
                    name=name or _handler_name(func),
                    wants=_wanted_arguments(func),
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
        filters = _message_filters(
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
        names = _strings((name, *aliases), "command")
        if any(not n or any(c.isspace() for c in n) for n in names):
            raise ValueError(f"a command is one word, got {sorted(names)}")
        filters = [_command_filter(names, prefixes)]
        filters += _message_filters(
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
            filters.append(_contact_filter(contact, lambda f: (f.contact.id, f.contact.name)))
        if contains is not None:
            filters.append(_contains_filter(_strings(contains, "contains="), lambda f: f.hello))
        if regex is not None:
            filters.append(_regex_filter(regex, lambda f: f.hello))
        if filter is not None:
            filters.append(_custom_filter(filter))
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
            filters.append(_room_filter(room, lambda e: (e.room.id, e.room.topic_text)))
        if filter is not None:
            filters.append(_custom_filter(filter))
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
            names = _strings(room, "room=")
            filters.append(lambda invitation: invitation.topic in names)
        if contact is not None:
            inviters = _strings(contact, "contact=")
            filters.append(lambda invitation: invitation.inviter.id in inviters)
        if filter is not None:
            filters.append(_custom_filter(filter))
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
        from .dialog import (
            DEFAULT_CANCEL_MESSAGE,
            DEFAULT_CANCEL_WORDS,
            DEFAULT_TIMEOUT,
            DialogSpec,
        )

        text: str | Iterable[str] | None = None
        if isinstance(trigger, re.Pattern):
            if regex is not None:
                raise ValueError("give the dialog a trigger pattern or regex=, not both")
            regex = trigger
        elif trigger is not None:
            text = trigger
        filters: list[Filter] = []
        if command is not None:
            filters.append(_command_filter(_strings(command, "command="), self.command_prefix))
        filters += _message_filters(
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
                    f"dialog {_handler_name(func)} must be an async function: "
                    "async def my_dialog(d): ..."
                )
            spec = DialogSpec(
                name=name or _handler_name(func),
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
                manager: DialogManager | None = getattr(invocation.robot, "dialogs", None)
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
        if router is self or self in router._descendants():
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

    def _descendants(self) -> list[Router]:
        found: list[Router] = []
        stack = list(self._routers)
        while stack:
            router = stack.pop()
            if router not in found:
                found.append(router)
                stack.extend(router._routers)
        return found

    def _collect(self, kind: str, chain: tuple[Router, ...], out: list[Route]) -> None:
        chain = (*chain, self)
        out.extend(Route(h, chain) for h in self._handlers if h.kind == kind)
        for router in self._routers:
            router._collect(kind, chain, out)

    def routes(self, kind: str) -> list[Route]:
        """Every handler for ``kind`` in this router tree, in the order they are tried."""
        cached = self._flat.get(kind)
        if cached is not None and cached[0] == _generation:
            return cached[1]
        routes: list[Route] = []
        self._collect(kind, (), routes)
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
        server: SocketServerCore | None = None,
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


# --------------------------------------------------------------------------- middleware


def log_calls(
    *, level: int = logging.INFO, slow: float = 1.0, logger: logging.Logger | None = None
) -> Middleware:
    """Middleware that logs each handler call with its duration (a warning when slower
    than ``slow`` seconds)::

        bot.middleware(log_calls(level=logging.DEBUG))
    """
    out = logger or log

    async def logged(call_next: Callable[[], Awaitable[Any]], invocation: Invocation) -> Any:
        started = time.perf_counter()
        outcome = "failed"
        try:
            result = await call_next()
            outcome = "passed it on" if result is CONTINUE else "handled"
            return result
        except FlowControl as steer:
            outcome = f"ended with {type(steer).__name__}"
            raise
        finally:
            elapsed = time.perf_counter() - started
            out.log(
                logging.WARNING if elapsed >= slow else level,
                "%s %s %s event from %s in %.1f ms",
                invocation.handler,
                outcome,
                invocation.kind,
                invocation.user or invocation.chat or invocation.bot,
                elapsed * 1000,
            )

    return logged


def throttle(
    rate: Rate,
    *,
    per: str = "user",
    message: Any = None,
    clock: Callable[[], float] = time.monotonic,
    max_keys: int = 10_000,
) -> Middleware:
    """Middleware that drops events from someone going faster than ``rate`` (incoming
    flood control). ``per`` is ``"user"``, ``"chat"`` or ``"bot"``; ``message`` (if any) is
    answered once when someone is first throttled::

        bot.middleware(throttle(Rate(5, per=10.0, burst=5), message="慢一点~"))
    """
    if per not in ("user", "chat", "bot"):
        raise ValueError(f"per must be 'user', 'chat' or 'bot', got {per!r}")
    buckets: dict[tuple[str, str | None], TokenBucket] = {}
    warned: set[tuple[str, str | None]] = set()

    async def throttled(call_next: Callable[[], Awaitable[Any]], invocation: Invocation) -> Any:
        who = None if per == "bot" else (invocation.user if per == "user" else invocation.chat)
        key = (invocation.bot, who)
        now = clock()
        bucket = buckets.get(key)
        if bucket is None:
            if len(buckets) >= max_keys:
                for idle in [k for k, b in buckets.items() if b.idle(now)]:
                    del buckets[idle]
                    warned.discard(idle)
            bucket = buckets[key] = TokenBucket(rate)
        if bucket.earliest(now) > now:
            log.info("throttled a %s event from %s on bot %r", invocation.kind, who, invocation.bot)
            if key in warned:
                return None
            warned.add(key)
            return message
        bucket.reserve(now)
        warned.discard(key)
        return await call_next()

    return throttled


# --------------------------------------------------------------------------- robot plumbing

_MARKS = "__metapuppet_routes__"


def _mark(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[[F], F]:
    def mark(func: F) -> F:
        marks = getattr(func, _MARKS, ())
        setattr(func, _MARKS, (*marks, (method, args, kwargs)))
        return func

    return mark


def _is_bare_decorator_use(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return (
        len(args) == 1
        and not kwargs
        and (inspect.isroutine(args[0]) or isinstance(args[0], functools.partial))
    )


def _class_level(method: str, *args: Any, **kwargs: Any) -> Any:
    """``@RobotBase.on_message(...)`` in a class body: marks the method for each instance."""
    if _is_bare_decorator_use(args, kwargs):
        return _mark(method, (), {})(args[0])
    return _mark(method, args, kwargs)


class RouteDecorator:
    """A router decorator on the robot: ``bot.command(...)`` registers on the robot's
    router; ``RobotBase.command(...)`` in a class body marks a method for every instance."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.__doc__ = getattr(Router, method).__doc__

    def __get__(self, robot: Any, owner: type | None = None) -> Callable[..., Callable[[F], F]]:
        if robot is None:
            return functools.partial(_class_level, self.method)
        decorator: Callable[..., Callable[[F], F]] = getattr(robot.router, self.method)
        return decorator


class HookOrDecorator:
    """A robot hook that doubles as the decorator for routed handlers of its event.

    ``robot.on_message(message)`` runs the hook (as before); ``@robot.on_message(text=...)``
    (or bare ``@robot.on_message``) registers a handler on the robot's router;
    ``@RobotBase.on_message(...)`` in a class body does so for every instance. Subclass
    overrides of the hook are wrapped the same way, so ``super().on_message(m)`` works.
    """

    def __init__(self, hook: Callable[..., Any], method: str) -> None:
        self.hook = hook
        self.method = method
        functools.update_wrapper(self, hook)

    def __get__(self, robot: Any, owner: type | None = None) -> Any:
        if robot is None:
            return self
        return BoundHook(robot, self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], Routable):  # RobotBase.on_message(robot, message)
            return self.hook(*args, **kwargs)
        return _class_level(self.method, *args, **kwargs)


class BoundHook:
    """``robot.on_message`` and friends: call with an event to run the hook, or use as a
    decorator to register a handler."""

    __slots__ = ("robot", "spec")

    def __init__(self, robot: Any, spec: HookOrDecorator) -> None:
        self.robot = robot
        self.spec = spec

    @property
    def method(self) -> Callable[..., Any]:
        """The hook as a plain bound method (``async def`` stays a coroutine function)."""
        return types.MethodType(self.spec.hook, self.robot)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        register = getattr(self.robot.router, self.spec.method)
        if not args:
            return register(**kwargs)
        if _is_bare_decorator_use(args, kwargs):
            return register()(args[0])
        return self.spec.hook(self.robot, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<hook {self.spec.hook.__qualname__} of {self.robot!r}>"


class Routable:
    """The routing plumbing of :class:`~MetaPuppet.RobotBase`.

    Gives a robot a router (``robot.router``), the decorators (``on_message``, ``command``,
    ``on_friendship``, ``on_room_join``, ``dialog``, ...), ``include_router``,
    ``middleware``, ``error_handler``, a dialog manager over ``dialog_store``, and
    :meth:`route_event`, which the server calls for every event.
    """

    #: What ``command`` handlers of the robot's own router expect before the word.
    command_prefix: str | tuple[str, ...] = "/"
    #: Where dialogs keep their state (default: a :class:`~MetaPuppet.storage.MemoryStorage`).
    dialog_store: BaseStorage | None = None

    command = RouteDecorator("command")
    dialog = RouteDecorator("dialog")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for hook in HOOK_KINDS:
            value = cls.__dict__.get(hook)
            if inspect.isfunction(value):
                setattr(cls, hook, HookOrDecorator(value, hook))

    @property
    def router(self) -> Router:
        """This robot's own router (created on first use, with the class-level handlers)."""
        router: Router | None = self.__dict__.get("_router")
        if router is None:
            router = Router(type(self).__name__, command_prefix=self.command_prefix)
            self.__dict__["_router"] = router
            self._register_class_handlers(router)
        return router

    @property
    def dialogs(self) -> DialogManager:
        """Runs this robot's dialogs over ``dialog_store``."""
        manager: DialogManager | None = self.__dict__.get("_dialogs")
        if manager is None:
            from .dialog import DialogManager
            from .storage import MemoryStorage

            if self.dialog_store is None:
                self.dialog_store = MemoryStorage()
            manager = DialogManager(self, self.dialog_store)
            self.__dict__["_dialogs"] = manager
        return manager

    def dialogs_in_progress(self) -> list[dict[str, Any]]:
        """Dialogs this process waits on (``server.dialog_provider`` for the dashboard)."""
        manager: DialogManager | None = self.__dict__.get("_dialogs")
        return [] if manager is None else manager.in_progress()

    def _register_class_handlers(self, router: Router) -> None:
        owner = type(self)
        for attribute in dir(owner):
            marks = getattr(inspect.getattr_static(owner, attribute, None), _MARKS, None)
            if not marks:
                continue
            bound = getattr(self, attribute)
            for method, args, kwargs in marks:
                getattr(router, method)(*args, **kwargs)(bound)

    def include_router(self, router: Router) -> Router:
        """Add a router's handlers and dialogs to this robot."""
        return self.router.include_router(router)

    def middleware(self, middleware: Middleware) -> Middleware:
        """Wrap every handler of this robot (its routers' too); usable as a decorator."""
        return self.router.middleware(middleware)

    def error_handler(self, handler: F) -> F:
        """Answer errors of this robot's handlers; see :meth:`Router.error_handler`."""
        return self.router.error_handler(handler)

    async def route_event(self, server: SocketServerCore, hook: str, event: Any) -> Any:
        """Handle one event: an active dialog first (messages), then the routed handlers,
        then the robot's hook ``hook``. Returns the reply to send."""
        kind = HOOK_KINDS[hook]
        router = self.router
        if kind == "message" and router.has_dialogs():
            reply = await self.dialogs.feed(server, event)
            if reply is not CONTINUE:
                return reply
        if router.routes(kind):
            reply = await router.dispatch(kind, event, robot=self, server=server)
            if reply is not CONTINUE:
                return reply
        method = getattr(self, hook)
        if isinstance(method, BoundHook):
            method = method.method
        return await server.call_handler(method, event)
