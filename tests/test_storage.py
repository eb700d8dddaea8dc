"""State stores: one behaviour, three implementations (memory, SQLite file, real Redis)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from MetaPuppet.storage import (
    BaseStorage,
    LockTimeout,
    MemoryStorage,
    RedisStorage,
    SQLiteStorage,
    StorageError,
    StorageKey,
)

from .chat_helpers import redis_url  # noqa: F401 - the fixture

KEY = StorageKey("bot", "room@chatroom", "alice")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request, tmp_path) -> AsyncIterator[BaseStorage]:
    if request.param == "memory":
        made: BaseStorage = MemoryStorage()
    elif request.param == "sqlite":
        made = SQLiteStorage(tmp_path / "state.db")
    else:
        url = request.getfixturevalue("redis_url")
        made = RedisStorage.from_url(url, namespace=f"test-{uuid.uuid4().hex}")
    yield made
    await made.close()


async def test_values_round_trip_as_json(store):
    value = {"text": "中文 and emoji 🐍", "n": [1, 2.5, None, True], "nested": {"a": {}}}
    assert await store.get(KEY) is None
    await store.set(KEY, value)
    assert await store.get(KEY) == value
    await store.set(KEY, {"replaced": 1})
    assert await store.get(KEY) == {"replaced": 1}
    await store.delete(KEY)
    assert await store.get(KEY) is None
    await store.delete(KEY)  # deleting again is fine


async def test_a_returned_value_is_a_copy(store):
    await store.set(KEY, {"journal": [1]})
    got = await store.get(KEY)
    got["journal"].append(2)
    assert await store.get(KEY) == {"journal": [1]}


async def test_keys_with_separators_do_not_collide(store):
    first, second = StorageKey("a:b", "c", "d"), StorageKey("a", "b:c", "d")
    await store.set(first, {"who": "first"})
    await store.set(second, {"who": "second"})
    assert (await store.get(first))["who"] == "first"
    assert (await store.get(second))["who"] == "second"


async def test_values_must_be_json(store):
    with pytest.raises(TypeError):
        await store.set(KEY, {"not json": object()})


async def test_the_lock_serialises_read_modify_write(store):
    await store.set(KEY, {"count": 0})

    async def increment() -> None:
        async with store.lock(KEY):
            value = await store.get(KEY)
            await asyncio.sleep(0.001)  # a lost update without the lock
            await store.set(KEY, {"count": value["count"] + 1})

    await asyncio.gather(*(increment() for _ in range(20)))
    assert await store.get(KEY) == {"count": 20}


async def test_a_busy_lock_times_out_with_a_clear_error(store):
    async with store.lock(KEY):
        with pytest.raises(LockTimeout, match="alice"):
            async with store.lock(KEY, timeout=0.05):
                pass
    async with store.lock(KEY, timeout=1):  # released: free again
        pass


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_values_expire_after_their_ttl(kind, tmp_path):
    clock = Clock()
    store: BaseStorage = (
        MemoryStorage(clock=clock)
        if kind == "memory"
        else SQLiteStorage(tmp_path / "ttl.db", clock=clock)
    )
    await store.set(KEY, {"v": 1}, ttl=10)
    await store.set(StorageKey("bot", "x", "y"), {"v": 2})
    clock.now += 9.9
    assert await store.get(KEY) == {"v": 1}
    clock.now += 0.2
    assert await store.get(KEY) is None
    assert await store.get(StorageKey("bot", "x", "y")) == {"v": 2}  # no ttl: kept
    await store.close()


async def test_redis_values_expire_after_their_ttl(redis_url):  # noqa: F811
    store = RedisStorage.from_url(redis_url, namespace=f"test-{uuid.uuid4().hex}")
    await store.set(KEY, {"v": 1}, ttl=0.1)
    assert await store.get(KEY) == {"v": 1}
    await asyncio.sleep(0.25)
    assert await store.get(KEY) is None
    await store.close()


async def test_sqlite_keeps_values_across_instances_and_works_off_the_loop(tmp_path, monkeypatch):
    threads: list[str] = []
    original: Callable[..., object] = SQLiteStorage._get

    def spy(self, *args):
        threads.append(threading.current_thread().name)
        return original(self, *args)

    monkeypatch.setattr(SQLiteStorage, "_get", spy)
    first = SQLiteStorage(tmp_path / "deep" / "state.db")
    await first.set(KEY, {"step": 3})
    await first.close()
    second = SQLiteStorage(tmp_path / "deep" / "state.db")
    assert await second.get(KEY) == {"step": 3}
    await second.close()
    assert threads and all(name.startswith("metapuppet-sqlite") for name in threads)


async def test_two_redis_clients_exclude_each_other(redis_url):  # noqa: F811
    namespace = f"test-{uuid.uuid4().hex}"
    one = RedisStorage.from_url(redis_url, namespace=namespace)
    two = RedisStorage.from_url(redis_url, namespace=namespace)
    inside: list[str] = []

    async def hold(store: RedisStorage, name: str) -> None:
        async with store.lock(KEY, timeout=5):
            inside.append(f"{name} in")
            await asyncio.sleep(0.05)
            inside.append(f"{name} out")

    await asyncio.gather(hold(one, "one"), hold(two, "two"))
    assert inside in (
        ["one in", "one out", "two in", "two out"],
        ["two in", "two out", "one in", "one out"],
    )
    await one.close()
    await two.close()


async def test_a_redis_lock_of_a_dead_holder_expires(redis_url):  # noqa: F811
    namespace = f"test-{uuid.uuid4().hex}"
    dead = RedisStorage.from_url(redis_url, namespace=namespace, lock_ttl=0.2)
    alive = RedisStorage.from_url(redis_url, namespace=namespace)
    lock = dead.lock(KEY)
    await lock.__aenter__()  # acquired and never released: its process "died"
    async with alive.lock(KEY, timeout=2):
        pass
    await dead.close()
    await alive.close()


async def test_memory_locks_do_not_pile_up():
    store = MemoryStorage()
    for i in range(100):
        async with store.lock(StorageKey("bot", "chat", f"user{i}")):
            pass
    assert len(store._locks) == 0


async def test_sqlite_serves_recent_keys_from_memory_and_stays_exact(tmp_path, monkeypatch):
    queries: list[str] = []
    original = SQLiteStorage._get

    def counting(self, name, now):
        queries.append(name)
        return original(self, name, now)

    monkeypatch.setattr(SQLiteStorage, "_get", counting)
    store = SQLiteStorage(tmp_path / "cache.db", cache_size=2)
    other = StorageKey("bot", "chat", "bob")
    assert await store.get(KEY) is None and await store.get(KEY) is None  # absence is known
    await store.set(KEY, {"v": 1})
    assert await store.get(KEY) == {"v": 1}
    await store.delete(KEY)
    assert await store.get(KEY) is None
    assert len(queries) == 1
    await store.set(other, {"v": 2})
    await store.set(StorageKey("bot", "chat", "carol"), {"v": 3})  # evicts the oldest key
    assert await store.get(KEY) is None
    assert len(queries) == 2 and len(store._cache) == 2
    await store.close()

    uncached = SQLiteStorage(tmp_path / "cache.db", cache_size=0)
    assert await uncached.get(other) == {"v": 2}
    assert await uncached.get(other) == {"v": 2}
    assert len(queries) == 4
    await uncached.close()


async def test_sqlite_commits_concurrent_writes_together_and_keeps_all_of_them(tmp_path):
    store = SQLiteStorage(tmp_path / "batch.db")
    keys = [StorageKey("bot", "chat", f"user{i}") for i in range(300)]
    await asyncio.gather(*(store.set(key, {"n": i}) for i, key in enumerate(keys)))
    await store.close()
    reopened = SQLiteStorage(tmp_path / "batch.db")
    assert [await reopened.get(key) for key in keys] == [{"n": i} for i in range(300)]
    await reopened.close()


async def test_a_failed_sqlite_commit_is_reported_to_its_writers(tmp_path, monkeypatch):
    store = SQLiteStorage(tmp_path / "fail.db")
    await store.set(KEY, {"v": "kept"})
    original = SQLiteStorage._apply

    def failing(self, conn, write):
        if write[0].endswith("bad"):
            raise sqlite3.OperationalError("disk I/O error")
        original(self, conn, write)

    monkeypatch.setattr(SQLiteStorage, "_apply", failing)
    hold = threading.Event()
    store._thread.submit(hold.wait, 5)  # both writes queue up behind this: one batch
    writes = asyncio.gather(
        store.set(KEY, {"v": "lost"}),
        store.set(StorageKey("bot", "chat", "bad"), {"v": 1}),
        return_exceptions=True,
    )
    await asyncio.sleep(0.05)
    hold.set()
    results = await writes
    assert all(isinstance(r, StorageError) and "disk I/O error" in str(r) for r in results)
    monkeypatch.setattr(SQLiteStorage, "_apply", original)
    assert await store.get(KEY) == {"v": "kept"}  # the batch was rolled back as a whole
    await store.close()


async def test_redis_many_concurrent_operations_wait_for_a_connection(redis_url):  # noqa: F811
    # regression: the default pool raised "Too many connections" under load
    store = RedisStorage.from_url(
        redis_url, namespace=f"test-{uuid.uuid4().hex}", max_connections=4
    )
    keys = [StorageKey("bot", "chat", f"user{i}") for i in range(200)]

    async def step(key: StorageKey, n: int) -> None:
        async with store.lock(key):
            await store.set(key, {"n": n})
            assert await store.get(key) == {"n": n}

    await asyncio.gather(*(step(key, i) for i, key in enumerate(keys)))
    assert await store.get(keys[-1]) == {"n": 199}
    await store.close()
