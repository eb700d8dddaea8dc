from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

import pytest

from MetaPuppet import Config, SweetSocketServer
from MetaPuppet.protocol import BotEvent
from MetaPuppet.server import PuppetLink, SocketServerCore
from MetaPuppet.transport.fake import say_fields

logging.getLogger("MetaPuppet").setLevel(logging.DEBUG)


# --- no token may ever appear in a log line, anywhere in the suite -------------------------

_SECRETS: set[str] = set()
_LEAKS: list[str] = []


class _TokenLeakWatch(logging.Handler):
    """Sees every log record of the run and keeps any that contains a server's token."""

    def emit(self, record: logging.LogRecord) -> None:
        if not _SECRETS:
            return
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is not a leak
            return
        for secret in _SECRETS:
            if secret in text:
                _LEAKS.append(f"{record.name}: {text[:200]}")
                return


_original_start = SocketServerCore.start


async def _start_and_remember_tokens(self: SocketServerCore, *args: Any, **kwargs: Any) -> None:
    _SECRETS.update(self.authenticator.secrets())
    await _original_start(self, *args, **kwargs)


SocketServerCore.start = _start_and_remember_tokens  # type: ignore[method-assign]
_watch = _TokenLeakWatch(level=logging.DEBUG)
logging.getLogger().addHandler(_watch)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _LEAKS:
        print(f"\n{len(_LEAKS)} log lines contained a token, e.g.:\n" + "\n".join(_LEAKS[:5]))
        session.exitstatus = 1


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class FakePuppet(PuppetLink):
    """A puppet in Python: records every call and answers with ``answer(event, data)``."""

    def __init__(self, bot: str = "fake", answer: Callable[[str, Any], Any] | None = None) -> None:
        self.bot = bot
        self.calls: list[tuple[str, Any]] = []
        self.answer = answer or (lambda event, data: {"ok": True, "result": None})
        self.closed: str | None = None

    async def call(self, event: str, data: Any, timeout: float) -> Any:
        self.calls.append((event, data))
        result = self.answer(event, data)
        if asyncio.iscoroutine(result):
            result = await result
        return result

    def close(self, reason: str) -> None:
        self.closed = reason

    def said(self) -> list[dict[str, Any]]:
        """The fields of every `say` (typed action or snippet) run on this puppet."""
        return [said for event, data in self.calls if (said := say_fields(event, data))]


_counter = 0


def make_event(name: str, payload: dict[str, Any], bot: str = "fake") -> BotEvent:
    global _counter
    _counter += 1
    return BotEvent(id=f"ev-{_counter}", bot=bot, name=name, payload=payload, ts=0.0)


def message_payload(
    text: str, talker: str = "alice", room: str | None = None, **extra: Any
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": f"msg-{text[:10]}-{talker}",
        "type": 7,
        "text": text,
        "talkerId": talker,
        "fromId": talker,
        "listenerId": None if room else "bot-user",
        "roomId": room,
        "self": False,
        "mentionSelf": False,
        "mentionIdList": [],
        "talker": {"id": talker, "name": talker.title()},
        "room": {"id": room, "topic": "Room"} if room else None,
    }
    payload.update(extra)
    return payload


@pytest.fixture
async def server_factory():
    started: list[SweetSocketServer] = []

    async def make(robot: Any = None, **kwargs: Any) -> SweetSocketServer:
        kwargs.setdefault("config", Config())
        kwargs.setdefault("token", "unit-test-token-0123456789")
        server = SweetSocketServer(robot=robot, port=0, **kwargs)
        await server.start(host="127.0.0.1", port=0)
        started.append(server)
        return server

    yield make
    for server in started:
        await server.stop()


async def settle(server: SweetSocketServer) -> None:
    """Wait until every handler task the server started has finished."""
    for _ in range(100):
        pending = [t for t in server.pipeline.tasks if not t.done()]
        if not pending:
            return
        await asyncio.wait(pending, timeout=5)
