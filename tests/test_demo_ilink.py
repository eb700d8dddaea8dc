"""The iLink demo names what is missing when a step fails, and exits 1."""

from __future__ import annotations

import io
from typing import Any

import pytest

from MetaPuppet import demo
from MetaPuppet.demo import DemoBot, run_demo

pytestmark = pytest.mark.e2e


async def test_a_failing_step_is_named_and_the_demo_exits_one(monkeypatch):
    answer = DemoBot.on_message

    async def no_pictures(self: DemoBot, message: Any) -> Any:
        if "picture" in message.text:
            return None  # the robot forgets to send it
        return await answer(self, message)

    monkeypatch.setattr(DemoBot, "on_message", no_pictures)
    monkeypatch.setattr(demo, "REPLY_TIMEOUT_S", 2.0)
    out = io.StringIO()
    code = await run_demo(once=True, out=out, puppet="ilink")
    text = out.getvalue()
    assert code == 1, text
    assert "5/6 steps passed" in text
    assert "MISSING: A picture sent back: the bot sent nothing more to" in text


async def test_a_qr_code_that_never_reaches_python_is_named(monkeypatch):
    monkeypatch.setattr(demo.QrWalkthrough, "__init__", _impatient)
    monkeypatch.setattr(demo.QrWalkthrough, "_scan_event", _never)
    out = io.StringIO()
    code = await run_demo(once=True, out=out, puppet="ilink")
    text = out.getvalue()
    assert code == 1, text
    assert "MISSING: Log in by scanning the QR code: the QR code never reached Python" in text


def _impatient(self: Any, out: Any, pause: float = 0.0, timeout: float = 0.5) -> None:
    self.out, self.pause, self.timeout, self.seen = out, pause, timeout, []


async def _never(self: Any, bot: Any, wanted: Any) -> Any:
    raise TimeoutError("no such scan event reached Python within 0.5 s")
