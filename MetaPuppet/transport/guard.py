"""Bounds on connections, from the first byte until they have authenticated, and after.

Without these, the 64 MiB frame limit applied before any token check (six 60 MiB CONNECT
packets took a server from 54 MB to 819 MB), and an Engine.IO session that never
authenticated but answered pings stayed open for ever. :class:`ConnectionGuard` keeps, per
Engine.IO session:

* a **byte budget before authentication** (``server.max_unauthenticated_bytes``, 8 KiB):
  the handshake needs well under 2 KiB; past the budget the connection is cut. For a
  websocket the bytes are counted as they arrive, before aiohttp assembles a frame (see
  :class:`_BudgetParser`), so a huge frame is never buffered; for long-polling, a POST
  of an unauthenticated session may not be larger than what is left of the budget;
* a **deadline** (``server.auth_timeout_s``, 5 s): a session that has not authenticated
  by then is closed;
* **caps per address**: sessions still authenticating (``server.max_pending_per_address``,
  64; ``server.max_pending_connections``, 1024 in all) and open sessions
  (``server.max_connections_per_address``, 1024); past them a new session is refused;
* a **read gate** (back-pressure): :meth:`pause` stops reading a connection until
  :meth:`resume`;
* the ``Host`` check of every HTTP request (DNS rebinding) and the ``Origin`` check of
  browser Socket.IO connections.

Reaches into aiohttp's request protocol (``_payload_parser``, aiohttp 3.14.5) are marked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from aiohttp import web

from .limits import Limits

__all__ = ["ConnectionGuard", "host_name", "loopback_names"]

log = logging.getLogger("MetaPuppet.server")

ENGINEIO_PATH: Final = "/socket.io"
SWEEP_S: Final = 0.5
_WILDCARDS: Final = frozenset({"", "0.0.0.0", "::", "*"})


def loopback_names() -> set[str]:
    return {"localhost", "127.0.0.1", "::1"}


def host_name(header: str) -> str:
    """The name part of a ``Host`` header (no port, no IPv6 brackets), lower-cased."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    if header.count(":") == 1:
        return header.partition(":")[0]
    return header


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass
class _Session:
    remote: str
    opened: float
    authenticated: bool = False
    received: int = 0
    request: Any = None  # the aiohttp request of a websocket session


class _BudgetParser:
    """Stands between aiohttp's protocol and its websocket reader while a connection has
    not authenticated: counts the bytes as they arrive and cuts the connection past the
    budget, before the reader could assemble (and hold) a large frame."""

    def __init__(self, reader: Any, guard: ConnectionGuard, eio_sid: str) -> None:
        self.reader = reader
        self.guard = guard
        self.eio_sid = eio_sid
        self.counting = True
        self.cut = False

    def feed_data(self, data: bytes) -> Any:
        if self.counting:
            if self.guard.is_authenticated(self.eio_sid):
                self.counting = False
            elif not self.guard.charge(self.eio_sid, len(data)):
                self.counting, self.cut = False, True
                self.guard.over_budget(self.eio_sid)
        if self.cut:
            return True, b""  # end of stream: aiohttp closes the connection
        return self.reader.feed_data(data)

    def feed_eof(self) -> Any:
        return self.reader.feed_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.reader, name)


class ConnectionGuard:
    """Byte budgets, deadlines and caps for connections; also the read gates.

    ``alive(eio_sid)`` tells whether Engine.IO still knows a session; ``close_polling``
    ends a long-polling session (websockets are cut here, at their transport).
    """

    def __init__(
        self,
        limits: Limits,
        *,
        alive: Callable[[str], bool],
        close_polling: Callable[[str], Coroutine[Any, Any, None]],
    ) -> None:
        self.limits = limits
        self.alive = alive
        self.close_polling = close_polling
        self.sessions: dict[str, _Session] = {}
        #: Engine.IO sid -> its open websocket wrapper (the fan-out writes to it directly)
        self.websockets: dict[str, Any] = {}
        self._per_address: Counter[str] = Counter()
        self._pending_per_address: Counter[str] = Counter()
        self._pending_total = 0
        self._gates: dict[str, asyncio.Event] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[Any]] = set()
        self._hosts: set[str] | None = loopback_names()
        self._any_ip = False
        #: counts for tests and diagnostics
        self.stats = Counter[str]()

    # ------------------------------------------------------------------ life cycle

    def open(self, host: str) -> None:
        """The server listens on ``host``: which ``Host`` names it answers to."""
        configured = self.limits.allowed_hosts
        if configured is not None and "*" in configured:
            self._hosts = None
            return
        names = loopback_names() | {host_name(h) for h in configured or ()}
        if host.strip().lower() in _WILDCARDS:
            # every address of this machine: IP literals are safe (a rebinding attack
            # needs a name), and so are the machine's own names
            self._any_ip = True
            names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        else:
            names.add(host_name(host))
        self._hosts = names
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for gate in self._gates.values():
            gate.set()
        self._gates.clear()

    # ------------------------------------------------------------------ sessions

    @property
    def pending(self) -> int:
        """Sessions still authenticating."""
        return self._pending_total

    def admit(self, eio_sid: str, remote: str | None) -> str | None:
        """Take a new Engine.IO session; the reason to refuse it, or None."""
        address = remote or "?"
        limits = self.limits
        reason = None
        if self._per_address[address] >= limits.max_connections_per_address:
            reason = (
                f"{self._per_address[address]} connections from this address already "
                f"(server.max_connections_per_address)"
            )
        elif self._pending_per_address[address] >= limits.max_pending_per_address:
            reason = (
                f"{self._pending_per_address[address]} connections from this address are "
                "still authenticating (server.max_pending_per_address)"
            )
        elif self.pending >= limits.max_pending:
            reason = (
                f"{self.pending} connections are still authenticating "
                "(server.max_pending_connections)"
            )
        if reason is not None:
            self.stats["refused"] += 1
            log.warning("refused a connection from %s: %s", address, reason)
            return reason
        self.sessions[eio_sid] = _Session(address, time.monotonic())
        self._per_address[address] += 1
        self._pending_per_address[address] += 1
        self._pending_total += 1
        return None

    def authenticated(self, eio_sid: str) -> None:
        """The session proved itself: no budget, no deadline from now on."""
        session = self.sessions.get(eio_sid)
        if session is not None and not session.authenticated:
            session.authenticated = True
            self._release_pending(session.remote)

    def is_authenticated(self, eio_sid: str) -> bool:
        session = self.sessions.get(eio_sid)
        return session is not None and session.authenticated

    def forget(self, eio_sid: str) -> None:
        """Engine.IO closed the session."""
        session = self.sessions.pop(eio_sid, None)
        gate = self._gates.pop(eio_sid, None)
        if gate is not None:
            gate.set()
        if session is None:
            return
        if not session.authenticated:
            self._release_pending(session.remote)
        self._per_address[session.remote] -= 1
        if self._per_address[session.remote] <= 0:
            del self._per_address[session.remote]

    def _release_pending(self, address: str) -> None:
        self._pending_total -= 1
        self._pending_per_address[address] -= 1
        if self._pending_per_address[address] <= 0:
            del self._pending_per_address[address]

    def charge(self, eio_sid: str, size: int) -> bool:
        """Count ``size`` bytes received by a session; False when an unauthenticated one
        (or one this guard does not know) goes over its budget."""
        session = self.sessions.get(eio_sid)
        if session is None:
            return size <= self.limits.max_unauthenticated_bytes
        if session.authenticated:
            return True
        session.received += size
        return session.received <= self.limits.max_unauthenticated_bytes

    def over_budget(self, eio_sid: str) -> None:
        session = self.sessions.get(eio_sid)
        self.stats["over_budget"] += 1
        log.warning(
            "closed a connection from %s: it sent more than %d bytes before authenticating "
            "(server.max_unauthenticated_bytes)",
            session.remote if session else "?",
            self.limits.max_unauthenticated_bytes,
        )
        self.cut(eio_sid)

    def cut(self, eio_sid: str) -> None:
        """End a session at once: its websocket transport is aborted (what was buffered
        for it is dropped), a long-polling session is closed by Engine.IO."""
        session = self.sessions.get(eio_sid)
        request = session.request if session is not None else None
        transport = getattr(request, "transport", None)
        if transport is not None:
            transport.abort()
            return
        task = asyncio.get_running_loop().create_task(self.close_polling(eio_sid))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                self.sweep()
            except Exception:  # pragma: no cover - the sweeper must not die
                log.exception("the connection sweep failed")

    def sweep(self) -> None:
        """Close sessions past the authentication deadline; forget those Engine.IO ended
        without telling (so the per-address counts never leak)."""
        now = time.monotonic()
        for eio_sid, session in list(self.sessions.items()):
            if not self.alive(eio_sid):
                self.forget(eio_sid)
            elif not session.authenticated and now - session.opened > self.limits.auth_timeout:
                self.stats["timed_out"] += 1
                log.warning(
                    "closed a connection from %s: not authenticated within %.1f s "
                    "(server.auth_timeout_s)",
                    session.remote,
                    self.limits.auth_timeout,
                )
                self.cut(eio_sid)
                # its slots are free now, not when Engine.IO gets round to the disconnect:
                # a client that reconnects at once must not be refused for a dead session
                self.forget(eio_sid)

    # ------------------------------------------------------------------ websocket driver hooks

    def opened(self, eio_sid: str, wrapper: Any, request: Any) -> None:
        self.websockets[eio_sid] = wrapper
        session = self.sessions.get(eio_sid)
        if session is None:
            return
        session.request = request
        if session.authenticated:
            return
        protocol = getattr(request, "protocol", None)
        reader = getattr(protocol, "_payload_parser", None)  # aiohttp 3.14.5 internal
        if reader is not None and not isinstance(reader, _BudgetParser):
            protocol._payload_parser = _BudgetParser(reader, self, eio_sid)  # type: ignore[union-attr]  # noqa: SLF001

    def closed(self, eio_sid: str, wrapper: Any) -> None:
        if self.websockets.get(eio_sid) is wrapper:
            del self.websockets[eio_sid]
        session = self.sessions.get(eio_sid)
        if session is not None:
            session.request = None

    async def readable(self, eio_sid: str) -> None:
        gate = self._gates.get(eio_sid)
        if gate is not None:
            await gate.wait()

    def pause(self, eio_sid: str) -> None:
        """Read nothing more from ``eio_sid`` until :meth:`resume`."""
        if eio_sid in self.sessions and eio_sid not in self._gates:
            self._gates[eio_sid] = asyncio.Event()
            self.stats["paused"] += 1

    def resume(self, eio_sid: str) -> None:
        gate = self._gates.pop(eio_sid, None)
        if gate is not None:
            gate.set()

    def paused(self, eio_sid: str) -> bool:
        return eio_sid in self._gates

    # ------------------------------------------------------------------ HTTP checks

    def host_allowed(self, header: str | None) -> bool:
        """Whether a request's ``Host`` names this server (DNS rebinding defence)."""
        if self._hosts is None or not header:
            return True
        name = host_name(header)
        return name in self._hosts or (self._any_ip and _is_ip(name))

    def origin_allowed(self, origin: str | None, environ: dict[str, Any]) -> bool:
        """Engine.IO's ``cors_allowed_origins`` check: same origin, or one configured."""
        if not origin:
            return True
        configured = self.limits.allowed_origins or ()
        if "*" in configured or origin in configured:
            return True
        host = environ.get("HTTP_HOST", "")
        netloc = urlsplit(origin).netloc.lower()
        if netloc and netloc == str(host).strip().lower() and self.host_allowed(host):
            return True
        log.warning(
            "refused a browser connection from origin %.100s: not this server's own origin "
            "and not in web.allowed_origins",
            origin,
        )
        return False

    def middleware(self) -> Any:
        """aiohttp middleware: the ``Host`` check of every request; for Engine.IO's
        long-polling, the byte budget of unauthenticated sessions and the read gate."""

        @web.middleware
        async def guard_middleware(
            request: web.Request,
            handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        ) -> web.StreamResponse:
            if not self.host_allowed(request.headers.get("Host")):
                self.stats["bad_host"] += 1
                log.warning(
                    "refused a request from %s for host %.100r: not a name of this server "
                    "(server.allowed_hosts)",
                    request.remote,
                    request.headers.get("Host"),
                )
                return _envelope(
                    421,
                    "host_not_allowed",
                    "this server does not answer to that host name; add it to "
                    "server.allowed_hosts if it is yours",
                )
            if request.method == "POST" and request.path.startswith(ENGINEIO_PATH):
                eio_sid = request.query.get("sid", "")
                if not self.is_authenticated(eio_sid):
                    length = request.content_length
                    if length is None or not self.charge(eio_sid, length):
                        self.stats["over_budget"] += 1
                        log.warning(
                            "refused a long-polling POST from %s before authentication: "
                            "more than server.max_unauthenticated_bytes",
                            request.remote,
                        )
                        if eio_sid in self.sessions:
                            self.cut(eio_sid)
                        return _envelope(
                            413, "payload_too_large", "authenticate before sending more"
                        )
                else:
                    await self.readable(eio_sid)
            return await handler(request)

        return guard_middleware


def _envelope(status: int, error: str, message: str) -> web.Response:
    body = {"code": status, "error": error, "message": message}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")
