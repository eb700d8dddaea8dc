"""Outgoing rate limits: a token bucket per chat and one per bot account.

Sends over the limit wait for their turn (in arrival order); nothing is dropped. The server
consults its limiter before every message it sends::

    server = SweetSocketServer(robot=bot)                      # default limits (on)
    server = SweetSocketServer(robot=bot, rate_limiter=None)   # off (tests, benchmarks)
    server = SweetSocketServer(
        robot=bot, rate_limiter=RateLimiter(per_chat=Rate(2, per=1.0, burst=5))
    )

The limits hold within one server process; several processes driving one account each
keep their own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_PER_BOT",
    "DEFAULT_PER_CHAT",
    "Rate",
    "RateLimiter",
    "TokenBucket",
]

log = logging.getLogger("MetaPuppet.ratelimit")


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` messages per ``per`` seconds on average, with bursts of up to ``burst``."""

    count: float
    per: float = 1.0
    burst: int = 1

    def __post_init__(self) -> None:
        if self.count <= 0 or self.per <= 0:
            raise ValueError(f"a rate needs a positive count and period, got {self}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, got {self.burst}")

    @property
    def interval(self) -> float:
        """Seconds between two sends once the burst is spent."""
        return self.per / self.count


#: One chat: 5 messages at once, then one a second. WeChat flags accounts that flood one
#: conversation faster than a person types.
DEFAULT_PER_CHAT = Rate(1, per=1.0, burst=5)
#: One account, all chats together: 20 at once, then 40 a minute. Personal accounts that
#: send much faster across many chats risk being limited or banned by WeChat.
DEFAULT_PER_BOT = Rate(40, per=60.0, burst=20)


class TokenBucket:
    """A token bucket kept as one number (the generic cell rate algorithm).

    ``tat`` is the time at which the bucket would be full again; a send may go at once while
    ``tat`` is at most ``(burst - 1) * interval`` ahead of now. Reserving moves ``tat``, so
    reservations are served in the order they were made and never overlap.
    """

    __slots__ = ("interval", "tolerance", "tat")

    def __init__(self, rate: Rate) -> None:
        self.interval = rate.interval
        self.tolerance = (rate.burst - 1) * rate.interval
        self.tat = -math.inf

    def earliest(self, now: float) -> float:
        """When one send could go, without reserving it."""
        return max(now, self.tat - self.tolerance)

    def reserve(self, now: float) -> float:
        """Reserve one send at ``now`` or later; returns the time it may go."""
        at = self.earliest(now)
        self.tat = max(self.tat, at) + self.interval
        return at

    def idle(self, now: float) -> bool:
        """True when the bucket is full again (it can be forgotten)."""
        return self.tat <= now


class RateLimiter:
    """Per-chat and per-bot token buckets; ``await acquire(bot, chat)`` before each send.

    ``clock`` and ``sleep`` are injectable, so tests can check the timing without waiting.
    Pass ``None`` for ``per_chat`` or ``per_bot`` to drop that limit.
    """

    def __init__(
        self,
        per_chat: Rate | None = DEFAULT_PER_CHAT,
        per_bot: Rate | None = DEFAULT_PER_BOT,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        max_idle_chats: int = 10_000,
    ) -> None:
        self.per_chat = per_chat
        self.per_bot = per_bot
        self._clock = clock
        self._sleep = sleep
        self._max_idle_chats = max_idle_chats
        self._chats: dict[tuple[str, str], TokenBucket] = {}
        self._bots: dict[str, TokenBucket] = {}

    async def acquire(self, bot: str, chat: str) -> float:
        """Wait until a send to ``chat`` on ``bot`` is within the limits; returns the wait.

        The chat's slot is booked first; the bot's slot is booked when that wait is over,
        so a chat held back by its own limit never holds back the bot's other chats.
        """
        waited = 0.0
        if self.per_chat is not None:
            waited += await self._wait(self._chat_bucket(bot, chat), bot, chat)
        if self.per_bot is not None:
            bucket = self._bots.get(bot)
            if bucket is None:
                bucket = self._bots[bot] = TokenBucket(self.per_bot)
            waited += await self._wait(bucket, bot, chat)
        if waited >= 1.0:
            log.info("rate limit: a message to %s on bot %r waited %.1f s", chat, bot, waited)
        return waited

    async def _wait(self, bucket: TokenBucket, bot: str, chat: str) -> float:
        now = self._clock()
        delay = bucket.reserve(now) - now
        if delay > 0:
            await self._sleep(delay)
            return delay
        return 0.0

    def _chat_bucket(self, bot: str, chat: str) -> TokenBucket:
        bucket = self._chats.get((bot, chat))
        if bucket is None:
            assert self.per_chat is not None
            if len(self._chats) >= self._max_idle_chats:
                self._forget_idle(self._clock())
            bucket = self._chats[(bot, chat)] = TokenBucket(self.per_chat)
        return bucket

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, bucket in self._chats.items() if bucket.idle(now)]:
            del self._chats[key]
