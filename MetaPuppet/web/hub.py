"""WebHub: everything the server does for web clients.

Socket.IO web clients subscribe to bot events (``subscribe``, acknowledged), call typed
actions (``action``) and send the original envelope (``message``) to handlers registered
with :meth:`WebHub.on_web_message`. The dashboard's live feed (server-sent events, see
``api.py``) reads from the same fan-out.

**Fan-out in batches.** Bot events are queued and sent by one flusher task: whatever
arrived since the last flush leaves as one ``events`` frame (a list) per client, at most
one frame per client every ``web.flush_ms`` (50 ms by default). At a low rate a batch
holds one event and leaves at once; under load, batching keeps the per-client frame count
bounded, which is what costs CPU (see ``bench/fanout.py``). A shared frame is written
straight to each client's websocket when Engine.IO's ordering and flow control allow it
(:meth:`WebHub._writable_now`), else through the client's Engine.IO queue.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import inspect
import itertools
import logging
import struct
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeVar

from aiohttp import WSMsgType

from ..protocol import ROLE_WEB, BotEvent
from .actions import ACTIONS, run_action
from .auth import FULL_ACCESS, PERM_READ, Grant, TokenRegistry
from .errors import WebError
from .filters import EventFilter

if TYPE_CHECKING:
    from ..server import SocketServerCore

log = logging.getLogger("MetaPuppet.web")

WEB_ROOM: Final = "web"  # every web client joins it at connect (server.py)
EV_EVENTS: Final = "events"  # server -> web client: a list of bot events
EV_SUBSCRIBE: Final = "subscribe"
EV_UNSUBSCRIBE: Final = "unsubscribe"
EV_ACTION: Final = "action"
RESERVED_EVENTS: Final = frozenset(
    {"connect", "connect_error", "disconnect", EV_EVENTS, "presence", "exec", "event"}
)
DEFAULT_FLUSH_MS: Final = 50
FEED_SIZE: Final = 200
MAX_SUBSCRIPTIONS: Final = 32
FANOUT_CHUNK: Final = 20
# larger frames go through Engine.IO (compressing one may wait for an executor)
DIRECT_MAX_BYTES: Final = 16 * 1024
STREAM_QUEUE: Final = 256
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
    """What the dashboard shows of one bot: login, QR code while a scan is needed."""

    bot: str
    logged_in: bool = False
    user: dict[str, Any] | None = None
    scan: dict[str, Any] | None = None
    last_event_at: float | None = None


@functools.lru_cache(maxsize=8)
def qr_data_uri(text: str) -> str:
    """The QR code of ``text`` as an SVG data URI (drawn here: no internet needed)."""
    import segno

    svg = segno.make(text, error="m").svg_inline(scale=6, border=2, dark="#111", light="#fff")
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode("ascii")


def _text_frame(payload: bytes) -> bytes:
    """An unmasked, uncompressed, final websocket text frame (RFC 6455 5.2), as a server
    sends it: the same bytes for every connection without permessage-deflate."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


class WebHub:
    """Web clients, their subscriptions, typed actions, the dashboard and the REST API.

    Created by the server (``server.web``); users mostly reach it through
    ``server.on_web_message`` and ``server.emit_to_web``.
    """

    def __init__(self, server: SocketServerCore) -> None:
        self.server = server
        self.sio = server.sio
        raw = server.config.raw
        section = raw.get("web") or {}
        self.tokens = TokenRegistry.from_config(raw)
        self.flush_interval = max(0.0, float(section.get("flush_ms", DEFAULT_FLUSH_MS)) / 1000)
        self.dashboard_enabled = bool(section.get("dashboard", True))
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

        #: Engine.IO sid -> the aiohttp websocket wrapper of that connection (see
        #: :meth:`_install_direct_writes`); empty when the driver could not be wrapped
        self._websockets: dict[str, Any] = {}
        self.direct_frames = 0
        self.queued_frames = 0
        self._install_direct_writes()

        self.sio.on(EV_SUBSCRIBE, self._on_subscribe)
        self.sio.on(EV_UNSUBSCRIBE, self._on_unsubscribe)
        self.sio.on(EV_ACTION, self._on_action)
        server.add_event_listener(self._on_bot_event)

        from .api import install

        self.api_app = install(self, server.app)

    # ------------------------------------------------------------------ auth

    def authenticate(self, token: str | None) -> Grant | None:
        """The grant of a presented token: the main token and ``server.web_token`` open
        everything, ``web.tokens`` entries what they list; None for anything else."""
        if not isinstance(token, str) or not token:
            return None
        opens_all = self.server._token_opens(token, ROLE_WEB)
        extra = self.tokens.authenticate(token)
        return Grant(FULL_ACCESS, "server.token") if opens_all else extra

    def permissions(self, sid: str) -> frozenset[str]:
        """What the web client ``sid`` may do (empty for unknown clients and puppets)."""
        session = self.sessions.get(sid)
        return session.permissions if session is not None else frozenset()

    def client_connected(self, sid: str, role: str, permissions: frozenset[str]) -> None:
        if role == ROLE_WEB:
            self.sessions[sid] = WebSession(sid, permissions)
        self._notify_streams("clients", {})

    def client_disconnected(self, sid: str) -> None:
        self.sessions.pop(sid, None)
        self._notify_streams("clients", {})

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
                answer = await self.server.call_handler(handler, sid, message)
            except Exception:
                log.exception("web message handler %r failed on a %r envelope", handler, kind)
                continue
            if answer is not None:
                await self.server.async_send_message_to_client(answer, sid=sid)
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
            await self.sio.emit(event, data, room=WEB_ROOM)
            return
        sids = [to] if isinstance(to, str) else list(to)
        for sid in sids:
            if sid not in self.sessions:
                raise ValueError(f"{sid!r} is not a connected web client")
        if sids:
            await self.sio.emit(event, data, to=sids)

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
            return {"ok": True, "removed": removed}
        number = data.get("subscription") if isinstance(data, Mapping) else None
        if isinstance(number, bool) or not isinstance(number, int):
            error = WebError("invalid_request", "send {subscription: <number>}, or nothing for all")
            return {"ok": False, **error.envelope()}
        if session.subscriptions.pop(number, None) is None:
            error = WebError("invalid_request", f"no subscription {number} on this client")
            return {"ok": False, **error.envelope()}
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
            result = await run_action(self.server, name, params)
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

    def _track(self, event: BotEvent) -> None:
        state = self.bot_states.get(event.bot)
        if state is None:
            state = self.bot_states[event.bot] = BotState(event.bot)
        state.last_event_at = time.time()
        payload = event.payload
        if event.name == "login":
            state.logged_in, state.user, state.scan = True, dict(payload), None
        elif event.name == "logout":
            state.logged_in, state.user = False, None
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
            await self._send_to_many(EV_EVENTS, [wires[i] for i in chosen], sids)
        self.delivered_batches += 1

    def _install_direct_writes(self) -> None:
        """Remember each websocket connection, so the fan-out can write to it directly.

        Engine.IO's aiohttp driver keeps its websocket wrapper private to the connection's
        handler; a subclass, installed on this server's Engine.IO instance only (a copy of
        its driver table, not the shared module), records it by Engine.IO sid while the
        connection lives. Anything unexpected leaves the driver alone: the fan-out then goes
        through Engine.IO's queues as before.
        """
        eio = getattr(self.sio, "eio", None)
        drivers = getattr(eio, "_async", None)
        mode = getattr(eio, "async_mode", None)
        if eio is None or not isinstance(drivers, dict) or mode != "aiohttp":
            return
        base = drivers.get("websocket")
        if not isinstance(base, type):
            return
        registry = self._websockets

        class RecordedWebSocket(base):  # type: ignore[misc, valid-type]
            async def __call__(self, environ: Any) -> Any:
                sid = getattr(getattr(self.handler, "__self__", None), "sid", None)
                if not isinstance(sid, str):
                    return await super().__call__(environ)
                registry[sid] = self
                try:
                    return await super().__call__(environ)
                finally:
                    if registry.get(sid) is self:
                        del registry[sid]

        eio._async = {**drivers, "websocket": RecordedWebSocket}

    def _writable_now(self, eio_sid: str, ping_deadline: float) -> Any:
        """The aiohttp websocket of ``eio_sid`` when a frame written to it now keeps every
        Engine.IO invariant, else None (the frame then goes through Engine.IO's queue).

        Safe means: the connection is an established websocket (not upgrading, closing or
        past its ping timeout); Engine.IO's writer task is idle, waiting on an empty queue
        (so nothing sent earlier through Engine.IO (an ack, ``presence``, ``emit_to_web``)
        is still on its way and could be overtaken); and the transport takes the frame
        without waiting (nothing buffered: a slow reader's frames queue in Engine.IO, in
        its own writer task, and never hold up the fan-out to the others).
        ``ping_deadline``: a pong older than this (``time.time()`` based) is overdue.
        """
        wrapper = self._websockets.get(eio_sid)
        if wrapper is None:
            return None
        socket = self.sio.eio.sockets.get(eio_sid)
        if (
            socket is None
            or not socket.upgraded
            or socket.upgrading
            or socket.closing
            or socket.closed
        ):
            return None
        last_ping = socket.last_ping
        if last_ping and last_ping < ping_deadline:
            return None  # Engine.IO's send() closes it
        queue = socket.queue
        if queue.qsize():
            return None
        # the writer task waits in queue.get(): its waiter is in _getters until a packet
        # wakes it; from then until the packet is written, the writer holds it
        getters = getattr(queue, "_getters", None)
        if not getters:
            return None
        for getter in getters:
            if getter.done():
                return None
        ws = wrapper._sock
        writer = getattr(ws, "_writer", None)
        if writer is None or ws.closed or ws._closing or writer._closing:
            return None
        transport = writer.transport
        if transport.is_closing() or transport.get_write_buffer_size() or writer.protocol._paused:
            return None
        return ws

    async def _send_to_many(self, event: str, data: Any, sids: list[str]) -> None:
        """Send one frame to many clients, encoded once, yielding to the loop now and then.

        ``sio.emit(to=sids)`` creates one task per recipient and runs them all in one go;
        with hundreds of web clients that starves everything else on the loop (the puppets'
        events included) for the whole fan-out. Instead the packet is encoded once, and
        when it is safe (see :meth:`_writable_now`) written straight to each client's
        websocket: the same prebuilt websocket frame for every connection without
        compression, aiohttp's ``send_frame`` for those with it. That costs a fraction of
        going through Engine.IO's per-client queue and writer task (one task and one timer
        per packet on Python 3.11); a client for which it is not safe gets the packet
        through its Engine.IO queue as before. The loop gets a turn every
        :data:`FANOUT_CHUNK` clients, so the puppets' own events keep flowing
        (bench/fanout.py).
        """
        packet = self._encode(event, data)
        if packet is None:
            await self.sio.emit(event, data, to=sids)
            return
        encoded = packet.encode()
        payload = encoded.encode("utf-8") if isinstance(encoded, str) else None
        direct = payload is not None and len(payload) <= DIRECT_MAX_BYTES
        frame = _text_frame(payload) if payload is not None and direct else b""
        manager, eio = self.sio.manager, self.sio.eio
        ping_deadline = time.time() - eio.ping_timeout
        written = queued = 0
        for index, sid in enumerate(sids):
            eio_sid = manager.eio_sid_from_sid(sid, "/")
            if eio_sid is not None:
                ws = self._writable_now(eio_sid, ping_deadline) if direct else None
                sent = False
                if ws is not None:
                    try:
                        writer = ws._writer
                        if writer.compress:  # permessage-deflate: aiohttp compresses
                            await ws.send_frame(payload, WSMsgType.TEXT)
                        else:
                            writer.transport.write(frame)
                        sent = True
                        written += 1
                    except Exception:  # the connection is going away: let Engine.IO see
                        log.debug("direct write to %s failed", sid, exc_info=True)
                if not sent:
                    await eio.send_packet(eio_sid, packet)
                    queued += 1
            if index % FANOUT_CHUNK == FANOUT_CHUNK - 1:
                await asyncio.sleep(0)
        self.direct_frames += written
        self.queued_frames += queued

    def _encode(self, event: str, data: Any) -> Any:
        """The Engine.IO packet of a Socket.IO event, or None to fall back to ``emit``."""
        try:
            from engineio import packet as eio_packet
            from socketio import packet as sio_packet

            encoded = self.sio.packet_class(
                sio_packet.EVENT, namespace="/", data=[event, data]
            ).encode()
        except Exception:  # pragma: no cover - a python-socketio without these internals
            log.debug("falling back to emit for web fan-out", exc_info=True)
            return None
        if not isinstance(encoded, str):  # binary attachments: let python-socketio do it
            return None
        return eio_packet.Packet(eio_packet.MESSAGE, encoded)

    def _notify_streams(self, kind: str, data: Any) -> None:
        for stream in list(self.streams):
            stream.put(kind, data)

    # ------------------------------------------------------------------ dashboard data

    def bots(self) -> list[dict[str, Any]]:
        """Every bot seen or connected: login state, the QR code while a scan is needed."""
        puppets = {c["bot"]: c for c in self.server.list_clients() if c.get("role") == "puppet"}
        names = sorted(set(self.bot_states) | set(self.server.bots))
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
            answer.append(
                {
                    "bot": name,
                    "connected": name in self.server.bots,
                    "status": client.get("status")
                    or ("online" if name in self.server.bots else "offline"),
                    "logged_in": logged_in,
                    "user": user,
                    "scan": scan,
                    "last_heartbeat": client.get("last_heartbeat"),
                    "last_event_at": state.last_event_at,
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
        provider = getattr(self.server, "dialog_provider", None)
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
        return stream

    def close_stream(self, stream: LiveStream) -> None:
        self.streams.discard(stream)
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
