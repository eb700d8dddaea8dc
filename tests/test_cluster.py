"""Cluster mode's shared state against a real redis-server: settings, dedupe, rate limits,
send budgets, arrival order, and Redis missing at start.

Two ``SharedState`` clients stand for two server processes (each has its own connection
pool, as a process would); ``test_budgets_hold_across_real_processes`` also runs a second
real Python process. The end-to-end tests with real Node clients and server processes are
in ``test_e2e_cluster.py``.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from MetaPuppet import ClusterUnavailable, Config, SendWindowClosed, SweetSocketServer
from MetaPuppet.cluster import ClusterSettings, redact_url
from MetaPuppet.cluster.budget import RedisSendBudgets
from MetaPuppet.cluster.intake import ClusterIntake
from MetaPuppet.cluster.ratelimit import ClusterRateLimiter
from MetaPuppet.cluster.seen import RedisSeenIds
from MetaPuppet.cluster.state import SharedState
from MetaPuppet.errors import ConfigError
from MetaPuppet.presence import ClientInfo
from MetaPuppet.protocol import SendBudget
from MetaPuppet.ratelimit import Rate

from .chat_helpers import free_redis, redis_url  # noqa: F401 - the fixture
from .conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


def settings(url: str, prefix: str, **extra: float) -> ClusterSettings:
    return ClusterSettings(redis_url=url, key_prefix=prefix, channel=prefix, **extra)  # type: ignore[arg-type]


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def two(redis_url, prefix):  # noqa: F811
    """Two processes' clients of one Redis."""
    states = [SharedState(settings(redis_url, prefix)) for _ in range(2)]
    for state in states:
        state.back()
    yield states
    for state in states:
        await state.close()


# --------------------------------------------------------------------------- settings


def test_no_url_no_cluster_and_bad_settings_are_named():
    assert ClusterSettings.from_config(Config().raw) is None
    assert ClusterSettings.from_config({"cluster": {"redis_url": None}}) is None
    made = ClusterSettings.from_config({"cluster": {"redis_url": "redis://h:1/0"}})
    assert made is not None and made.redis_url == "redis://h:1/0"
    assert ClusterSettings.from_config({}, "unix:///tmp/r.sock").redis_url == "unix:///tmp/r.sock"
    with pytest.raises(ConfigError, match="not a Redis URL"):
        ClusterSettings.from_config({"cluster": {"redis_url": "http://:hunter2@h/0"}})
    with pytest.raises(ConfigError, match=r"cluster\.redis_urll is not a setting"):
        ClusterSettings.from_config({"cluster": {"redis_urll": "redis://h/0"}})
    with pytest.raises(ConfigError, match="seen_ttl_s"):
        ClusterSettings.from_config({"cluster": {"redis_url": "redis://h/0", "seen_ttl_s": "x"}})


def test_config_and_environment_name_the_redis_url(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"cluster": {"redis_url": "redis://file:6379/0"}}))
    from MetaPuppet.config import load_config

    assert load_config(path, env={}).redis_url == "redis://file:6379/0"
    assert load_config(path, env={"METAPUPPET_REDIS_URL": "redis://env/1"}).redis_url == (
        "redis://env/1"
    )
    assert load_config(None, env={}).redis_url is None


def test_passwords_never_show():
    for url, shown in [
        ("redis://:hunter2@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://user:hunter2@h/0", "redis://user:***@h/0"),
        ("redis://hunter2@h/0", "redis://***@h/0"),
        ("rediss://h:6380/0?password=hunter2&ssl_cert_reqs=none", None),
        ("redis+sentinel://u:hunter2@s1:26379,s2:26379/0/main", None),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ]:
        redacted = redact_url(url)
        assert "hunter2" not in redacted
        if shown is not None:
            assert redacted == shown


# --------------------------------------------------------------------------- dedupe


async def test_an_event_id_is_handled_once_across_processes(two):
    a_state, b_state = two
    a, b = (
        RedisSeenIds(a_state, "host-a", poll_s=0.01),
        RedisSeenIds(b_state, "host-b", poll_s=0.01),
    )
    for state, host in ((a_state, "host-a"), (b_state, "host-b")):  # both alive
        await state.client.set(state.key("host", host), "{}", px=60_000)
    assert await a.claim("e1") is True
    assert await a.claim("e1") is True  # this very process again: its pipeline dedupes
    waiting = asyncio.ensure_future(b.claim("e1"))  # A still handles it: B waits
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await a.done("e1")
    assert await asyncio.wait_for(waiting, 2) is False  # handled: B runs nothing
    assert await b.claim("e1") is False
    ttl = await a_state.client.pttl(a_state.key("seen", "e1"))
    assert 23 * 3600 * 1000 < ttl <= 24 * 3600 * 1000  # the outbox replay window

    assert await a.claim("e2") is True
    await a.release("e2")  # not handled after all (a stop cut it short)
    assert await b.claim("e2") is True


async def test_a_dead_process_s_claims_are_taken_over(two):
    a_state, b_state = two
    a, b = RedisSeenIds(a_state, "host-a"), RedisSeenIds(b_state, "host-b")
    await b_state.client.set(b_state.key("host", "host-b"), "{}", px=60_000)
    assert await a.claim("e3") is True  # host-a has no liveness key: as if SIGKILLed
    started = time.monotonic()
    assert await b.claim("e3") is True
    assert time.monotonic() - started < 1
    assert b.taken_over == 1


async def test_events_of_a_connection_keep_their_order_with_concurrent_claims():
    """Claims finish in any order; the pipeline still gets the events in arrival order."""

    class SlowSeen:
        async def claim(self, event_id: str) -> bool:
            await asyncio.sleep(random.uniform(0, 0.02))
            return event_id != "dup"

        async def done(self, event_id: str) -> None:
            done.append(event_id)

        async def release(self, event_id: str) -> None:
            pass

    class Inner:
        async def on_puppet_event(self, info, data):
            order.append(data["id"])
            await asyncio.sleep(0.01)
            return {"ok": True}

        async def on_message(self, sid, message):
            pass

        def on_client(self, info, connected):
            pass

    order: list[str] = []
    done: list[str] = []
    intake = ClusterIntake(Inner(), SlowSeen())  # type: ignore[arg-type]
    info = ClientInfo(sid="s1", role="puppet", bot="b", remote=None)
    ids = [f"e{i}" for i in range(40)]
    ids.insert(17, "dup")
    acks = await asyncio.gather(
        *(intake.on_puppet_event(info, {"id": i, "name": "message"}) for i in ids)
    )
    assert all(ack == {"ok": True} for ack in acks)
    assert order == [i for i in ids if i != "dup"]  # in order; the duplicate never ran
    assert sorted(done) == sorted(order)


async def test_redis_lost_defers_every_later_event_of_that_connection(tmp_path_factory, prefix):
    private = free_redis(tmp_path_factory)  # a Redis of its own, to kill
    state = SharedState(settings(next(private), prefix))
    state.back()
    seen = RedisSeenIds(state, "host-a")

    class Inner:
        async def on_puppet_event(self, info, data):
            handled.append(data["id"])
            return {"ok": True}

        async def on_message(self, sid, message):
            pass

        def on_client(self, info, connected):
            pass

    handled: list[str] = []
    intake = ClusterIntake(Inner(), seen)  # type: ignore[arg-type]
    info = ClientInfo(sid="s1", role="puppet", bot="b", remote=None)
    assert await intake.on_puppet_event(info, {"id": "e1", "name": "message"}) == {"ok": True}
    private.close()  # redis-server stops
    ack = await intake.on_puppet_event(info, {"id": "e2", "name": "message"})
    assert ack["ok"] is False and ack["error"]["kind"] == "unavailable"
    assert "cannot be reached" in ack["error"]["message"]
    assert "s1" in intake.deferred and state.up is False
    ack = await intake.on_puppet_event(info, {"id": "e3", "name": "message"})
    assert ack["error"]["kind"] == "unavailable"  # later events wait too: order holds
    assert handled == ["e1"]
    intake.on_client(info, False)  # the connection went away: it starts afresh
    assert "s1" not in intake.deferred
    await state.close()


class Recorder:
    """Transport handlers that record what ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    async def on_puppet_event(self, info, data):
        self.ran.append(data["id"])
        return {"ok": True}

    async def on_message(self, sid, message):
        pass

    def on_client(self, info, connected):
        pass


async def test_a_fresh_event_runs_without_waiting_for_its_claim_and_is_recorded_before_its_ack():
    steps: list[str] = []
    claim_back = asyncio.Event()

    class Seen:
        def check(self) -> None:
            pass

        async def _answer(self, event_id: str) -> bool:
            await claim_back.wait()
            steps.append(f"claimed {event_id}")
            return True

        def claim_fresh(self, event_id: str):
            steps.append(f"claim sent {event_id}")
            return self._answer(event_id)

        async def claim(self, event_id: str) -> bool:
            raise AssertionError("a fresh event is not checked before it runs")

        async def done(self, event_id: str) -> None:
            steps.append(f"done {event_id}")

        async def release(self, event_id: str) -> None:
            pass

    inner = Recorder()
    intake = ClusterIntake(inner, Seen())  # type: ignore[arg-type]
    info = ClientInfo(sid="s1", role="puppet", bot="b", remote=None)
    acking = asyncio.ensure_future(
        intake.on_puppet_event(info, {"id": "e1", "name": "message", "attempt": 1})
    )
    for _ in range(20):
        await asyncio.sleep(0)
    assert inner.ran == ["e1"] and not acking.done()  # it ran; the ack waits for Redis
    claim_back.set()
    assert await acking == {"ok": True}
    assert steps == ["claim sent e1", "done e1", "claimed e1"]


async def test_fresh_and_re_sent_copies_across_processes(two):
    a_state, b_state = two
    for state, host in ((a_state, "host-a"), (b_state, "host-b")):
        await state.client.set(state.key("host", host), "{}", px=60_000)
    a_inner, b_inner = Recorder(), Recorder()
    a = ClusterIntake(a_inner, RedisSeenIds(a_state, "host-a", poll_s=0.01))  # type: ignore[arg-type]
    b = ClusterIntake(b_inner, RedisSeenIds(b_state, "host-b", poll_s=0.01))  # type: ignore[arg-type]
    info = ClientInfo(sid="s1", role="puppet", bot="b", remote=None)
    fresh = {"id": "f1", "name": "message", "attempt": 1}
    assert await a.on_puppet_event(info, fresh) == {"ok": True}
    assert await a_state.client.get(a_state.key("seen", "f1")) == b"d"  # before the ack
    # its ack was lost (A died): the copy sent again to B runs nothing
    assert await b.on_puppet_event(info, dict(fresh, attempt=2)) == {"ok": True}
    # a copy without attempt (an older Node client) is checked too
    assert await b.on_puppet_event(info, {"id": "f1", "name": "message"}) == {"ok": True}
    assert (a_inner.ran, b_inner.ran) == (["f1"], [])
    # what is given up: a first copy delivered late (a stalled connection), after a copy sent
    # again was handled elsewhere, runs again (its replies carry the same send keys)
    await b_state.client.set(b_state.key("seen", "f2"), "d")
    assert await a.on_puppet_event(info, {"id": "f2", "name": "message", "attempt": 1})
    assert a_inner.ran == ["f1", "f2"]


async def test_a_quick_fresh_event_costs_one_command_a_slow_one_s_claim_goes_out(two):
    a_state = two[0]
    release = asyncio.Event()

    class Handlers(Recorder):
        async def on_puppet_event(self, info, data):
            if data["id"] == "slow":
                await release.wait()
            return await super().on_puppet_event(info, data)

    intake = ClusterIntake(Handlers(), RedisSeenIds(a_state, "host-a"))  # type: ignore[arg-type]
    info = ClientInfo(sid="s1", role="puppet", bot="b", remote=None)
    batcher = a_state.batcher
    commands = batcher.commands
    assert await intake.on_puppet_event(info, {"id": "q", "name": "message", "attempt": 1})
    assert batcher.commands - commands == 1  # the claim was taken back: only the record
    slow = asyncio.ensure_future(
        intake.on_puppet_event(info, {"id": "slow", "name": "message", "attempt": 1})
    )
    await asyncio.sleep(batcher.LAZY_S * 5)
    key = a_state.key("seen", "slow")
    assert await a_state.client.get(key) == b"c:host-a"  # claimed while it runs
    release.set()
    assert await slow == {"ok": True}
    assert await a_state.client.get(key) == b"d"


async def test_redis_known_lost_defers_a_fresh_event_too(tmp_path_factory, prefix):
    private = free_redis(tmp_path_factory)
    state = SharedState(settings(next(private), prefix))
    state.back()
    inner = Recorder()
    intake = ClusterIntake(inner, RedisSeenIds(state, "host-a"))  # type: ignore[arg-type]
    info = ClientInfo(sid="s1", role="puppet", bot="b", remote=None)
    private.close()
    with pytest.raises(ClusterUnavailable):
        await state.run("a refresh", state.client.ping())  # the loss is noticed
    ack = await intake.on_puppet_event(info, {"id": "e1", "name": "message", "attempt": 1})
    assert ack["error"]["kind"] == "unavailable" and "s1" in intake.deferred
    assert inner.ran == []
    await state.close()


# --------------------------------------------------------------------------- rate limits


class Bus:
    """The cluster channel's ``book``/``booked`` notices between limiters, in memory."""

    def __init__(self) -> None:
        self.limiters: dict[str, ClusterRateLimiter] = {}
        self.notices = 0

    def notify_from(self, host: str):
        async def notify(kind: str, data: object) -> None:
            self.notices += 1
            for other, limiter in self.limiters.items():
                if other == host:
                    continue
                if kind == "book":
                    await limiter.on_book(data, host)
                else:
                    limiter.on_booked(data)

        return notify


def limiters(
    per_chat: Rate | None, per_bot: Rate | None, *, holder: str = "host-a", clock=time.monotonic
) -> tuple[list[ClusterRateLimiter], list[float], Bus]:
    """Two processes' limiters; every bot is connected to ``holder``."""
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    bus = Bus()
    made = []
    for host in ("host-a", "host-b"):
        made.append(
            ClusterRateLimiter(
                per_chat,
                per_bot,
                where=lambda bot: holder,
                notify=bus.notify_from(host),
                host_id=host,
                sleep=record,
                clock=clock,
            )
        )
        bus.limiters[host] = made[-1]
    return made, sleeps, bus


async def test_two_processes_share_one_bot_s_rate_limit_kept_where_it_is_connected():
    rate = Rate(10, per=1.0, burst=2)  # 2 at once, then one every 0.1 s
    (a, b), waits, bus = limiters(None, rate)
    await asyncio.gather(*((a, b)[i % 2].acquire("shop", f"chat{i}") for i in range(10)))
    # one bucket for both: the 10th send waits for 8 intervals; two buckets would give 0.3 s
    assert max(waits) == pytest.approx(0.8, abs=0.05)
    assert sorted(round(w, 1) for w in waits) == [round(0.1 * i, 1) for i in range(1, 9)]
    # A's sends cost nothing; B's 5 were booked with A (a notice there and one back)
    assert (a.booked_for_others, b.booked_elsewhere, bus.notices) == (5, 5, 10)


async def test_a_chat_waits_for_its_own_limit_before_booking_the_bot_s():
    (a, b), _, _ = limiters(Rate(1, per=1.0, burst=1), Rate(100, per=1.0, burst=50))
    assert await a.acquire("shop", "alice") == 0
    waited = await b.acquire("shop", "alice")  # the same chat from the other process
    assert waited == pytest.approx(1.0, abs=0.05)
    assert await b.acquire("shop", "bob") == 0  # another chat is not held back


async def test_a_bot_that_moves_here_starts_with_one_token_not_a_full_burst():
    now = [100.0]
    (a, _), sleeps, _ = limiters(Rate(10, per=1.0, burst=5), None, clock=lambda: now[0])
    for _ in range(5):
        await a.acquire("shop", "alice")
    assert sleeps == []  # a full burst of 5 before any move
    now[0] += 10  # full again
    a.moved_here("shop")  # the bot connected (again) here: the old bucket may be spent
    for _ in range(3):
        await a.acquire("shop", "alice")
    assert [round(w, 2) for w in sleeps] == [0.1, 0.2]  # one at once, then the rate
    now[0] += 10
    sleeps.clear()
    for _ in range(5):
        await a.acquire("shop", "bob")
    assert sleeps == []  # long after the move: the burst is back


async def test_a_send_for_a_bot_whose_process_does_not_answer_fails_by_name():
    (_, b), _, bus = limiters(None, Rate(10, per=1.0, burst=2))
    del bus.limiters["host-a"]  # A is gone and B does not know yet
    b.timeout = 0.2
    with pytest.raises(ClusterUnavailable, match="did not book a send"):
        await b.acquire("shop", "alice")


# --------------------------------------------------------------------------- send budgets

RULES = SendBudget(user_first=True, per_user_message=10, window_s=3600)


async def test_two_processes_cannot_exceed_one_contact_s_send_budget(two):
    a, b = (RedisSendBudgets(state) for state in two)
    with pytest.raises(SendWindowClosed, match="has not written"):
        await a.reserve("shop", "alice", RULES)
    a.user_wrote("shop", "alice", "m1", time.time())  # the message arrived at A
    await asyncio.sleep(0.05)  # (A's own sends wait for the write; B's come later in life)

    async def send(budgets: RedisSendBudgets) -> bool:
        try:
            await budgets.reserve("shop", "alice", RULES)
        except SendWindowClosed:
            return False
        return True

    results = await asyncio.gather(*(send(a if i % 2 else b) for i in range(25)))
    assert sum(results) == 10  # exactly the budget, whichever process sent
    with pytest.raises(SendWindowClosed, match=r"10 messages were sent .* \(10\)"):
        await b.reserve("shop", "alice", RULES)
    window = await a.reserve("shop", "alice", SendBudget(True, 11, 3600))
    await a.release("shop", "alice", window)  # it did not go out: given back
    await a.refuse("shop", "alice", window, "the channel refused a send (code -2)")
    with pytest.raises(SendWindowClosed, match="code -2"):
        await b.reserve("shop", "alice", RULES)
    a.user_wrote("shop", "alice", "m2", time.time())  # a new message opens a new window
    await asyncio.sleep(0.05)
    assert (await b.reserve("shop", "alice", RULES)).message_id == "m2"
    await asyncio.sleep(0.1)
    status = b.status("shop", "alice", RULES)
    assert status["opened_by"] == "m2" and status["sent"] == 1


BUDGET_WORKER = """
import asyncio, sys, time
from MetaPuppet.cluster.budget import RedisSendBudgets
from MetaPuppet.cluster.settings import ClusterSettings
from MetaPuppet.cluster.state import SharedState
from MetaPuppet.errors import SendWindowClosed
from MetaPuppet.protocol import SendBudget

async def main():
    state = SharedState(ClusterSettings(sys.argv[1], key_prefix=sys.argv[2], channel=sys.argv[2]))
    state.back()
    budgets = RedisSendBudgets(state)
    rules = SendBudget(True, 10, 3600)

    async def send(n):
        await asyncio.sleep(n * 0.005)  # spread over 0.1 s: the processes interleave
        try:
            await budgets.reserve("shop", "alice", rules)
            return 1
        except SendWindowClosed:
            return 0

    await state.client.ping()
    await asyncio.sleep(max(0.0, float(sys.argv[3]) - time.time()))  # all start together
    print(sum(await asyncio.gather(*(send(n) for n in range(20)))))
    await state.close()

asyncio.run(main())
"""


async def test_budgets_hold_across_real_processes(redis_url, prefix):  # noqa: F811
    state = SharedState(settings(redis_url, prefix))
    state.back()
    budgets = RedisSendBudgets(state)
    budgets.user_wrote("shop", "alice", "m1", time.time())
    await asyncio.sleep(0.05)
    start = time.time() + 3  # after the workers' imports
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            BUDGET_WORKER,
            redis_url,
            prefix,
            str(start),
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )  # fmt: skip
        for _ in range(3)
    ]
    sent = [int((await w.communicate())[0]) for w in workers]
    await state.close()
    print(f"\nsends allowed per process: {sent} (budget 10)")
    assert sum(sent) == 10


# --------------------------------------------------------------------------- Redis missing


async def test_redis_unreachable_at_start_is_a_clear_error_without_the_password():
    port = free_port()
    url = f"redis://:hunter2@127.0.0.1:{port}/0"
    server = SweetSocketServer(config=Config(), token="t" * 20, port=0, redis_url=url)
    with pytest.raises(ClusterUnavailable) as caught:
        await server.start()
    message = str(caught.value)
    assert f"redis://:***@127.0.0.1:{port}/0" in message and "hunter2" not in message
    assert "cannot reach the cluster's Redis" in message
    assert server.transport.accepting is False  # never listened


def test_serve_without_its_redis_exits_2_naming_the_url(tmp_path):
    port = free_port()
    (tmp_path / "config.json").write_text(
        json.dumps({"server": {"token": "t" * 20, "port": free_port()}})
    )
    done = subprocess.run(
        [sys.executable, "-m", "MetaPuppet", "serve", "--config", "config.json",
         "--redis", f"redis://:hunter2@127.0.0.1:{port}/0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"redis://:***@127.0.0.1:{port}/0" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout


async def test_concurrent_claims_share_a_pipeline_and_an_error_stays_with_its_caller(two):
    state = two[0]
    seen = RedisSeenIds(state, "h1")
    batches = state.batcher.batches
    claimed = await asyncio.gather(*(seen.claim(f"ev-{i}") for i in range(50)))
    assert claimed == [True] * 50
    assert state.batcher.batches - batches <= 3  # 50 claims, one or two round trips
    await state.client.set(state.key("text"), "not a number")

    async def bad() -> None:
        await state.batched("a bad command", lambda pipe: pipe.incr(state.key("text")))

    results = await asyncio.gather(
        bad(), *(seen.claim(f"ev-{i}") for i in range(3)), return_exceptions=True
    )
    assert "not an integer" in str(results[0])
    assert results[1:] == [True, True, True]  # claimed by this very process: it goes on
    assert state.up  # a bad command is a bug, raised as it is, not a lost Redis
