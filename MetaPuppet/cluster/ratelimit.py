"""Outgoing rate limits in a cluster: applied, in memory, where the bot is connected.

Every send for a bot goes out through the process that holds its connection, so that
process is the one place that sees all of them, and its buckets (the same per-chat and
per-bot token buckets as :class:`~MetaPuppet.ratelimit.RateLimiter`) can be in memory: a
send on the bot's own process costs no Redis round trip. A send from another process (a
``say`` from a web client or a job there) books its slot with the bot's process first: a
``book`` notice on the cluster's channel, answered with the waits by a ``booked`` notice.
So two processes sending for one bot still share one bot's limit.

What is lost is the buckets' state when the bot moves to another process (a fail-over or a
reconnect through the balancer). A process that takes a bot over does not know how much of
the burst the previous one used, so the bot's buckets there start nearly empty, with
:data:`START_TOKENS` (1) token each: the combined sends of both processes exceed one
bucket's limit by at most that one message per bucket and move, and the first reply after
a move is not held back. The burst refills at the bucket's rate.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

from ..errors import ClusterUnavailable, PuppetNotConnected
from ..ratelimit import Rate, TokenBucket

__all__ = ["BOOK_TIMEOUT_S", "START_TOKENS", "ClusterRateLimiter"]

log = logging.getLogger("MetaPuppet.ratelimit")

#: tokens in a bucket of a bot that just connected to this process (see the docstring)
START_TOKENS: Final = 1
#: how long a send on another process waits for the bot's process to book it
BOOK_TIMEOUT_S: Final = 5.0

Notify = Callable[[str, Any], Awaitable[None]]


class _Buckets:
    """The buckets of the bots connected here (the chats' ones bounded, idle ones dropped)."""

    def __init__(
        self,
        per_chat: Rate | None,
        per_bot: Rate | None,
        clock: Callable[[], float],
        max_idle_chats: int,
    ) -> None:
        self.per_chat = per_chat
        self.per_bot = per_bot
        self.clock = clock
        self.max_idle_chats = max_idle_chats
        self.chats: dict[tuple[str, str], TokenBucket] = {}
        self.bots: dict[str, TokenBucket] = {}
        #: when each bot last connected here (its buckets start nearly empty from then)
        self.arrived: dict[str, float] = {}

    def _new(self, rate: Rate, bot: str) -> TokenBucket:
        bucket = TokenBucket(rate)
        arrived = self.arrived.get(bot)
        if arrived is not None:
            # START_TOKENS left at ``arrived``: full again after the rest of the burst
            bucket.tat = arrived + bucket.tolerance + bucket.interval * (1 - START_TOKENS)
        return bucket

    def moved_here(self, bot: str) -> None:
        now = self.clock()
        self.arrived[bot] = now
        self.bots.pop(bot, None)
        for key in [k for k in self.chats if k[0] == bot]:
            del self.chats[key]
        horizon = max(
            ((r.burst + 1) * r.interval for r in (self.per_chat, self.per_bot) if r is not None),
            default=0.0,
        )
        for name in [b for b, at in self.arrived.items() if at + horizon < now]:
            del self.arrived[name]  # its buckets would be full by now anyway

    def book(self, bot: str, chat: str, with_chat: bool) -> tuple[float, float]:
        """Book a send: (the chat's wait, the bot's wait or -1 when the chat must wait first
        and the bot's slot is booked after that wait, as in one process)."""
        now = self.clock()
        chat_wait = 0.0
        if with_chat and self.per_chat is not None:
            bucket = self.chats.get((bot, chat))
            if bucket is None:
                if len(self.chats) >= self.max_idle_chats:
                    for key in [k for k, b in self.chats.items() if b.idle(now)]:
                        del self.chats[key]
                bucket = self.chats[(bot, chat)] = self._new(self.per_chat, bot)
            chat_wait = bucket.reserve(now) - now
        if self.per_bot is None:
            return chat_wait, 0.0
        if chat_wait > 0:
            return chat_wait, -1.0
        bot_bucket = self.bots.get(bot)
        if bot_bucket is None:
            bot_bucket = self.bots[bot] = self._new(self.per_bot, bot)
        return chat_wait, bot_bucket.reserve(now) - now


class ClusterRateLimiter:
    """Per-chat and per-bot token buckets kept by the process holding the bot; ``await
    acquire(bot, chat)`` before each send (the interface of
    :class:`~MetaPuppet.ratelimit.RateLimiter`). See the module docstring.
    """

    def __init__(
        self,
        per_chat: Rate | None,
        per_bot: Rate | None,
        *,
        where: Callable[[str], str | None],
        notify: Notify,
        host_id: str,
        check: Callable[[str], None] = lambda what: None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        timeout: float = BOOK_TIMEOUT_S,
        max_idle_chats: int = 10_000,
    ) -> None:
        self.per_chat = per_chat
        self.per_bot = per_bot
        #: the host id of the process holding a bot (None: connected nowhere known)
        self.where = where
        self.host_id = host_id
        self.timeout = timeout
        self._notify = notify
        self._check = check
        self._sleep = sleep
        self._buckets = _Buckets(per_chat, per_bot, clock, max_idle_chats)
        self._asked: dict[str, asyncio.Future[tuple[float, float]]] = {}
        #: sends booked for another process, and booked with another process (tests, logs)
        self.booked_for_others = 0
        self.booked_elsewhere = 0

    def moved_here(self, bot: str) -> None:
        """``bot`` connected to this process: its buckets start nearly empty."""
        self._buckets.moved_here(bot)

    async def acquire(self, bot: str, chat: str) -> float:
        """Wait until a send to ``chat`` on ``bot`` is within the limits; returns the wait.

        As in one process: the chat's slot is booked first, the bot's once that wait is
        over, so a chat held back by its own limit never holds back the bot's other chats.
        """
        if self.per_chat is None and self.per_bot is None:
            return 0.0
        host = self.where(bot)
        if host == self.host_id:
            host = None  # connected here: booked in memory
        chat_wait, bot_wait = await self._book(host, bot, chat, True)
        waited = 0.0
        if chat_wait > 0:
            await self._sleep(chat_wait)
            waited += chat_wait
        if bot_wait < 0:  # the chat had to wait: the bot's slot is booked now
            bot_wait = (await self._book(host, bot, chat, False))[1]
        if bot_wait > 0:
            await self._sleep(bot_wait)
            waited += bot_wait
        if waited >= 1.0:
            log.info("rate limit: a message to %s on bot %r waited %.1f s", chat, bot, waited)
        return waited

    async def _book(
        self, host: str | None, bot: str, chat: str, with_chat: bool
    ) -> tuple[float, float]:
        if host is None:
            return self._buckets.book(bot, chat, with_chat)
        self._check(f"booking a send for bot {bot!r} with the server process holding it")
        req = uuid.uuid4().hex
        future: asyncio.Future[tuple[float, float]] = asyncio.get_running_loop().create_future()
        self._asked[req] = future
        try:
            await self._notify(
                "book",
                {"req": req, "to": host, "bot": bot, "chat": chat, "with_chat": with_chat},
            )
            waits = await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            raise ClusterUnavailable(
                f"the server process holding bot {bot!r} did not book a send within "
                f"{self.timeout:g} s (the rate limit is kept there)"
            ) from None
        finally:
            self._asked.pop(req, None)
        self.booked_elsewhere += 1
        return waits

    async def on_book(self, data: Any, host: str) -> None:
        """Another process asks to book a send for a bot connected here (a ``book``
        notice); answered with a ``booked`` notice to that process."""
        if not isinstance(data, dict) or data.get("to") != self.host_id:
            return
        req, bot, chat = data.get("req"), data.get("bot"), data.get("chat")
        if not (isinstance(req, str) and isinstance(bot, str) and isinstance(chat, str)):
            return
        answer: dict[str, Any] = {"req": req, "to": host}
        if self.where(bot) != self.host_id:
            answer["error"] = f"bot {bot!r} is not connected to the server process asked"
        else:
            answer["waits"] = list(self._buckets.book(bot, chat, bool(data.get("with_chat"))))
            self.booked_for_others += 1
        await self._notify("booked", answer)

    def on_booked(self, data: Any) -> None:
        """The answer to one of this process's ``book`` notices."""
        if not isinstance(data, dict) or data.get("to") != self.host_id:
            return
        future = self._asked.get(str(data.get("req")))
        if future is None or future.done():
            return
        waits = data.get("waits")
        if isinstance(waits, list) and len(waits) == 2:
            future.set_result((float(waits[0]), float(waits[1])))
        else:
            future.set_exception(PuppetNotConnected(str(data.get("error") or "not booked")))
