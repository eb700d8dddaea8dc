"""Outgoing rate limits: token buckets per chat and per bot, timed with an injected clock."""

from __future__ import annotations

import asyncio
import time

import pytest

from MetaPuppet import Rate, RateLimiter
from MetaPuppet.ratelimit import DEFAULT_PER_BOT, DEFAULT_PER_CHAT

from .chat_helpers import Chat


class FakeClock:
    """A clock that moves only when a sleeper (``advance=True``) or the test moves it."""

    def __init__(self, *, advance: bool = True) -> None:
        self.now = 0.0
        self.advance_on_sleep = advance
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        if self.advance_on_sleep:
            self.now += seconds
            return
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, wake))
        await wake

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for at, wake in list(self._sleepers):
            if at <= self.now + 1e-9:
                self._sleepers.remove((at, wake))
                wake.set_result(None)
        for _ in range(5):
            await asyncio.sleep(0)


def limiter(clock: FakeClock, per_chat: Rate | None, per_bot: Rate | None = None) -> RateLimiter:
    return RateLimiter(per_chat=per_chat, per_bot=per_bot, clock=clock, sleep=clock.sleep)


async def test_a_burst_goes_at_once_then_sends_are_spaced_by_the_rate():
    clock = FakeClock()
    limits = limiter(clock, Rate(1, per=1.0, burst=5))
    waits = [await limits.acquire("bot", "alice") for _ in range(8)]
    assert waits == [0, 0, 0, 0, 0, 1.0, 1.0, 1.0]
    assert clock.now == 3.0


async def test_concurrent_sends_wait_in_arrival_order_and_none_is_dropped():
    clock = FakeClock(advance=False)
    limits = limiter(clock, Rate(2, per=1.0, burst=2))  # one every 0.5 s after 2
    done: list[int] = []

    async def send(i: int) -> None:
        await limits.acquire("bot", "alice")
        done.append(i)

    tasks = [asyncio.create_task(send(i)) for i in range(6)]
    await clock.advance(0)
    assert done == [0, 1]
    assert clock.sleeps == [0.5, 1.0, 1.5, 2.0]
    for _ in range(4):
        await clock.advance(0.5)
    await asyncio.gather(*tasks)
    assert done == [0, 1, 2, 3, 4, 5]


async def test_chats_have_their_own_buckets():
    clock = FakeClock()
    limits = limiter(clock, Rate(1, per=1.0, burst=1))
    assert [await limits.acquire("bot", c) for c in ("a", "b", "c")] == [0, 0, 0]
    assert await limits.acquire("bot", "a") == 1.0
    assert await limits.acquire("other-bot", "a") == 0  # another account, another bucket


async def test_the_bot_bucket_spans_all_its_chats():
    clock = FakeClock(advance=False)
    limits = limiter(clock, None, Rate(2, per=1.0, burst=2))
    tasks = [asyncio.create_task(limits.acquire("bot", c)) for c in ("a", "b", "c", "d")]
    await clock.advance(0)
    assert clock.sleeps == [0.5, 1.0]
    await clock.advance(1.0)
    assert await asyncio.gather(*tasks) == [0, 0, 0.5, 1.0]


async def test_a_chat_held_back_by_its_own_limit_does_not_hold_back_other_chats():
    clock = FakeClock(advance=False)
    limits = limiter(clock, Rate(1, per=10.0, burst=1), Rate(1, per=1.0, burst=1))
    assert await limits.acquire("bot", "a") == 0
    second_to_a = asyncio.create_task(limits.acquire("bot", "a"))  # waits 10 s for chat a
    to_b = asyncio.create_task(limits.acquire("bot", "b"))  # waits 1 s for the bot slot
    await clock.advance(0)
    assert not to_b.done()
    await clock.advance(1.0)
    assert to_b.done() and to_b.result() == 1.0
    assert not second_to_a.done()
    await clock.advance(9.0)
    assert await second_to_a == 10.0


async def test_the_bucket_refills_while_idle():
    clock = FakeClock()
    limits = limiter(clock, Rate(1, per=1.0, burst=3))
    assert [await limits.acquire("bot", "a") for _ in range(4)] == [0, 0, 0, 1.0]
    clock.now += 60
    assert [await limits.acquire("bot", "a") for _ in range(4)] == [0, 0, 0, 1.0]


async def test_idle_chat_buckets_are_forgotten_beyond_the_cap():
    clock = FakeClock()
    limits = RateLimiter(
        per_chat=Rate(1, burst=1), per_bot=None, clock=clock, sleep=clock.sleep, max_idle_chats=10
    )
    for i in range(10):
        await limits.acquire("bot", f"chat{i}")
    clock.now += 5
    await limits.acquire("bot", "new")
    assert len(limits._chats) == 1


def test_rates_are_validated():
    with pytest.raises(ValueError, match="positive"):
        Rate(0)
    with pytest.raises(ValueError, match="burst"):
        Rate(1, burst=0)


def test_the_defaults_stay_below_a_person_typing_fast():
    assert DEFAULT_PER_CHAT.interval >= 1.0 and DEFAULT_PER_CHAT.burst <= 5
    assert DEFAULT_PER_BOT.count / DEFAULT_PER_BOT.per * 60 <= 40  # per minute


async def test_the_real_sleep_really_waits():
    limits = RateLimiter(per_chat=Rate(50, per=1.0, burst=1), per_bot=None)
    started = time.monotonic()
    for _ in range(4):
        await limits.acquire("bot", "a")
    assert time.monotonic() - started >= 0.055


async def test_server_sends_wait_for_the_limiter_and_all_arrive(server_factory):
    clock = FakeClock()
    server = await server_factory(rate_limiter=limiter(clock, Rate(1, per=2.0, burst=1)))
    chat = Chat(server)
    await asyncio.gather(*(server.say("alice", f"hello {i}") for i in range(3)))
    assert clock.sleeps == [2.0, 2.0] and clock.now == 4.0
    assert sorted(text for _, text in chat.said()) == ["hello 0", "hello 1", "hello 2"]


async def test_the_limiter_is_on_by_default_and_none_turns_it_off(server_factory):
    assert isinstance((await server_factory()).rate_limiter, RateLimiter)
    assert (await server_factory(rate_limiter=None)).rate_limiter is None
