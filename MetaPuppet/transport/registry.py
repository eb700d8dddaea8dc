"""The registry of connected puppets: attach, detach, pick one, wait for one."""

from __future__ import annotations

import asyncio
import logging
import time

from ..errors import AmbiguousBot, PuppetNotConnected
from ..protocol import Capabilities
from .link import PuppetLink

__all__ = ["PuppetRegistry"]

log = logging.getLogger("MetaPuppet.transport")


class PuppetRegistry:
    """Connected puppets by bot name.

    ``connect_grace`` is how long a call waits for a puppet that was connected before (it
    may be reconnecting); a bot never seen fails at once.
    """

    def __init__(self, connect_grace: float = 10.0) -> None:
        self.connect_grace = connect_grace
        self._links: dict[str, PuppetLink] = {}
        self._known: set[str] = set()
        self._waiters: list[asyncio.Future[None]] = []
        #: the last capabilities each bot reported (kept while it reconnects)
        self._capabilities: dict[str, Capabilities] = {}

    @property
    def bots(self) -> list[str]:
        """Names of the bots whose puppets are connected now."""
        return sorted(self._links)

    def get(self, bot: str) -> PuppetLink | None:
        return self._links.get(bot)

    def links(self) -> list[PuppetLink]:
        return list(self._links.values())

    def attach(self, link: PuppetLink) -> PuppetLink | None:
        """Register ``link``; returns the older link of the same bot it replaced, if any."""
        old = self._links.get(link.bot)
        if old is link:
            old = None
        if old is not None:
            log.warning("bot %r connected again; the older connection is replaced", link.bot)
            old.close("replaced by a newer connection")
        self._links[link.bot] = link
        self._known.add(link.bot)
        self._capabilities[link.bot] = link.capabilities
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        return old

    def capabilities(self, bot: str) -> Capabilities:
        """What ``bot``'s channel can do (the last report, also while it reconnects)."""
        return self._capabilities.get(bot) or Capabilities()

    def update_capabilities(self, bot: str, capabilities: Capabilities) -> None:
        """A puppet reported its capabilities again (at login)."""
        self._capabilities[bot] = capabilities
        link = self._links.get(bot)
        if link is not None:
            link.capabilities = capabilities

    def detach(self, link: PuppetLink, reason: str) -> None:
        if self._links.get(link.bot) is link:
            del self._links[link.bot]
        link.close(reason)

    def close_all(self, reason: str) -> None:
        for link in list(self._links.values()):
            link.close(reason)
        self._links.clear()

    def only_bot(self) -> str:
        """The one connected bot's name; raises when none or several are connected."""
        if len(self._links) == 1:
            return next(iter(self._links))
        if not self._links:
            raise PuppetNotConnected("no puppet is connected: start the Node client")
        raise AmbiguousBot(f"several bots are connected ({', '.join(self.bots)}): pass bot=...")

    def grace_for(self, bot: str | None) -> float:
        """Wait for a puppet only if it was connected before; a bot never seen fails at once."""
        known = bot in self._known if bot is not None else bool(self._known)
        return self.connect_grace if known else 0.0

    async def pick(self, bot: str | None, grace: float | None = None) -> PuppetLink:
        """The link of ``bot`` (or of the only bot), waiting up to ``grace`` seconds
        (default: :meth:`grace_for`) for it to connect."""
        deadline = time.monotonic() + (self.grace_for(bot) if grace is None else grace)
        while True:
            if bot is not None:
                link = self._links.get(bot)
                if link is not None:
                    return link
            elif len(self._links) == 1:
                return next(iter(self._links.values()))
            elif len(self._links) > 1:
                raise AmbiguousBot(
                    f"several bots are connected ({', '.join(self.bots)}): pass bot=..."
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                which = f"for bot {bot!r} " if bot else ""
                connected = f" (connected: {', '.join(self.bots)})" if self._links else ""
                raise PuppetNotConnected(
                    f"no puppet {which}is connected{connected}: start the Node client "
                    "with `metapuppet client`"
                )
            await self._change(remaining)

    async def wait_for(self, bot: str | None, timeout: float) -> str:
        """Wait until a puppet (for ``bot``, or any) is connected; return its bot name."""
        deadline = time.monotonic() + timeout
        while True:
            if bot is not None and bot in self._links:
                return bot
            if bot is None and self._links:
                return self.bots[0]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                which = f"for bot {bot!r} " if bot else ""
                raise PuppetNotConnected(
                    f"no puppet {which}connected within {timeout:.1f} s: is the Node client "
                    "running (`metapuppet client`) with the same token and port?"
                )
            await self._change(remaining)

    async def _change(self, remaining: float) -> None:
        """Sleep until a puppet connects, or ``remaining`` seconds pass."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, remaining)
        except TimeoutError:
            pass
