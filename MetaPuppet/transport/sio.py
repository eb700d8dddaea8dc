"""The Socket.IO server: connections, authentication, and the socket event handlers.

Everything that knows python-socketio lives in this package (this module and
:mod:`.fanout`); the layers above see :class:`SocketTransport`, the puppet registry and
:class:`~MetaPuppet.presence.ClientInfo`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final, Protocol

import socketio
from aiohttp import web

from .. import protocol
from ..errors import ProtocolError, PuppetDisconnected, SnippetTimeout
from ..presence import ClientInfo, Presence
from ..protocol import Capabilities
from .auth import Authenticator
from .codec import FastPacket
from .fanout import DirectFanout
from .link import PuppetLink
from .registry import PuppetRegistry

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
    """AsyncServer whose ``enter_room``/``leave_room`` act at once.

    The original project called ``self.sio.enter_room(sid, room)`` without ``await`` (it was
    synchronous in python-socketio 4). Joining a room is local bookkeeping, so doing it
    immediately keeps that code working, and ``await``-ing the result still works too.
    """

    def enter_room(self, sid: str, room: str, namespace: str | None = None) -> _Done:
        self.manager.basic_enter_room(sid, namespace or "/", room)
        return _Done()

    def leave_room(self, sid: str, room: str, namespace: str | None = None) -> _Done:
        self.manager.basic_leave_room(sid, namespace or "/", room)
        return _Done()

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
    ) -> None:
        self.sio = sio
        self.sid = sid
        self.bot = bot
        if capabilities is not None:
            self.capabilities = capabilities
        self._pending: set[asyncio.Future[Any]] = set()
        self._closed: str | None = None

    async def call(self, event: str, data: Any, timeout: float) -> Any:
        if self._closed is not None:
            raise PuppetDisconnected(f"bot {self.bot!r} disconnected ({self._closed})")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_ack(*answer: Any) -> None:
            if not future.done():
                future.set_result(answer[0] if answer else None)

        self._pending.add(future)
        try:
            try:
                await self.sio.emit(event, data, to=self.sid, callback=on_ack)
            except TypeError as exc:
                raise ValueError(f"arguments must be JSON-serialisable: {exc}") from None
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise SnippetTimeout(
                f"no answer from bot {self.bot!r} within {timeout:.1f} s", bot=self.bot
            ) from None
        finally:
            self._pending.discard(future)

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

    Authenticates every client at connect (role, protocol version, token), registers
    puppets in ``registry`` and tracks every client in ``presence``; events, envelopes and
    connection changes go to ``handlers``.
    """

    def __init__(
        self,
        *,
        max_message_bytes: int,
        authenticator: Authenticator,
        registry: PuppetRegistry,
        presence: Presence,
        handlers: TransportHandlers,
        legacy_clients: bool = False,
    ) -> None:
        self.authenticator = authenticator
        #: let clients without a token use the original project's ``message`` envelope
        #: (only that: no events, subscriptions, actions or snippets); loopback only
        self.legacy_clients = legacy_clients
        self.registry = registry
        self.presence = presence
        self.handlers = handlers
        #: sid -> the authenticated client
        self.clients: dict[str, ClientInfo] = {}
        #: False while stopping: new connections and events are turned away
        self.accepting = False
        self.sio = _SocketIOServer(
            async_mode="aiohttp",
            serializer=FastPacket,
            max_http_buffer_size=max_message_bytes,
            cors_allowed_origins=[],
            logger=False,
            engineio_logger=False,
        )
        self.app = web.Application(client_max_size=max_message_bytes)
        self.sio.attach(self.app)
        self.fanout = DirectFanout(self.sio)
        self._background: set[asyncio.Task[Any]] = set()
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on(protocol.EV_EVENT, self._on_event)
        self.sio.on(protocol.EV_EXEC, self._on_exec)
        self.sio.on(protocol.EV_MESSAGE, self._on_message)
        self.sio.on("*", self._on_unknown)

    # ------------------------------------------------------------------ for the layers above

    def on(self, event: str, handler: Callable[..., Any]) -> None:
        """Handle another socket event (``handler(sid, data)``; its return is the ack)."""
        self.sio.on(event, handler)

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
        for sid in list(self.clients):
            try:
                await self.sio.disconnect(sid)
            except Exception:  # pragma: no cover - best effort on the way out
                log.debug("disconnect of %s failed", sid, exc_info=True)

    async def shutdown(self) -> None:
        for task in list(self._background):
            task.cancel()
        await self.sio.shutdown()

    # ------------------------------------------------------------------ socket handlers

    async def _on_connect(self, sid: str, environ: Any = None, auth: Any = None) -> None:
        if sid in self.clients or not isinstance(environ, dict):
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
        except ProtocolError as exc:
            hint = ""
            if auth is None:
                hint = (
                    " (a client without a token, like the original project's web clients: give "
                    "it auth={token, role: 'web', protocol}, or on a loopback server set "
                    "web.legacy_clients to let such clients use the original message envelope)"
                )
            log.warning("refused a client from %s: %s%s", remote, exc, hint)
            raise socketio.exceptions.ConnectionRefusedError(str(exc)) from None
        grant = self.authenticator.authenticate(parsed.token, parsed.role)
        if grant is None:
            delay = self.authenticator.failed(remote)
            log.warning(
                "refused a %s client from %s: invalid token%s",
                parsed.role,
                remote,
                f" (slowed down {delay:.1f} s after repeated failures)" if delay else "",
            )
            if delay:
                await asyncio.sleep(delay)
            raise socketio.exceptions.ConnectionRefusedError("invalid token")
        if parsed.protocol != protocol.PROTOCOL_VERSION:
            reason = (
                f"protocol version mismatch: the client speaks {parsed.protocol}, "
                f"the server speaks {protocol.PROTOCOL_VERSION}; update the older side"
            )
            log.warning("refused a client from %s: %s", remote, reason)
            raise socketio.exceptions.ConnectionRefusedError(reason)
        info = ClientInfo(sid=sid, role=parsed.role, bot=parsed.bot, remote=remote)
        if parsed.role == protocol.ROLE_WEB:
            info.permissions = grant.permissions
        self.clients[sid] = info
        self.handlers.on_client(info, True)
        self.presence.connected(info)
        if parsed.role == protocol.ROLE_PUPPET:
            assert parsed.bot is not None
            await self.sio.enter_room(sid, PUPPET_ROOM)
            link = SocketPuppetLink(self.sio, sid, parsed.bot, parsed.capabilities)
            old = self.registry.attach(link)
            if isinstance(old, SocketPuppetLink):
                self.spawn(self.sio.disconnect(old.sid))
            log.info("puppet for bot %r connected from %s", parsed.bot, remote)
        else:
            await self.sio.enter_room(sid, WEB_ROOM)
            log.info("web client %s connected from %s", sid, remote)

    async def _connect_legacy(self, sid: str, remote: str | None) -> None:
        info = ClientInfo(sid=sid, role=protocol.ROLE_LEGACY, bot=None, remote=remote)
        self.clients[sid] = info
        self.handlers.on_client(info, True)
        self.presence.connected(info)
        log.info("token-less client %s connected from %s (original envelope only)", sid, remote)

    async def _on_disconnect(self, sid: str, *reason: Any) -> None:
        if self.sio.manager.is_connected(sid, "/"):
            # a live client emitting an event named "disconnect"; a real disconnect has
            # already marked the session as leaving
            log.warning("client %s sent a reserved event name (disconnect); ignored", sid)
            return
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

    async def _on_event(self, sid: str, data: Any = None) -> dict[str, Any]:
        info = self.clients.get(sid)
        if info is None or info.role != protocol.ROLE_PUPPET or info.bot is None:
            return protocol.error_ack("forbidden", "only puppet clients may send bot events")
        return await self.handlers.on_puppet_event(info, data)

    async def _on_exec(self, sid: str, data: Any = None) -> dict[str, Any]:
        log.warning("client %s tried to send exec; refused", sid)
        return protocol.error_ack(
            "forbidden", "exec runs from the server to puppets; clients can never run code"
        )

    async def _on_message(self, sid: str, message: Any = None) -> None:
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
