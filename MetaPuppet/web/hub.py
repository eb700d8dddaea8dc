"""WebHub: everything the server does for web clients.

Socket.IO web clients subscribe to bot events (``subscribe``, acknowledged), call typed
actions (``action``) and send the original envelope (``message``) to handlers registered
with :meth:`WebHub.on_web_message`. The dashboard's live feed (server-sent events, see
``api.py``) reads from the same fan-out.

**Fan-out in batches.** Bot events are queued and sent by one flusher task: whatever
arrived since the last flush leaves as one ``events`` frame (a list) per client, at most
one frame per client every ``web.flush_ms`` (50 ms by default). At a low rate a batch
holds one event and leaves at once; under load, batching keeps the per-client frame count
bounded, which is what costs CPU (see ``bench/fanout.py``). The transport writes a shared
frame straight to each client's websocket where that is safe
(:class:`~MetaPuppet.transport.fanout.DirectFanout`).

The hub sees the server only through :class:`~MetaPuppet.web.host.WebHost`, and the
sockets only through :class:`~MetaPuppet.transport.SocketTransport`.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import inspect
import itertools
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from ..errors import ConfigError
from ..presence import ClientInfo
from ..protocol import HANDSHAKE_EVENTS, ROLE_WEB, BotEvent
from ..transport.auth import PERM_READ, Grant
from ..transport.sio import WEB_ROOM, SocketTransport
from .actions import ACTIONS, run_action
from .errors import WebError
from .filters import EventFilter
from .host import WebHost

__all__ = [
    "DEFAULT_FLUSH_MS",
    "DEFAULT_MAX_BODY_BYTES",
    "EV_ACTION",
    "EV_EVENTS",
    "EV_SUBSCRIBE",
    "EV_UNSUBSCRIBE",
    "FEED_SIZE",
    "MAX_SUBSCRIPTIONS",
    "MAX_TALKERS",
    "RESERVED_EVENTS",
    "STREAM_QUEUE",
    "BotState",
    "Handler",
    "LiveStream",
    "WebHub",
    "WebSession",
    "qr_data_uri",
]

log = logging.getLogger("MetaPuppet.web")

EV_EVENTS: Final = "events"  # server -> web client: a list of bot events
EV_SUBSCRIBE: Final = "subscribe"
EV_UNSUBSCRIBE: Final = "unsubscribe"
EV_ACTION: Final = "action"
RESERVED_EVENTS: Final = frozenset(
    {"connect", "connect_error", "disconnect", EV_EVENTS, "presence", "exec", "event"}
    | HANDSHAKE_EVENTS
)
DEFAULT_FLUSH_MS: Final = 50
DEFAULT_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
FEED_SIZE: Final = 200
MAX_SUBSCRIPTIONS: Final = 32
STREAM_QUEUE: Final = 256
#: contacts remembered per bot as having written to it (the newest; for channels without a
#: contact list, such as iLink, they are the contacts the dashboard can show)
MAX_TALKERS: Final = 1000
# ScanStatus values for which the QR code is worth showing (Unknown, Waiting, Scanned, Timeout)
_SHOW_QR: Final = frozenset({0, 2, 3, 5})

Handler = Callable[[str, dict[str, Any]], Any]
H = TypeVar("H", bound=Handler)


@dataclass
class WebSession:
    """One connected Socket.IO web client: its permissions and subscriptions."""

    sid: str
    permissions: frozenset[str]
    subscriptions: dict[int, EventFilter] = field(default_factory=dict)


class LiveStream:
    """One dashboard feed (server-sent events): a filter and a bounded queue of frames.

    A reader too slow to keep up loses the oldest frames and is told so with a ``lagged``
    frame, rather than making the server hold an ever-growing backlog.
    """

    def __init__(self, event_filter: EventFilter) -> None:
        self.filter = event_filter
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(STREAM_QUEUE)
        self.closed = asyncio.Event()
        self.dropped = 0

    def put(self, kind: str, data: Any) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait((kind, data))


@dataclass
class BotState:
    """What the dashboard shows of one bot: login, QR code while a scan is needed, why it
    was logged out (an expired iLink session: "scan again"), who wrote to it."""

    bot: str
    logged_in: bool = False
    user: dict[str, Any] | None = None
    scan: dict[str, Any] | None = None
    last_event_at: float | None = None
    logout: dict[str, Any] | None = None
    #: contact id -> {id, name, last_message_at}, least recently active first
    talkers: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)

    def talked(self, payload: Mapping[str, Any], at: float) -> None:
        """A contact wrote to the bot directly (not in a room)."""
        contact = payload.get("talkerId") or payload.get("fromId")
        if not isinstance(contact, str) or not contact:
            return
        talker = payload.get("talker")
        name = talker.get("name") if isinstance(talker, Mapping) else None
        self.talkers.pop(contact, None)
        self.talkers[contact] = {"id": contact, "name": name or contact, "last_message_at": at}
        while len(self.talkers) > MAX_TALKERS:
            self.talkers.popitem(last=False)


def _ignore(event: BotEvent) -> None:
    """The listener that only says the hub wants the bot's own messages."""


@functools.lru_cache(maxsize=8)
def qr_data_uri(text: str) -> str:
    """The QR code of ``text`` as an SVG data URI (drawn here: no internet needed).

    A standalone SVG document (with its ``xmlns``): an ``<img>`` does not render the
    inline-HTML flavour of SVG.
    """
    import io

    import segno

    svg = io.BytesIO()
    segno.make(text, error="m").save(
        svg, kind="svg", xmldecl=False, scale=6, border=2, dark="#111", light="#fff"
    )
    return "data:image/svg+xml;base64," + base64.b64encode(svg.getvalue()).decode("ascii")


class WebHub:
    """Web clients, their subscriptions, typed actions, the dashboard and the REST API.

    Created by the server (``server.web``); users mostly reach it through
    ``server.on_web_message`` and ``server.emit_to_web``.
    """

    def __init__(self, host: WebHost, transport: SocketTransport) -> None:
        self.host = host
        self.transport = transport
        section = host.config.raw.get("web") or {}
        self.flush_interval = max(0.0, float(section.get("flush_ms", DEFAULT_FLUSH_MS)) / 1000)
        self.dashboard_enabled = bool(section.get("dashboard", True))
        #: REST request bodies larger than this are refused (413) before they are read
        self.max_body_bytes = section.get("max_body_bytes") or DEFAULT_MAX_BODY_BYTES
        if isinstance(self.max_body_bytes, bool) or not isinstance(self.max_body_bytes, int):
            raise ConfigError("web.max_body_bytes must be a whole number of bytes (16 MiB)")
        self.feed: deque[dict[str, Any]] = deque(maxlen=FEED_SIZE)
        self.bot_states: dict[str, BotState] = {}
        self.sessions: dict[str, WebSession] = {}
        self.streams: set[LiveStream] = set()
        self.started_at = time.time()
        self._handlers: dict[str | None, list[Handler]] = {}
        self._subscription_ids = itertools.count(1)
        self._pending: list[BotEvent] = []
        self._wake: asyncio.Event | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.delivered_batches = 0

        transport.on(EV_SUBSCRIBE, self._on_subscribe)
        transport.on(EV_UNSUBSCRIBE, self._on_unsubscribe)
        transport.on(EV_ACTION, self._on_action)
        host.add_event_listener(self._on_bot_event, self_messages=False)
        #: registered (a listener that wants the bot's own messages) while a subscription
        #: or a live stream could match one, so that the Node clients forward them
        self._own_messages: Callable[[], None] | None = None

    @property
    def direct_frames(self) -> int:
        """Fan-out frames written straight to a websocket (see ``bench/fanout.py``)."""
        return self.transport.fanout.direct_frames

    @property
    def queued_frames(self) -> int:
        """Fan-out frames that went through Engine.IO's queue."""
        return self.transport.fanout.queued_frames

    # ------------------------------------------------------------------ auth

    def authenticate(self, token: str | None) -> Grant | None:
        """The grant of a presented token: the main token and ``server.web_token`` open
        everything, ``web.tokens`` entries what they list; None for anything else."""
        return self.host.authenticator.authenticate(token, ROLE_WEB)

    def auth_failed(self, remote: str | None) -> float:
        """Count a failed authentication from ``remote``; how long to hold the refusal."""
        return self.host.authenticator.failed(remote)

    def permissions(self, sid: str) -> frozenset[str]:
        """What the web client ``sid`` may do (empty for unknown clients and puppets)."""
        session = self.sessions.get(sid)
        return session.permissions if session is not None else frozenset()

    def client_changed(self, info: ClientInfo, connected: bool) -> None:
        """A client connected (authenticated) or went away."""
        if not connected:
            if self.sessions.pop(info.sid, None) is not None:
                self._update_own_messages()
        elif info.role == ROLE_WEB:
            self.sessions[info.sid] = WebSession(info.sid, info.permissions)
        self._notify_streams("clients", {})

    def _update_own_messages(self) -> None:
        """Want the bot's own messages while a subscription or stream could match one."""
        filters = [f for s in self.sessions.values() for f in s.subscriptions.values()]
        filters += [stream.filter for stream in self.streams]
        wanted = any(not f.events or "message" in f.events for f in filters)
        if wanted and self._own_messages is None:
            self._own_messages = self.host.add_event_listener(_ignore, self_messages=True)
        elif not wanted and self._own_messages is not None:
            self._own_messages()
            self._own_messages = None

    # ------------------------------------------------------------------ messages

    def on_web_message(self, type: str | None = None) -> Callable[[H], H]:  # noqa: A002
        """Register ``handler(sid, message)`` for ``message`` envelopes of ``type`` (None:
        any type without a handler of its own). What the handler returns (a str or a dict)
        is sent back to that client as a ``message`` envelope::

            @server.on_web_message(type="PING")
            async def ping(sid, message):
                return {"type": "PONG", "text": message.get("text", "")}
        """
        if type is not None and (not isinstance(type, str) or not type):
            raise ValueError("type must be a non-empty string, or None for any type")

        def register(handler: H) -> H:
            if not callable(handler):
                raise TypeError("on_web_message needs a function")
            self._handlers.setdefault(type, []).append(handler)
            return handler

        return register

    async def dispatch_message(self, sid: str, message: dict[str, Any]) -> bool:
        """Hand an envelope to its registered handlers; False when none is registered."""
        kind = message.get("type")
        handlers = self._handlers.get(kind) if isinstance(kind, str) else None
        if not handlers:
            if kind == "SOCKET_INFO":
                return False
            handlers = self._handlers.get(None)
        if not handlers:
            return False
        for handler in list(handlers):
            try:
                answer = await self.host.call_handler(handler, sid, message)
            except Exception:
                log.exception("web message handler %r failed on a %r envelope", handler, kind)
                continue
            if answer is not None:
                await self.host.async_send_message_to_client(answer, sid=sid)
        return True

    async def emit_to_web(
        self, event: str, data: Any = None, to: str | Iterable[str] | None = None
    ) -> None:
        """Push ``event`` with ``data`` to web clients: every one (``to=None``), one sid or
        a list of sids. Puppets are never addressed this way."""
        if not isinstance(event, str) or not event:
            raise ValueError("event must be a non-empty string")
        if event in RESERVED_EVENTS:
            raise ValueError(f"{event!r} is reserved by MetaPuppet; choose another event name")
        if to is None:
            await self.transport.emit(event, data, to=WEB_ROOM)
            return
        sids = [to] if isinstance(to, str) else list(to)
        for sid in sids:
            if sid not in self.sessions:
                raise ValueError(f"{sid!r} is not a connected web client")
        if sids:
            await self.transport.emit(event, data, to=sids)

    # ------------------------------------------------------------------ socket events

    async def _on_subscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        """``subscribe`` with a filter (nothing: every event) -> ``{ok, subscription, filter}``."""
        session = self.sessions.get(sid)
        try:
            if session is None:
                raise WebError("permission_denied", "only web clients can subscribe to events")
            if PERM_READ not in session.permissions:
                raise WebError("permission_denied", "this token may not read events ('read')")
            event_filter = EventFilter.parse(data)
            if len(session.subscriptions) >= MAX_SUBSCRIPTIONS:
                raise WebError(
                    "invalid_request",
                    f"at most {MAX_SUBSCRIPTIONS} subscriptions per client; unsubscribe first",
                )
        except WebError as exc:
            return {"ok": False, **exc.envelope()}
        number = next(self._subscription_ids)
        session.subscriptions[number] = event_filter
        self._update_own_messages()
        log.debug("web client %s subscribed (%d): %s", sid, number, event_filter.to_dict())
        return {"ok": True, "subscription": number, "filter": event_filter.to_dict()}

    async def _on_unsubscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        """``unsubscribe`` with ``{subscription: n}`` (one) or nothing (all)."""
        session = self.sessions.get(sid)
        if session is None:
            return {"ok": False, **WebError("permission_denied", "not a web client").envelope()}
        if data is None or data == {}:
            removed = len(session.subscriptions)
            session.subscriptions.clear()
            self._update_own_messages()
            return {"ok": True, "removed": removed}
        number = data.get("subscription") if isinstance(data, Mapping) else None
        if isinstance(number, bool) or not isinstance(number, int):
            error = WebError("invalid_request", "send {subscription: <number>}, or nothing for all")
            return {"ok": False, **error.envelope()}
        if session.subscriptions.pop(number, None) is None:
            error = WebError("invalid_request", f"no subscription {number} on this client")
            return {"ok": False, **error.envelope()}
        self._update_own_messages()
        return {"ok": True, "removed": 1}

    async def _on_action(self, sid: str, data: Any = None) -> dict[str, Any]:
        """``action`` ``{action: name, ...params}`` -> ``{ok: true, result}`` or the envelope."""
        try:
            if not isinstance(data, Mapping):
                raise WebError("invalid_request", "an action must be an object {action, ...}")
            name = data.get("action")
            if not isinstance(name, str) or name not in ACTIONS:
                raise WebError(
                    "unknown_action",
                    f"unknown action {name!r}: use one of {', '.join(ACTIONS)}",
                )
            self.require(self.permissions(sid), ACTIONS[name].permission)
            params = {k: v for k, v in data.items() if k != "action"}
            result = await run_action(self.host, name, params)
        except WebError as exc:
            log.info("web client %s: action refused: %s", sid, exc.message)
            return {"ok": False, **exc.envelope()}
        return {"ok": True, "result": result}

    @staticmethod
    def require(permissions: frozenset[str], permission: str | None) -> None:
        if permission is not None and permission not in permissions:
            raise WebError(
                "permission_denied",
                f"this token lacks the {permission!r} permission; ask for a token that has it",
            )

    # ------------------------------------------------------------------ bot events

    def _on_bot_event(self, event: BotEvent) -> None:
        self._track(event)
        if event.name != "heartbeat":
            self.feed.append(event.to_wire())
        if not self.sessions and not self.streams:
            return
        self._pending.append(event)
        if self._wake is None:
            self._wake = asyncio.Event()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())
        self._wake.set()

    def show_event(self, event: BotEvent) -> None:
        """An event of a bot connected to another server process (cluster mode): into the
        feed, the bot's state and every matching subscription, as this process's own."""
        self._on_bot_event(event)

    def _track(self, event: BotEvent) -> None:
        state = self.bot_states.get(event.bot)
        if state is None:
            state = self.bot_states[event.bot] = BotState(event.bot)
        now = state.last_event_at = time.time()
        payload = event.payload
        if event.name == "login":
            state.logged_in, state.user, state.scan = True, dict(payload), None
            state.logout = None
        elif event.name == "logout":
            state.logged_in, state.user = False, None
            reason = payload.get("reason")
            state.logout = {
                "reason": reason if isinstance(reason, str) and reason else None,
                "at": now,
            }
        elif event.name == "message":
            if not payload.get("self") and not payload.get("roomId"):
                state.talked(payload, now)
        elif event.name == "scan":
            status = payload.get("status")
            state.scan = {
                "status": status,
                "status_name": payload.get("statusName"),
                "qrcode": payload.get("qrcode") or "",
            }

    async def _flush_forever(self) -> None:
        assert self._wake is not None
        last = 0.0
        while True:
            await self._wake.wait()
            wait = last + self.flush_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # events arriving meanwhile join this batch
            self._wake.clear()
            batch, self._pending = self._pending, []
            last = time.monotonic()
            if batch:
                try:
                    await self._deliver(batch)
                except Exception:
                    log.exception("delivering %d events to web clients failed", len(batch))

    async def _deliver(self, batch: list[BotEvent]) -> None:
        wires = [event.to_wire() for event in batch]
        # clients with the same filters get the same frame: encode once per distinct list
        by_filters: dict[frozenset[EventFilter], list[str]] = {}
        for session in list(self.sessions.values()):
            if session.subscriptions:
                key = frozenset(session.subscriptions.values())
                by_filters.setdefault(key, []).append(session.sid)
        by_selection: dict[tuple[int, ...], list[str]] = {}
        for filters, sids in by_filters.items():
            chosen = tuple(i for i, e in enumerate(batch) if any(f.matches(e) for f in filters))
            if chosen:
                by_selection.setdefault(chosen, []).extend(sids)
        for stream in list(self.streams):
            frame = [wires[i] for i, e in enumerate(batch) if stream.filter.matches(e)]
            if frame:
                stream.put(EV_EVENTS, frame)
        for chosen, sids in by_selection.items():
            await self.transport.send_to_many(EV_EVENTS, [wires[i] for i in chosen], sids)
        self.delivered_batches += 1

    def _notify_streams(self, kind: str, data: Any) -> None:
        for stream in list(self.streams):
            stream.put(kind, data)

    # ------------------------------------------------------------------ dashboard data

    def bots(self) -> list[dict[str, Any]]:
        """Every bot seen or connected: login state, the QR code while a scan is needed, why
        it was logged out, its channel's capabilities and its puppet's state."""
        connected = self.host.bots
        puppets = {c["bot"]: c for c in self.host.list_clients() if c.get("role") == "puppet"}
        names = sorted(set(self.bot_states) | set(connected))
        answer = []
        for name in names:
            state = self.bot_states.get(name) or BotState(name)
            client = puppets.get(name) or {}
            user = state.user or client.get("logged_in_as")
            logged_in = state.logged_in or bool(client.get("logged_in_as"))
            scan = None
            if state.scan is not None and not logged_in:
                scan = dict(state.scan)
                qrcode = scan.get("qrcode") or ""
                scan["qr_image"] = (
                    qr_data_uri(qrcode) if qrcode and scan.get("status") in _SHOW_QR else None
                )
            capabilities = self.host.capabilities(name)
            answer.append(
                {
                    "bot": name,
                    "connected": name in connected,
                    "status": client.get("status")
                    or ("online" if name in connected else "offline"),
                    "logged_in": logged_in,
                    "user": user,
                    "scan": scan,
                    "logout": None if logged_in else state.logout,
                    "channel": capabilities.channel,
                    "capabilities": capabilities.to_wire(),
                    "puppet": client.get("puppet"),
                    "last_heartbeat": client.get("last_heartbeat"),
                    "last_event_at": state.last_event_at,
                }
            )
        return answer

    def known_bot(self, bot: str) -> bool:
        """Whether ``bot`` is connected or was seen since the server started."""
        return bot in self.bot_states or bot in self.host.bots

    def budgets(self, bot: str) -> list[dict[str, Any]]:
        """The contacts who wrote to ``bot`` (newest first), each with its send budget
        (None on channels without one)."""
        state = self.bot_states.get(bot)
        talkers = list(state.talkers.values()) if state is not None else []
        answer = []
        for talker in reversed(talkers):
            budget = self.host.send_budget(bot, talker["id"])
            answer.append(
                {
                    "contact": talker["id"],
                    "name": talker["name"],
                    "last_message_at": talker["last_message_at"],
                    "budget": budget,
                }
            )
        return answer

    def recent_events(self, event_filter: EventFilter, limit: int) -> list[dict[str, Any]]:
        matching = [
            wire
            for wire in self.feed
            if event_filter.matches(
                BotEvent(wire["id"], wire["bot"], wire["name"], wire["payload"], wire["ts"])
            )
        ]
        return matching[-limit:] if limit else []

    async def dialogs(self) -> list[dict[str, Any]]:
        """Dialogs in progress, from ``server.dialog_provider`` (none when it is unset)."""
        provider = self.host.dialog_provider
        if provider is None:
            return []
        found = provider()
        if inspect.isawaitable(found):
            found = await found
        items = []
        for item in found or []:
            to_dict = getattr(item, "to_dict", None)
            items.append(dict(to_dict() if callable(to_dict) else item))
        return items

    def open_stream(self, event_filter: EventFilter) -> LiveStream:
        stream = LiveStream(event_filter)
        self.streams.add(stream)
        self._update_own_messages()
        return stream

    def close_stream(self, stream: LiveStream) -> None:
        self.streams.discard(stream)
        self._update_own_messages()
        if not stream.closed.is_set():
            stream.closed.set()
            stream.put("close", None)

    async def close(self) -> None:
        """End live streams and the flusher (the server is stopping)."""
        for stream in list(self.streams):
            self.close_stream(stream)
        if self._flusher is not None:
            self._flusher.cancel()
            try:
                await self._flusher
            except (asyncio.CancelledError, Exception):
                pass
            self._flusher = None
        self._wake = None
