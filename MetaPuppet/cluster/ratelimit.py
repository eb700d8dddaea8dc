"""Outgoing rate limits shared by every server process: the token buckets in Redis.

The same buckets as :class:`~MetaPuppet.ratelimit.RateLimiter` (one per chat, one per bot,
the generic cell rate algorithm: a bucket is one number, the time it is full again), kept
in Redis and moved by one Lua script, atomically, on Redis's own clock. So two processes
sending for one bot share its limit instead of each having one. The common case (the chat
has room) books both buckets in one round trip.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ..ratelimit import Rate
from .state import SharedState

__all__ = ["RESERVE_SCRIPT", "RedisRateLimiter"]

log = logging.getLogger("MetaPuppet.ratelimit")

#: KEYS: bucket keys (1 or 2); ARGV: interval and tolerance (microseconds) of each.
#: Books the first bucket; books the second only when the first needs no wait. Returns the
#: waits in microseconds, -1 for a bucket not booked.
RESERVE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function reserve(key, interval, tolerance)
  local tat = tonumber(redis.call('GET', key) or '0')
  local at = math.max(now, tat - tolerance)
  local full = math.max(tat, at) + interval
  local ttl = math.ceil((full - now) / 1000) + 1000
  redis.call('SET', key, string.format('%.0f', full), 'PX', ttl)
  return at - now
end
local first = reserve(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
local second = -1
if KEYS[2] and first <= 0 then
  second = reserve(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
end
return {first, second}
"""


def _bucket(rate: Rate) -> tuple[int, int]:
    """(interval, tolerance) of a rate in microseconds."""
    interval = rate.interval * 1e6
    return round(interval), round((rate.burst - 1) * interval)


class RedisRateLimiter:
    """Per-chat and per-bot token buckets in Redis; ``await acquire(bot, chat)`` before each
    send (the interface of :class:`~MetaPuppet.ratelimit.RateLimiter`).

    Raises :class:`~MetaPuppet.errors.ClusterUnavailable` while Redis is lost: a limit that
    cannot be checked is not skipped.
    """

    def __init__(
        self,
        state: SharedState,
        per_chat: Rate | None,
        per_bot: Rate | None,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.state = state
        self.per_chat = per_chat
        self.per_bot = per_bot
        self._sleep = sleep

    def _key(self, *parts: str) -> str:
        return self.state.key("rate", *parts)

    async def _reserve(self, buckets: list[tuple[str, Rate]]) -> list[float]:
        keys = [key for key, _ in buckets]
        args: list[int] = []
        for _, rate in buckets:
            args.extend(_bucket(rate))
        waits = await self.state.batched(
            "checking the outgoing rate limit",
            lambda pipe: pipe.eval(RESERVE_SCRIPT, len(keys), *keys, *args),
        )
        return [float(w) / 1e6 for w in waits]

    async def acquire(self, bot: str, chat: str) -> float:
        """Wait until a send to ``chat`` on ``bot`` is within the limits; returns the wait.

        As in one process: the chat's slot is booked first, the bot's once that wait is
        over, so a chat held back by its own limit never holds back the bot's other chats.
        """
        buckets: list[tuple[str, Rate]] = []
        if self.per_chat is not None:
            buckets.append((self._key("chat", bot, chat), self.per_chat))
        bot_bucket = None if self.per_bot is None else (self._key("bot", bot), self.per_bot)
        if bot_bucket is not None:
            buckets.append(bot_bucket)
        if not buckets:
            return 0.0
        waits = await self._reserve(buckets)
        waited = 0.0
        if waits[0] > 0:
            await self._sleep(waits[0])
            waited += waits[0]
        if len(buckets) == 2:
            second = waits[1]
            if second < 0:  # the chat had to wait: the bot's slot is booked now
                assert bot_bucket is not None
                second = (await self._reserve([bot_bucket]))[0]
            if second > 0:
                await self._sleep(second)
                waited += second
        if waited >= 1.0:
            log.info("rate limit: a message to %s on bot %r waited %.1f s", chat, bot, waited)
        return waited
