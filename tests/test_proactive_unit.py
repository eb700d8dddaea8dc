"""The proactive outbox without Node: a fake puppet answers, the queue is a real SQLite file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from MetaPuppet import Config, SweetSocketServer
from MetaPuppet.config import new_token
from MetaPuppet.outbox_store import OutboxRecord, OutboxStore
from MetaPuppet.proactive import NEVER, OutboxFull
from MetaPuppet.protocol import Capabilities
from MetaPuppet.transport import FakePuppetLink
from MetaPuppet.types import MiniProgram


def failing(code: Any, message: str = "") -> Any:
    def answer(event: str, data: Any) -> Any:
        error = {"kind": "runtime", "name": "ILinkError", "message": message, "code": code}
        return {"ok": False, "error": error}

    return answer


@pytest.fixture
async def server(tmp_path: Path) -> Any:
    config = Config()
    config.raw["proactive"] = {"max_per_chat": 3}
    server = SweetSocketServer(
        config=config, token=new_token(), port=0, rate_limiter=None, data_dir=tmp_path
    )
    await server.start()
    yield server
    await server.stop()


async def test_a_channel_error_ends_as_failed_with_the_channel_s_code(server):
    link = FakePuppetLink("bot", failing(-14, "session expired"), capabilities=Capabilities())
    server.attach_puppet(link)
    record = await server.send_later("wxid_alice", "hello")
    assert (record.state, record.code, record.reason) == ("failed", "-14", "session expired")
    assert server.outbox_status(record.id).state == "failed"
    assert server.ops.outbox.queued == 0


async def test_bounds_and_bad_input_fail_at_once_naming_the_problem(server):
    server.attach_puppet(FakePuppetLink("bot", capabilities=Capabilities()))
    with pytest.raises(ValueError, match="expires= must lie in the future"):
        await server.send_later("wxid_alice", "x", expires=-5)
    with pytest.raises(TypeError, match="text, a FileBox or a UrlLink"):
        await server.send_later("wxid_alice", MiniProgram({"appid": "wx1"}))
    with pytest.raises(ValueError, match="at most 1048576 bytes"):
        await server.send_later("wxid_alice", "x" * 2_000_000)
    with pytest.raises(ValueError, match="state must be one of"):
        server.outbox_messages(state="lost")
    server.detach_puppet(server.registry.get("bot"), "test")
    for i in range(3):  # the bot is offline: they wait
        assert (await server.send_later("wxid_bob", f"m{i}", bot="bot")).state == "queued"
    with pytest.raises(OutboxFull, match="3 proactive messages already wait for 'wxid_bob'"):
        await server.send_later("wxid_bob", "one too many", bot="bot", expires=NEVER)


async def test_a_send_cut_off_by_a_crash_ends_as_interrupted_not_sent_twice(tmp_path: Path):
    store = OutboxStore(tmp_path / "proactive.db")
    now = time.time()
    record = OutboxRecord("r1", "bot", "wxid_alice", None, "sending", now, now, None, attempts=1,
                          message={"type": "text", "text": "hi"})  # fmt: skip
    store.insert(record)
    store.close()
    server = SweetSocketServer(config=Config(), token=new_token(), port=0, data_dir=tmp_path)
    link = FakePuppetLink("bot", capabilities=Capabilities())
    server.attach_puppet(link)
    await server.start()
    try:
        after = server.outbox_status("r1")
        assert (after.state, after.code) == ("failed", "interrupted")
        assert "may or may not have delivered" in after.reason
        assert link.said() == []
    finally:
        await server.stop()
