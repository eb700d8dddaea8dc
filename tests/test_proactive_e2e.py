"""Proactive messages (send_later) against real send-window refusals: the robot, the Node
client on the ilink puppet, and the iLink simulator; and on the mock puppet (no budget)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from MetaPuppet import Message, RobotBase
from MetaPuppet.outbox_store import OutboxRecord
from MetaPuppet.testing import mock_wechat

pytestmark = pytest.mark.e2e


class Reverse(RobotBase):
    async def on_message(self, msg: Message) -> Any:
        return msg.text[::-1]


async def wait_state(server: Any, record: OutboxRecord, state: str, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        now = server.outbox_status(record.id)
        if now is not None and now.state == state:
            return now
        assert time.monotonic() < deadline, f"still {now.state if now else None}: {now}"
        await asyncio.sleep(0.05)


async def test_closed_window_queues_then_delivers_after_the_reply_within_the_budget():
    async with mock_wechat(Reverse(), puppet="ilink") as wx:
        alice = await wx.contact("Alice")
        first = await wx.server.send_later(alice.id, "your daily report")
        second = await wx.server.send_later(alice.id, "and a reminder")
        assert first.state == second.state == "queued"
        assert "has not written" in (first.reason or "")
        assert wx.sim.request_count("sendmessage") == 0  # nothing was tried against WeChat
        assert wx.server.ops.outbox.queued == 2
        await alice.say("hi")
        # the reply to the user's message first, then what waited, oldest first
        assert [(await alice.next_reply(timeout=10)).text for _ in range(3)] == [
            "ih",
            "your daily report",
            "and a reminder",
        ]
        done = await wait_state(wx.server, first, "delivered")
        assert done.message_id and done.attempts == 1
        assert (await wait_state(wx.server, second, "delivered")).reason is None
        budget = wx.server.send_budget(None, alice.id)
        assert budget["sent"] == 3 and budget["remaining"] == 7  # counted against the window
        assert wx.sim.request_count("sendmessage") == 3
        assert wx.server.ops.outbox.queued == 0
        # the window is open now: the next one goes at once
        third = await wx.server.send_later(alice.id, "one more thing")
        assert third.state == "delivered"
        assert (await alice.next_reply(timeout=10)).text == "one more thing"


async def test_the_reserve_and_the_allowance_leave_the_rest_queued_for_the_next_message():
    async with mock_wechat(Reverse(), puppet="ilink") as wx:
        alice = await wx.contact("Alice")
        queued = [await wx.server.send_later(alice.id, f"news {i}") for i in range(12)]
        await alice.say("hi")
        # 10 per user message: the reply, then 8 queued, 1 kept in reserve
        texts = [(await alice.next_reply(timeout=10)).text for _ in range(9)]
        assert texts == ["ih", *[f"news {i}" for i in range(8)]]
        await asyncio.sleep(0.5)
        assert alice.pending_replies() == []
        states = [wx.server.outbox_status(r.id).state for r in queued]
        assert states == ["delivered"] * 8 + ["queued"] * 4
        await alice.say("more")
        texts = [(await alice.next_reply(timeout=10)).text for _ in range(5)]
        assert texts == ["erom", "news 8", "news 9", "news 10", "news 11"]
        assert wx.sim.refused == type(wx.sim.refused)(maxlen=wx.sim.refused.maxlen)  # none


async def test_an_expired_message_is_recorded_with_its_reason_and_never_sent():
    async with mock_wechat(Reverse(), puppet="ilink") as wx:
        bob = await wx.contact("Bob")
        record = await wx.server.send_later(bob.id, "too late", expires=0.5)
        assert record.state == "queued" and record.expires_at is not None
        expired = await wait_state(wx.server, record, "expired", timeout=10)
        assert expired.code == "expired"
        assert "expired at" in expired.reason and "has not written" in expired.reason
        await bob.say("hello")
        assert (await bob.next_reply(timeout=10)).text == "olleh"
        await asyncio.sleep(0.5)
        assert bob.pending_replies() == []
        assert wx.sim.request_count("sendmessage") == 1  # the reply only
        assert wx.server.outbox_status(record.id).state == "expired"  # one final state


async def test_a_refusal_by_wechat_keeps_the_message_queued_never_delivered():
    async with mock_wechat(Reverse(), puppet="ilink") as wx:
        wx.sim.set_budget(per_message=1)  # WeChat is stricter than the model
        alice = await wx.contact("Alice")
        await alice.say("hi")
        assert (await alice.next_reply(timeout=10)).text == "ih"
        await asyncio.sleep(0.3)
        record = await wx.server.send_later(alice.id, "news")
        assert record.state == "queued" and "refused" in record.reason
        assert [r.reason for r in wx.sim.refused] == ["exhausted"]
        assert alice.pending_replies() == []
        wx.sim.set_budget(per_message=10)
        await alice.say("again")
        assert [(await alice.next_reply(timeout=10)).text for _ in range(2)] == ["niaga", "news"]
        delivered = await wait_state(wx.server, record, "delivered")
        assert delivered.attempts == 2


async def test_channels_without_a_budget_deliver_at_once_and_rest_shows_every_state():
    async with mock_wechat(Reverse()) as wx:
        alice = await wx.contact("Alice")
        record = await wx.server.send_later(alice.id, "good morning")
        assert record.state == "delivered"  # the mock returns no message id
        assert (await alice.next_reply(timeout=5)).text == "good morning"
        headers = {"Authorization": f"Bearer {wx.server.token}"}
        async with aiohttp.ClientSession(wx.server.url, headers=headers) as http:
            async with http.post("/api/outbox", json={"to": alice.id, "text": "via REST"}) as r:
                assert r.status == 200, await r.text()
                posted = await r.json()
            assert posted["state"] == "delivered"
            assert (await alice.next_reply(timeout=5)).text == "via REST"
            async with http.get(f"/api/outbox/{record.id}") as r:
                assert (await r.json())["state"] == "delivered"
            async with http.get("/api/outbox?state=delivered") as r:
                listed = await r.json()
            assert {m["id"] for m in listed["messages"]} == {record.id, posted["id"]}
            assert listed["counts"]["delivered"] == 2 and listed["counts"]["queued"] == 0
            async with http.get("/api/outbox/nope") as r:
                assert r.status == 404 and (await r.json())["error"] == "not_found"
            async with http.post("/api/outbox", json={"to": alice.id}) as r:
                assert r.status == 400 and "exactly one" in (await r.json())["message"]
            async with http.post(
                "/api/outbox", json={"to": alice.id, "text": "x", "expires_s": -1}
            ) as r:
                assert r.status == 400 and "expires_s" in (await r.json())["message"]


def morning_job(ctx: Any, to: str) -> None:
    """A plain def job (thread pool) sends through the proactive outbox."""
    record = ctx.send_later_sync(to, "good morning from a job")
    assert record.state in ("delivered", "queued")


async def test_a_scheduled_job_sends_through_the_outbox_and_waits_for_the_window():
    robot = Reverse()
    async with mock_wechat(robot, puppet="ilink") as wx:
        alice = await wx.contact("Alice")
        robot.schedule_once(0.2, morning_job, alice.id, id="morning")
        for _ in range(100):
            if wx.server.outbox_messages(contact=alice.id):
                break
            await asyncio.sleep(0.05)
        (record,) = wx.server.outbox_messages(contact=alice.id)
        assert record.state == "queued"  # Alice has not written: it waits for her
        await alice.say("morning?")
        assert [(await alice.next_reply(timeout=10)).text for _ in range(2)] == [
            "?gninrom",
            "good morning from a job",
        ]
        assert [r["outcome"] for r in wx.server.ops.runs()] == ["ok"]
