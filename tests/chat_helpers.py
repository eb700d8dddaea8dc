"""Helpers for conversation-layer tests: talk to a server through a FakePuppet."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from MetaPuppet import SQLiteStorage, SweetSocketServer
from MetaPuppet.storage import BaseStorage

from .conftest import FakePuppet, make_event, message_payload, settle

_ids = itertools.count(1)


class Chat:
    """Send messages to ``server`` as if from WeChat, and read what the bot said back."""

    def __init__(self, server: SweetSocketServer, puppet: FakePuppet | None = None) -> None:
        self.server = server
        self.puppet = puppet or FakePuppet(bot="fake")
        if puppet is None:
            server.attach_puppet(self.puppet)
        self._read = 0

    async def send(
        self,
        text: str,
        talker: str = "alice",
        room: str | None = None,
        *,
        topic: str = "Room",
        message_id: str | None = None,
        wait: bool = True,
        **extra: Any,
    ) -> str:
        """Deliver one message event; returns its message id."""
        mid = message_id or f"m{next(_ids)}"
        payload = message_payload(text, talker=talker, room=room, id=mid, **extra)
        if room is not None:
            payload["room"] = {"id": room, "topic": topic}
        await self.server.handle_event(make_event("message", payload, bot=self.puppet.bot))
        if wait:
            await settle(self.server)
        return mid

    def said(self) -> list[tuple[str, str]]:
        """Every (to, text) the bot sent so far."""
        return [(s["to"], s["sayable"].get("text", "")) for s in self.puppet.said()]

    def new(self, to: str | None = None) -> list[str]:
        """Texts said since the last call (to ``to`` only, when given)."""
        said = self.said()
        fresh, self._read = said[self._read :], len(said)
        return [text for target, text in fresh if to is None or target == to]


def free_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server for the tests, on a Unix socket in a temp dir.

    A Unix socket cannot clash with another Redis (or anything) on a TCP port. Skips when
    redis-server is not installed, unless METAPUPPET_REQUIRE_REDIS is set (CI): then fails.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server is not installed (Debian: apt-get install redis-server)"
        if os.environ.get("METAPUPPET_REQUIRE_REDIS"):
            pytest.fail(f"{reason}, and METAPUPPET_REQUIRE_REDIS is set", pytrace=False)
        pytest.skip(f"{reason}; the Redis store tests need it")
    directory: Path = tmp_path_factory.mktemp("redis")
    sock = directory / "redis.sock"
    log_path = directory / "redis.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [
                binary,
                "--port", "0",
                "--unixsocket", str(sock),
                "--unixsocketperm", "700",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(directory),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        import redis

        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                pytest.fail(f"redis-server exited: {log_path.read_text()[-2000:]}", pytrace=False)
            try:
                if sock.exists() and redis.Redis(unix_socket_path=str(sock)).ping():
                    break
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.02)
        yield f"unix://{sock}"
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from free_redis(tmp_path_factory)


@pytest.fixture(params=["sqlite", "redis"])
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], BaseStorage]:
    """Makes store instances that share their data, as two server processes would."""
    if request.param == "sqlite":
        path = tmp_path / "dialogs.db"
        return lambda: SQLiteStorage(path)
    from MetaPuppet.storage import RedisStorage

    url = request.getfixturevalue("redis_url")
    namespace = f"test-{uuid.uuid4().hex}"
    return lambda: RedisStorage.from_url(url, namespace=namespace)
