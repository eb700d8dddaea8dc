"""Who is connected where: each process's clients in Redis, the others' bots as links here.

Every process keeps, in Redis,

* ``<prefix>:host:<id>``: its liveness (JSON: name, pid, start), renewed every
  ``refresh_s`` and expiring after ``host_ttl_s``: a process killed with SIGKILL is taken
  as gone once it expired;
* ``<prefix>:clients:<id>``: a hash of its clients (what ``list_clients()`` shows of them,
  puppets with their capabilities), expiring with the liveness key;
* ``<prefix>:hosts``: the set of process ids, and ``<prefix>:version``, bumped when a
  puppet connects or leaves anywhere.

and reads the others back: every bot connected elsewhere becomes a
:class:`~.links.RemotePuppetLink` in this process's registry. A ``attach`` / ``detach``
notice (through the Socket.IO manager) makes a change visible at once; the version and the
periodic reload catch anything a lost notice missed. A local link always wins over a
remote one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any

import orjson
import socketio

from ..errors import ClusterUnavailable, MetaPuppetError
from ..presence import OFFLINE, ClientInfo, Presence
from ..protocol import ROLE_PUPPET, Capabilities, parse_capabilities
from ..transport.registry import PuppetRegistry
from .links import RemotePuppetLink
from .manager import ClusterManager
from .state import SharedState

__all__ = ["RELOAD_EVERY_S", "Directory"]

log = logging.getLogger("MetaPuppet.cluster")

#: the other processes' clients are read again at least this often (presence details)
RELOAD_EVERY_S = 5.0


class Directory:
    """This process's clients in Redis, and the other processes' bots in the registry."""

    def __init__(
        self,
        state: SharedState,
        manager: ClusterManager,
        sio: socketio.AsyncServer,
        registry: PuppetRegistry,
        presence: Presence,
    ) -> None:
        self.state = state
        self.manager = manager
        self.sio = sio
        self.registry = registry
        self.presence = presence
        self.host_id: str = manager.host_id
        #: what other processes and people see as this process's name
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.started_at = time.time()
        #: host id -> its clients (key -> entry), as last read
        self.remote: dict[str, dict[str, dict[str, Any]]] = {}
        self._written: dict[str, bytes] = {}
        self._rewrite = True
        self._version: int | None = None
        self._reloaded_at = 0.0
        self._warned_twice: set[str] = set()
        ttl = state.settings.host_ttl_s
        self._ttl_ms = max(1, int(ttl * 1000))

    # ------------------------------------------------------------------ keys

    def _host_key(self, host: str) -> str:
        return self.state.key("host", host)

    def _clients_key(self, host: str) -> str:
        return self.state.key("clients", host)

    # ------------------------------------------------------------------ this process

    def entries(self) -> dict[str, dict[str, Any]]:
        """This process's clients as other processes see them."""
        found: dict[str, dict[str, Any]] = {}
        for entry in self.presence.local(only_online=False):
            entry["server"] = self.name
            if entry["role"] == ROLE_PUPPET and entry.get("bot"):
                link = self.registry.get(str(entry["bot"]))
                if link is not None and not isinstance(link, RemotePuppetLink):
                    entry["capabilities"] = link.capabilities.to_wire()
            found[_key(entry)] = entry
        return found

    async def announce(self, info: ClientInfo, connected: bool) -> None:
        """A puppet connected here or left: write it now and tell the others."""
        if info.role != ROLE_PUPPET or info.bot is None:
            return
        try:
            await self.write(bump=True)
        except ClusterUnavailable:
            return  # written (and announced by the version) once Redis is back
        entry = self.entries().get(f"puppet:{info.bot}")
        if connected and entry is not None and entry.get("sid") == info.sid:
            await self.manager.notify("attach", entry)
        elif not connected:
            await self.manager.notify("detach", {"bot": info.bot, "sid": info.sid})

    async def write(self, *, bump: bool = False) -> None:
        """Write what changed in this process's clients (all of them after a loss)."""
        entries = {key: orjson.dumps(entry) for key, entry in self.entries().items()}
        if self._rewrite:
            changed, gone = entries, [k for k in self._written if k not in entries]
        else:
            changed = {k: v for k, v in entries.items() if self._written.get(k) != v}
            gone = [k for k in self._written if k not in entries]
        if not (changed or gone or bump):
            return
        pipe = self.state.client.pipeline(transaction=False)
        key = self._clients_key(self.host_id)
        if changed:
            pipe.hset(key, mapping=dict(changed.items()))
        if gone:
            pipe.hdel(key, *gone)
        pipe.pexpire(key, self._ttl_ms)
        if bump or self._rewrite:
            pipe.incr(self.state.key("version"))
        await self.state.run("writing this process's clients", pipe.execute())
        self._written, self._rewrite = entries, False

    async def refresh(self) -> None:
        """One round: renew this process's liveness, write its changes, notice the others'."""
        known = [h for h in self.remote if h != self.host_id]
        pipe = self.state.client.pipeline(transaction=False)
        info = {"name": self.name, "pid": os.getpid(), "started": self.started_at}
        pipe.set(self._host_key(self.host_id), orjson.dumps(info), px=self._ttl_ms)
        pipe.sadd(self.state.key("hosts"), self.host_id)
        pipe.pexpire(self._clients_key(self.host_id), self._ttl_ms)
        pipe.get(self.state.key("version"))
        pipe.smembers(self.state.key("hosts"))
        if known:
            pipe.mget([self._host_key(h) for h in known])
        results = await self.state.run("renewing this process's liveness", pipe.execute())
        if not results[2] and self._written:
            self._rewrite = True  # our hash was gone (Redis restarted, or we were taken as gone)
        await self.write()
        version = int(results[3] or 0)
        hosts = {_text(h) for h in results[4]} - {self.host_id}
        dead = (
            [h for h, alive in zip(known, results[5], strict=True) if alive is None]
            if known
            else []
        )
        if dead:
            await self._forget_hosts(dead)
        stale = time.monotonic() - self._reloaded_at >= RELOAD_EVERY_S
        if version != self._version or stale or hosts - set(self.remote) or dead:
            await self.reload(hosts - set(dead), version)

    async def reload(self, hosts: set[str], version: int) -> None:
        """Read every other live process's clients and bring the registry in line."""
        started = time.monotonic()
        order = sorted(hosts)
        pipe = self.state.client.pipeline(transaction=False)
        for host in order:
            pipe.exists(self._host_key(host))
            pipe.hgetall(self._clients_key(host))
        results = await self.state.run("reading the other processes' clients", pipe.execute())
        remote: dict[str, dict[str, dict[str, Any]]] = {}
        gone = []
        for index, host in enumerate(order):
            alive, raw = results[2 * index], results[2 * index + 1]
            if not alive:
                gone.append(host)
                continue
            remote[host] = {_text(k): _entry(v, host) for k, v in raw.items()}
        self.remote = remote
        if gone:
            await self._forget_hosts(gone)
        self._version = version
        self._reloaded_at = time.monotonic()
        self.reconcile(started)

    async def _forget_hosts(self, hosts: list[str]) -> None:
        for host in hosts:
            self.remote.pop(host, None)
            for link in self.registry.links():
                if isinstance(link, RemotePuppetLink) and link.host == host:
                    log.warning(
                        "the server process holding bot %r stopped renewing its liveness: "
                        "taken as gone",
                        link.bot,
                    )
                    self.registry.detach(link, "its server process is gone")
        try:
            await self.state.run(
                "forgetting gone processes", self.state.client.srem(self.state.key("hosts"), *hosts)
            )
        except ClusterUnavailable:
            pass

    # ------------------------------------------------------------------ the others

    def reconcile(self, since: float | None = None) -> None:
        """Make the registry's remote links match what is known of the other processes.

        Links attached after ``since`` (by a notice newer than the data read) are kept.
        """
        routes: dict[str, tuple[str, dict[str, Any]]] = {}
        for host, entries in self.remote.items():
            for entry in entries.values():
                bot = entry.get("bot")
                if entry.get("role") != ROLE_PUPPET or not bot or entry.get("status") == OFFLINE:
                    continue
                best = routes.get(bot)
                if best is None or _when(entry) > _when(best[1]):
                    routes[bot] = (host, entry)
        for link in self.registry.links():
            if not isinstance(link, RemotePuppetLink):
                continue
            route = routes.get(link.bot)
            if route is not None and (route[0], route[1].get("sid")) == (link.host, link.sid):
                continue
            if since is not None and link.attached_at > since:
                continue
            self.registry.detach(link, "it left its server process")
        for bot, (host, entry) in routes.items():
            self._route(bot, host, entry)

    def _route(self, bot: str, host: str, entry: dict[str, Any]) -> None:
        current = self.registry.get(bot)
        sid = str(entry.get("sid"))
        capabilities = _capabilities(entry)
        if isinstance(current, RemotePuppetLink):
            if (current.host, current.sid) == (host, sid):
                if capabilities is not None:
                    self.registry.update_capabilities(bot, capabilities)
                return
        elif current is not None:
            if bot not in self._warned_twice:
                self._warned_twice.add(bot)
                log.warning(
                    "bot %r is connected here and to the server process %s too: two Node "
                    "clients with one client.bot; this process keeps its own",
                    bot,
                    entry.get("server"),
                )
            return
        self._warned_twice.discard(bot)
        link = RemotePuppetLink(
            self.sio,
            self.manager,
            self.state,
            host=host,
            sid=sid,
            bot=bot,
            capabilities=capabilities,
            remote=entry.get("remote"),
            connected_at=entry.get("connected_at"),
        )
        self.registry.attach(link)

    def on_attach(self, entry: Any, host: str) -> None:
        """Notice: a puppet connected to the process ``host``."""
        if not isinstance(entry, dict) or not entry.get("bot") or not entry.get("sid"):
            return
        entry = _entry(entry, host)
        self.remote.setdefault(host, {})[_key(entry)] = entry
        self._route(str(entry["bot"]), host, entry)

    def on_detach(self, data: Any, host: str) -> None:
        """Notice: a puppet left the process ``host``."""
        if not isinstance(data, dict):
            return
        bot, sid = data.get("bot"), data.get("sid")
        entry = self.remote.get(host, {}).get(f"puppet:{bot}")
        if entry is not None and entry.get("sid") == sid:
            entry["status"] = OFFLINE
        link = self.registry.get(str(bot))
        if isinstance(link, RemotePuppetLink) and link.sid == sid:
            self.registry.detach(link, "it disconnected from its server process")

    def merge(self, local: list[dict[str, Any]], only_online: bool) -> list[dict[str, Any]]:
        """``list_clients()``: this process's clients, then the others' (one entry per bot:
        a connected one beats one that left)."""
        merged: dict[str, dict[str, Any]] = {}
        for entry in local:
            entry.setdefault("server", self.name)
            merged[_key(entry)] = entry
        for entries in list(self.remote.values()):
            for key, entry in entries.items():
                if only_online and entry.get("status") == OFFLINE:
                    continue
                mine = merged.get(key)
                if mine is None or _better(entry, mine):
                    shown = dict(entry)
                    shown.pop("capabilities", None)
                    merged[key] = shown
        return list(merged.values())

    async def leave(self) -> None:
        """A graceful stop: take this process out at once (its bots reconnect elsewhere)."""
        pipe = self.state.client.pipeline(transaction=False)
        pipe.delete(self._host_key(self.host_id), self._clients_key(self.host_id))
        pipe.srem(self.state.key("hosts"), self.host_id)
        pipe.incr(self.state.key("version"))
        try:
            await asyncio.wait_for(self.state.run("leaving the cluster", pipe.execute()), 2.0)
        except (ClusterUnavailable, TimeoutError):
            log.warning("could not take this process out of the cluster; it expires by itself")


def _key(entry: dict[str, Any]) -> str:
    return (
        f"puppet:{entry.get('bot')}"
        if entry.get("role") == ROLE_PUPPET
        else f"web:{entry.get('sid')}"
    )


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _entry(raw: Any, host: str) -> dict[str, Any]:
    try:
        entry = orjson.loads(raw) if isinstance(raw, bytes | str) else dict(raw)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        entry = {}
    if not isinstance(entry, dict):
        entry = {}
    entry["host"] = host
    return entry


def _when(entry: dict[str, Any]) -> float:
    value = entry.get("connected_at")
    return float(value) if isinstance(value, int | float) else 0.0


def _better(candidate: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether a remote entry should be shown instead of ``current`` (same key)."""
    if (candidate.get("status") == OFFLINE) != (current.get("status") == OFFLINE):
        return current.get("status") == OFFLINE
    return _when(candidate) > _when(current)


def _capabilities(entry: dict[str, Any]) -> Capabilities | None:
    wire = entry.get("capabilities")
    if not isinstance(wire, dict):
        return None
    try:
        return parse_capabilities(wire)
    except MetaPuppetError:
        return None
