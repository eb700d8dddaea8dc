"""Who may register a bot name: no silent takeover of a connected bot.

Two Node clients configured with one bot name used to replace each other silently (two
real ones swapped nine times in 20 s, splitting the calls between two WeChat accounts).
Now a newcomer for a bot that is connected is refused with a reason, unless

* it asked to ``replace`` the connected one (``client.replace_existing``: a deliberate
  hand-over), or
* the connected one does not answer a probe (an ``echo``) within
  ``server.takeover_probe_s``: its socket is half-open, the peer is gone (a reconnect of
  the same client after a network failure the server has not noticed yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from .. import protocol
from ..errors import MetaPuppetError, PuppetDisconnected, SnippetTimeout
from .link import PuppetLink
from .registry import PuppetRegistry

__all__ = ["BotClaims"]

log = logging.getLogger("MetaPuppet.server")


class BotClaims:
    """Decides whether a newly authenticated puppet may have its bot name."""

    def __init__(self, registry: PuppetRegistry, probe_timeout: float) -> None:
        self.registry = registry
        self.probe_timeout = probe_timeout
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def claim(self, bot: str) -> AsyncIterator[None]:
        """One claim of a bot name at a time (a probe may take a moment); the lock goes
        away when nobody waits for it."""
        lock, users = self._locks.get(bot) or (asyncio.Lock(), 0)
        self._locks[bot] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[bot]
            if users <= 1:
                del self._locks[bot]
            else:
                self._locks[bot] = (lock, users - 1)

    async def refusal(self, bot: str, remote: str | None, *, replace: bool) -> str | None:
        """Why a newcomer from ``remote`` may not have ``bot`` now; None when it may."""
        old = self.registry.get(bot)
        if old is None:
            return None
        if replace:
            log.warning(
                "bot %r: the puppet from %s takes over from the one from %s (replace requested)",
                bot,
                remote,
                old.remote,
            )
            return None
        if not await self.answers(old):
            log.warning(
                "bot %r: the connected puppet did not answer within %.1f s; taken as gone and "
                "replaced by the new connection from %s",
                bot,
                self.probe_timeout,
                remote,
            )
            return None
        since = time.strftime("%H:%M:%S", time.localtime(old.connected_at or time.time()))
        where = f"from {old.remote} " if old.remote else ""
        log.warning(
            "refused a second puppet for bot %r from %s: the one connected %ssince %s still "
            "answers (set client.replace_existing on the newcomer to hand over)",
            bot,
            remote,
            where,
            since,
        )
        return (
            f"bot {bot!r} is already connected ({where}since {since}) and answers; give this "
            "client another client.bot, stop the other one, or set client.replace_existing "
            "to take over from it"
        )

    async def answers(self, link: PuppetLink) -> bool:
        """Whether ``link`` answers an echo within the probe timeout."""
        try:
            await link.call(protocol.EV_ECHO, "probe", self.probe_timeout)
        except (SnippetTimeout, PuppetDisconnected):
            return False
        except MetaPuppetError:
            return True  # it answered, if oddly
        return True
