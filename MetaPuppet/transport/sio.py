"""The Socket.IO server: connections, the mutual handshake, and the socket event handlers.

Everything that knows python-socketio lives in this package (this module, :mod:`.fanout`,
:mod:`.driver` and :mod:`.guard`); the layers above see :class:`SocketTransport`, the
puppet registry and :class:`~MetaPuppet.presence.ClientInfo`.

A connection is *pending* from its connect until its ``authenticate`` proof checks out
(see :mod:`..protocol`); only then is it a client (``clients``), registered as a puppet or
a web client. A pending connection can do nothing but authenticate, within the guard's
byte budget and deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

import socketio
from aiohttp import web

from .. import protocol
from ..errors import ProtocolError, PuppetDisconnected, SnippetTimeout
from ..presence import ClientInfo, Presence
from ..protocol import Capabilities
from . import driver
from .auth import Authenticator, describe
from .codec import FastPacket
from .fanout import DirectFanout
from .guard import ConnectionGuard
from .handshake import Handshakes, Pending
from .limits import Limits
from .link import PuppetLink
from .registry import PuppetRegistry
from .takeover import BotClaims

__all__ = [
    "PUPPET_ROOM",
    "WEB_ROOM",
    "SocketPuppetLink",
    "SocketTransport",
    "TransportHandlers",
]

log = logging.getLogger("MetaPuppet.server")

PUPPET_ROOM: Final = "wx"  # the original project's room of WeChat clients
WEB_ROOM: Final = "web"  # every web client joins it at connect


class TransportHandlers(Protocol):
    """What the transport hands to the layers above."""

    async def on_puppet_event(self, info: ClientInfo, data: Any) -> dict[str, Any]:
        """An ``event`` from a puppet; returns its acknowledgement."""
        ...

    async def on_message(self, sid: str, message: dict[str, Any]) -> None:
        """The original project's ``message`` envelope from a client."""
        ...

    def on_client(self, info: ClientInfo, connected: bool) -> None:
        """A client connected (authenticated) or went away."""
        ...


class _Done:
    """An awaitable that is already finished."""

    def __await__(self) -> Any:
        return iter(())


class _SocketIOServer(socketio.AsyncServer):  # type: ignore[misc]
    """AsyncServer whose ``enter_room``/``leave_room`` act at once, and whose Engine.IO
    sessions pass the :class:`ConnectionGuard`.

    The original project called ``self.sio.enter_room(sid, room)`` without ``await`` (it was
    synchronous in python-socketio 4). Joining a room is local bookkeeping, so doing it
    immediately keeps that code working, and ``await``-ing the result still works too.
    """

    guard: ConnectionGuard | None = None

    def enter_room(self, sid: str, room: str, namespace: str | None = None) -> _Done:
        self.manager.basic_enter_room(sid, namespace or "/", room)
        return _Done()

    def leave_room(self, sid: str, room: str, namespace: str | None = None) -> _Done:
        self.manager.basic_leave_room(sid, namespace or "/", room)
        return _Done()

    async def _handle_eio_connect(self, eio_sid: str, environ: Any) -> Any:
        # python-socketio 5.18.1 internal: a new Engine.IO session, before any Socket.IO
        # packet; a string refuses it (python-engineio 4.15.1 answers 401 with it)
        request = environ.get("aiohttp.request") if isinstance(environ, dict) else None
        if self.guard is not None:
            refusal = self.guard.admit(eio_sid, getattr(request, "remote", None))
            if refusal is not None:
                return refusal
        return await super()._handle_eio_connect(eio_sid, environ)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> Any:
        # python-socketio 5.18.1 internal: the Engine.IO session ended
        try:
            return await super()._handle_eio_disconnect(eio_sid, reason)
        finally:
            if self.guard is not None:
                self.guard.forget(eio_sid)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> Any:
        # python-socketio 5.x internal, checked against 5.18: a packet that is not
        # Socket.IO at all (or JSON nested past Python's limit) is dropped with one line
        # instead of a traceback; the connection goes on
        try:
            return await super()._handle_eio_message(eio_sid, data)
        except (ValueError, RecursionError, IndexError, KeyError, TypeError) as exc:
            log.warning("dropped a malformed Socket.IO packet (%s: %.80s)", type(exc).__name__, exc)
            return None


class SocketPuppetLink(PuppetLink):
    """A Node client connected over Socket.IO."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        sid: str,
        bot: str,
        capabilities: Capabilities | None = None,
        *,
        remote: str | None = None,
    ) -> None:
        self.sio = sio
        self.sid = sid
        self.bot = bot
        self.remote = remote
        self.connected_at = time.time()
        if capabilities is not None:
            self.capabilities = capabilities
        self._pending: set[asyncio.Future[Any]] = set()
        self._closed: str | None = None

    async def call(self, event: str, data: Any, timeout: float) -> Any:
        if self._closed is not None:
            raise PuppetDisconnected(f"bot {self.bot!r} disconnected ({self._closed})")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()

        def on_ack(*answer: Any) -> None:
            if not future.done():
                future.set_result(answer[0] if answer else None)

        def on_timeout() -> None:
            if not future.done():
                future.set_exception(
                    SnippetTimeout(
                        f"no answer from bot {self.bot!r} within {timeout:.1f} s", bot=self.bot
                    )
                )

        # a timer on the future, not asyncio.wait_for: no extra task per call
        timer = loop.call_later(timeout, on_timeout)
        self._pending.add(future)
        try:
            try:
                await self._send(event, data, on_ack, timeout)
            except TypeError as exc:
                raise ValueError(f"arguments must be JSON-serialisable: {exc}") from None
            return await future
        finally:
            timer.cancel()
            self._pending.discard(future)

    async def _send(
        self, event: str, data: Any, on_ack: Callable[..., None], timeout: float
    ) -> None:
        # the client is on this process: straight to it, never through a cluster's queue
        await self.sio.emit(event, data, to=self.sid, callback=on_ack, ignore_queue=True)

    def close(self, reason: str) -> None:
        self._closed = reason
        for future in list(self._pending):
            if not future.done():
                future.set_exception(
                    PuppetDisconnected(f"bot {self.bot!r} disconnected during a call ({reason})")
                )
        self._pending.clear()


class SocketTransport:
    """The aiohttp app and Socket.IO server that Node puppets and web clients join.

    Authenticates every client with the mutual handshake (role, protocol version, proofs
    both ways), registers puppets in ``registry`` and tracks every client in ``presence``;
    events, envelopes and connection changes go to ``handlers``. ``limits`` are the bounds
    before and after authentication (:class:`~.limits.Limits`). ``client_manager`` is the
    python-socketio manager several server processes share (cluster mode, see
    :mod:`MetaPuppet.cluster`); by default the server is alone.
    """

    def __init__(
        self,
        *,
        authenticator: Authenticator,
        registry: PuppetRegistry,
        presence: Presence,
        handlers: TransportHandlers,
        limits: Limits | None = None,
        max_message_bytes: int | None = None,
        legacy_clients: bool = False,
        client_manager: socketio.AsyncManager | None = None,
    ) -> None:
        if limits is None:
            limits = Limits() if max_message_bytes is None else Limits(max_message_bytes)
        self.limits = limits
        self.authenticator = authenticator
        #: let clients without a token use the original project's ``message`` envelope
        #: (only that: no events, subscriptions, actions or snippets); loopback only
        self.legacy_clients = legacy_clients
        self.registry = registry
        self.presence = presence
        self.handlers = handlers
        #: sid -> the authenticated client
        self.clients: dict[str, ClientInfo] = {}
        #: connections between connect and ``authenticate``
        self.handshakes = Handshakes(authenticator)
        #: False while stopping: new connections and events are turned away
        self.accepting = False
        self.guard = ConnectionGuard(limits, alive=self._eio_alive, close_polling=self._close_eio)
        self.sio = _SocketIOServer(
            async_mode="aiohttp",
            serializer=FastPacket,
            max_http_buffer_size=limits.max_message_bytes,
            cors_allowed_origins=self.guard.origin_allowed,
            # cluster mode: python-socketio's AsyncRedisManager (MetaPuppet.cluster)
            client_manager=client_manager,
            logger=False,
            engineio_logger=False,
        )
        self.sio.guard = self.guard
        driver.install(self.sio.eio, self.guard)
        self.app = web.Application(
            client_max_size=limits.max_message_bytes, middlewares=[self.guard.middleware()]
        )
        self.sio.attach(self.app)
        self.fanout = DirectFanout(
            self.sio,
            self.guard.websockets,
            max_buffered_bytes=limits.max_buffered_bytes,
            cut=self.guard.cut,
        )
        self._background: set[asyncio.Task[Any]] = set()
        #: events of each puppet connection received and not yet acknowledged
        self._in_flight: dict[str, int] = {}
        #: whether the Node clients forward the bot's own messages (see set_self_messages)
        self.self_messages = False
        #: who may register a bot name (no silent takeover)
        self.claims = BotClaims(registry, limits.takeover_probe)
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on(protocol.EV_AUTHENTICATE, self._on_authenticate)
        self.sio.on(protocol.EV_EVENT, self._on_event)
        self.sio.on(protocol.EV_EXEC, self._on_exec)
        self.sio.on(protocol.EV_MESSAGE, self._on_message)
        self.sio.on("*", self._on_unknown)

    # ------------------------------------------------------------------ for the layers above

    def on(self, event: str, handler: Callable[..., Any]) -> None:
        """Handle another socket event (``handler(sid, data)``; its return is the ack).
        Only authenticated clients reach ``handler``; others get a ``forbidden`` ack."""

        async def authenticated_only(sid: str, *args: Any) -> Any:
            if sid not in self.clients:
                return protocol.error_ack("forbidden", "authenticate first")
            result = handler(sid, *args)
            return await result if inspect.isawaitable(result) else result

        self.sio.on(event, authenticated_only)

    def open(self, host: str) -> None:
        """Start taking connections for a server bound to ``host``."""
        self.guard.open(host)
        self.accepting = True

    async def emit(
        self, event: str, data: Any = None, *, to: str | list[str] | None = None
    ) -> None:
        """Emit to one sid, a list of sids, or a room name."""
        await self.sio.emit(event, data, to=to)

    async def send_to_many(self, event: str, data: Any, sids: list[str]) -> None:
        """One frame to many clients, encoded once (see :class:`DirectFanout`)."""
        await self.fanout.send_to_many(event, data, sids)

    def spawn(self, coro: Any) -> None:
        """Run ``coro`` in the background (presence notices and the like)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def disconnect_all(self) -> None:
        for sid in list(self.clients) + list(self.handshakes.pending):
            try:
                await self.sio.disconnect(sid)
            except Exception:  # pragma: no cover - best effort on the way out
                log.debug("disconnect of %s failed", sid, exc_info=True)

    async def shutdown(self) -> None:
        for task in list(self._background):
            task.cancel()
        await self.guard.close()
        await self.sio.shutdown()

    def _eio_alive(self, eio_sid: str) -> bool:
        return eio_sid in self.sio.eio.sockets

    async def _close_eio(self, eio_sid: str) -> None:
        with contextlib.suppress(Exception):
            await self.sio.eio.disconnect(eio_sid)

    def _eio_sid(self, sid: str) -> str | None:
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
        return eio_sid if isinstance(eio_sid, str) else None

    # ------------------------------------------------------------------ connect

    async def _on_connect(self, sid: str, environ: Any = None, auth: Any = None) -> None:
        if sid in self.clients or sid in self.handshakes.pending or not isinstance(environ, dict):
            # a connected client emitting an event named "connect": not a connection
            log.warning("client %s sent a reserved event name (connect); ignored", sid)
            return
        request = environ.get("aiohttp.request")
        remote = getattr(request, "remote", None) or environ.get("REMOTE_ADDR")
        if not self.accepting:
            raise socketio.exceptions.ConnectionRefusedError("the server is shutting down")
        if auth is None and self.legacy_clients:
            await self._connect_legacy(sid, remote)
            return
        try:
            parsed = protocol.parse_auth(auth)
            pending = self.handshakes.begin(sid, parsed, remote)
        except ProtocolError as exc:
            hint = ""
            if auth is None:
                hint = (
                    " (a client without a token, like the original project's web clients: use "
                    "MetaPuppet.web_client.connect(url, token), or on a loopback server set "
                    "web.legacy_clients to let such clients use the original message envelope)"
                )
            log.warning("refused a client from %s: %s%s", remote, exc, hint)
            raise socketio.exceptions.ConnectionRefusedError(str(exc)) from None
        if pending is None:
            await self._failed(remote, f"refused a {parsed.role} client from %s: invalid token")
            raise socketio.exceptions.ConnectionRefusedError("invalid token")
        # sent once the connect is answered (python-socketio 5.18.1 queues the CONNECT
        # packet before this task runs; clients also take events that come before it)
        self.spawn(self._send_challenge(pending))

    async def _send_challenge(self, pending: Pending) -> None:
        challenge = Handshakes.challenge(pending)
        await self.sio.emit(protocol.EV_CHALLENGE, challenge, to=pending.sid, ignore_queue=True)

    async def _failed(self, remote: str | None, what: str) -> None:
        delay = self.authenticator.failed(remote)
        extra = f" (slowed down {delay:.1f} s after repeated failures)" if delay else ""
        log.warning(what + extra, remote)
        if delay:
            await asyncio.sleep(delay)

    async def _connect_legacy(self, sid: str, remote: str | None) -> None:
        info = ClientInfo(sid=sid, role=protocol.ROLE_LEGACY, bot=None, remote=remote)
        self._authenticated(sid)
        self.clients[sid] = info
        self.handlers.on_client(info, True)
        self.presence.connected(info)
        log.info("token-less client %s connected from %s (original envelope only)", sid, remote)

    def _authenticated(self, sid: str) -> None:
        eio_sid = self._eio_sid(sid)
        if eio_sid is not None:
            self.guard.authenticated(eio_sid)

    def _close_soon(self, sid: str) -> None:
        """Disconnect ``sid`` after its pending acknowledgement went out."""

        async def close() -> None:
            await asyncio.sleep(0.05)
            with contextlib.suppress(Exception):
                await self.sio.disconnect(sid)

        self.spawn(close())

    async def _on_authenticate(self, sid: str, data: Any = None) -> dict[str, Any]:
        if sid in self.clients:
            return protocol.error_ack("bad_request", "this connection is authenticated already")
        remote = None
        pending_now = self.handshakes.pending.get(sid)
        if pending_now is not None:
            remote = pending_now.remote
        try:
            pending = self.handshakes.finish(sid, data)
        except ProtocolError as exc:
            self._close_soon(sid)
            if pending_now is None:
                return protocol.error_ack("forbidden", str(exc))
            await self._failed(remote, f"refused a client from %s: {exc}")
            return protocol.error_ack("forbidden", str(exc))
        self._authenticated(sid)
        auth = pending.auth
        info = ClientInfo(sid=sid, role=auth.role, bot=auth.bot, remote=pending.remote)
        if auth.role == protocol.ROLE_PUPPET:
            refusal = await self._claim_bot(info, auth.capabilities, auth.replace)
            if refusal is not None:
                self._close_soon(sid)
                return protocol.error_ack("bot_taken", refusal)
        else:
            info.permissions = pending.grant.permissions
            self._admit(info)
            await self.sio.enter_room(sid, WEB_ROOM)
            log.info("web client %s connected from %s", sid, pending.remote)
        answer: dict[str, Any] = {"ok": True, "role": auth.role, "bot": auth.bot}
        if auth.role == protocol.ROLE_WEB:
            answer["permissions"] = describe(info.permissions)
        else:
            answer["self_messages"] = self.self_messages
        return answer

    def set_self_messages(self, on: bool) -> None:
        """Tell every Node client whether to forward the bot's own messages (told to each
        new one in its handshake answer)."""
        self.self_messages = on
        for link in self.registry.links():
            if isinstance(link, SocketPuppetLink):
                self.spawn(self._tell_self_messages(link, on))

    async def _tell_self_messages(self, link: SocketPuppetLink, on: bool) -> None:
        request = {"action": protocol.CONTROL_SELF_MESSAGES, "on": on}
        try:
            answer = await link.call(protocol.EV_CONTROL, request, 10.0)
            protocol.unwrap_exec_response(answer, bot=link.bot)
        except Exception as exc:  # the next handshake tells it again
            log.warning("could not tell bot %r about its own messages: %s", link.bot, exc)

    def _admit(self, info: ClientInfo) -> None:
        self.clients[info.sid] = info
        self.handlers.on_client(info, True)
        self.presence.connected(info)

    async def _claim_bot(
        self, info: ClientInfo, capabilities: Capabilities | None, replace: bool
    ) -> str | None:
        """Register a puppet for its bot; the reason to refuse it, or None (see
        :class:`~.takeover.BotClaims`: a connected bot is not taken over silently)."""
        bot = info.bot
        assert bot is not None
        async with self.claims.claim(bot):
            refusal = await self.claims.refusal(bot, info.remote, replace=replace)
            if refusal is None and self._eio_sid(info.sid) is None:
                refusal = "the connection closed while it authenticated"
            if refusal is not None:
                return refusal
            self._admit(info)
            await self.sio.enter_room(info.sid, PUPPET_ROOM)
            link = SocketPuppetLink(self.sio, info.sid, bot, capabilities, remote=info.remote)
            replaced = self.registry.attach(link)
            if isinstance(replaced, SocketPuppetLink):
                self.spawn(self.sio.disconnect(replaced.sid))
        log.info("puppet for bot %r connected from %s", bot, info.remote)
        return None

    async def _on_disconnect(self, sid: str, *reason: Any) -> None:
        if self.sio.manager.is_connected(sid, "/"):
            # a live client emitting an event named "disconnect"; a real disconnect has
            # already marked the session as leaving
            log.warning("client %s sent a reserved event name (disconnect); ignored", sid)
            return
        self.handshakes.drop(sid)
        self._in_flight.pop(sid, None)
        info = self.clients.pop(sid, None)
        if info is None:
            return
        self.presence.disconnected(info)
        self.handlers.on_client(info, False)
        if info.role == protocol.ROLE_PUPPET and info.bot is not None:
            link = self.registry.get(info.bot)
            if isinstance(link, SocketPuppetLink) and link.sid == sid:
                self.registry.detach(link, "socket closed")
            log.info("puppet for bot %r disconnected", info.bot)
        else:
            log.info("web client %s disconnected", sid)

    # ------------------------------------------------------------------ events

    async def _on_event(self, sid: str, data: Any = None) -> dict[str, Any]:
        info = self.clients.get(sid)
        if info is None or info.role != protocol.ROLE_PUPPET or info.bot is None:
            return protocol.error_ack("forbidden", "only puppet clients may send bot events")
        window = self.limits.max_events_in_flight
        count = self._in_flight[sid] = self._in_flight.get(sid, 0) + 1
        if count >= window:
            self._pause(sid, info.bot, count)
        try:
            return await self.handlers.on_puppet_event(info, data)
        finally:
            count = self._in_flight.get(sid, 1) - 1
            if count > 0:
                self._in_flight[sid] = count
            else:
                self._in_flight.pop(sid, None)
            if count <= window // 2:
                self._resume(sid, info.bot)

    def _pause(self, sid: str, bot: str, count: int) -> None:
        """Back-pressure: stop reading a puppet whose events wait in such numbers."""
        eio_sid = self._eio_sid(sid)
        if eio_sid is None or self.guard.paused(eio_sid):
            return
        self.guard.pause(eio_sid)
        log.warning(
            "bot %r: %d events are waiting to be handled (max_queued_events); its connection "
            "is not read until half of them are done (the client keeps the rest)",
            bot,
            count,
        )

    def _resume(self, sid: str, bot: str) -> None:
        eio_sid = self._eio_sid(sid)
        if eio_sid is not None and self.guard.paused(eio_sid):
            self.guard.resume(eio_sid)
            log.info("bot %r: reading its connection again", bot)

    async def _on_exec(self, sid: str, data: Any = None) -> dict[str, Any]:
        log.warning("client %s tried to send exec; refused", sid)
        return protocol.error_ack(
            "forbidden", "exec runs from the server to puppets; clients can never run code"
        )

    async def _on_message(self, sid: str, message: Any = None) -> None:
        if sid not in self.clients:
            log.debug("ignored a message from %s, which has not authenticated", sid)
            return
        if not isinstance(message, dict) or not isinstance(message.get("sender"), str):
            log.debug("ignored a message without a sender from %s", sid)
            return
        try:
            await self.handlers.on_message(sid, message)
        except Exception:
            log.exception("handling a message from client %s failed", sid)

    async def _on_unknown(self, *args: Any) -> dict[str, Any]:
        # the catch-all gets (event, sid, *data); an event literally named "*" gets (sid, *data)
        event = args[0] if len(args) > 1 else "*"
        log.debug("a client sent unknown event %.80r", event)
        return protocol.error_ack("bad_request", f"unknown event {str(event)[:80]!r}")
