"""Who is connected, since when, and whether each puppet's Wechaty is still alive."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "KEEP_OFFLINE",
    "OFFLINE",
    "ONLINE",
    "STALLED",
    "ClientInfo",
    "Presence",
]

log = logging.getLogger("MetaPuppet.presence")

ONLINE, OFFLINE, STALLED = "online", "offline", "stalled"
KEEP_OFFLINE = 1000  # offline entries remembered, oldest forgotten first


@dataclass
class ClientInfo:
    """A client as the server sees it (also after it went offline)."""

    sid: str
    role: str
    bot: str | None
    remote: str | None
    connected_at: float = field(default_factory=time.time)
    status: str = ONLINE
    disconnected_at: float | None = None
    last_heartbeat: float | None = None
    #: the last sign of a working Wechaty: an event, a Wechaty heartbeat, a good ding probe
    last_alive: float = field(default_factory=time.time)
    logged_in_as: dict[str, Any] | None = None
    login_at: float | None = None
    wechaty: dict[str, Any] | None = None
    #: the client's view of its puppet: {state, message, retry_in_s, attempts} (heartbeat)
    puppet: dict[str, Any] | None = None
    permissions: frozenset[str] = frozenset()

    @property
    def key(self) -> str:
        return f"puppet:{self.bot}" if self.role == "puppet" else f"web:{self.sid}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "role": self.role,
            "bot": self.bot,
            "remote": self.remote,
            "status": self.status,
            "connected_at": self.connected_at,
            "disconnected_at": self.disconnected_at,
            "last_heartbeat": self.last_heartbeat,
            "last_alive": self.last_alive,
            "logged_in_as": self.logged_in_as,
            "login_at": self.login_at,
            "wechaty": self.wechaty,
            "puppet": self.puppet,
        }


class Presence:
    """Tracks clients; reports every status change to ``on_change(info, old, new)``."""

    def __init__(self, on_change: Callable[[ClientInfo, str, str], None]) -> None:
        self._on_change = on_change
        self._clients: OrderedDict[str, ClientInfo] = OrderedDict()
        #: cluster mode: ``extend(local_entries, only_online)`` returns them with the other
        #: server processes' clients (see MetaPuppet.cluster)
        self.extend: Callable[[list[dict[str, Any]], bool], list[dict[str, Any]]] | None = None

    def _set(self, info: ClientInfo, status: str) -> None:
        old = info.status
        if old != status:
            info.status = status
            self._on_change(info, old, status)

    def connected(self, info: ClientInfo) -> None:
        previous = self._clients.pop(info.key, None)
        if previous is not None and previous.sid != info.sid:
            info.logged_in_as = info.logged_in_as or previous.logged_in_as
        self._clients[info.key] = info
        self._on_change(info, OFFLINE, ONLINE)

    def disconnected(self, info: ClientInfo) -> None:
        current = self._clients.get(info.key)
        if current is not None and current.sid != info.sid:
            return  # a newer connection of the same bot took over
        info.disconnected_at = time.time()
        self._set(info, OFFLINE)
        offline = [k for k, c in self._clients.items() if c.status == OFFLINE]
        for key in offline[: max(0, len(offline) - KEEP_OFFLINE)]:
            del self._clients[key]

    def heartbeat(self, info: ClientInfo, payload: dict[str, Any]) -> None:
        now = time.time()
        info.last_heartbeat = now
        puppet = payload.get("puppet")
        if isinstance(puppet, dict):
            info.puppet = puppet
        wechaty = payload.get("wechaty")
        if isinstance(wechaty, dict):
            info.wechaty = wechaty
            if wechaty.get("alive") is True:
                self.alive(info, now)
        elif payload.get("source") != "client":
            self.alive(info, now)  # a heartbeat from Wechaty itself

    def alive(self, info: ClientInfo, now: float | None = None) -> None:
        info.last_alive = time.time() if now is None else now
        if info.status == STALLED:
            log.info("bot %r is alive again", info.bot)
            self._set(info, ONLINE)

    def login(self, info: ClientInfo, user: dict[str, Any] | None) -> None:
        info.logged_in_as = user
        info.login_at = time.time() if user is not None else None
        self.alive(info)

    def stalled(self, timeout: float, now: float | None = None) -> list[ClientInfo]:
        """Puppets online with no sign of a working Wechaty for ``timeout`` seconds; newly
        stalled ones are marked and returned."""
        now = time.time() if now is None else now
        found = []
        for info in self._clients.values():
            if info.role == "puppet" and info.status == ONLINE and now - info.last_alive > timeout:
                self._set(info, STALLED)
                found.append(info)
        return found

    def local(self, only_online: bool = True) -> list[dict[str, Any]]:
        """The clients of this process."""
        return [
            c.to_dict() for c in self._clients.values() if not only_online or c.status != OFFLINE
        ]

    def list(self, only_online: bool = True) -> list[dict[str, Any]]:
        """Every client (``extend`` adds other server processes' in cluster mode)."""
        found = self.local(only_online)
        return found if self.extend is None else self.extend(found, only_online)
