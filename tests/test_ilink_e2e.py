"""A real WeChat account's chain, offline: robot <-> Socket.IO <-> Node Wechaty <-> the ilink
puppet <-> HTTP <-> the iLink simulator (issue 10's end-to-end tests)."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from typing import Any

import pytest

from MetaPuppet import (
    Config,
    Message,
    NotSupported,
    RobotBase,
    SendWindowClosed,
    SweetSocketServer,
)
from MetaPuppet.config import new_token
from MetaPuppet.protocol import BotEvent
from MetaPuppet.testing import NodeClient, mock_wechat
from MetaPuppet.testing.ilink import ILinkSimulator

pytestmark = pytest.mark.e2e


class Reverse(RobotBase):
    """Answers with the text reversed; remembers what it handled and what failed."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.handled: list[str] = []
        self.errors: list[BaseException] = []

    async def on_message(self, msg: Message) -> Any:
        self.handled.append(msg.text)
        return msg.text[::-1]

    async def on_error(self, error: BaseException, event: BotEvent) -> None:
        self.errors.append(error)


class Keeper(RobotBase):
    """Keeps every message it gets, answers nothing."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.messages: asyncio.Queue[Message] = asyncio.Queue()

    async def on_message(self, msg: Message) -> Any:
        await self.messages.put(msg)
        return None


async def test_a_direct_message_is_answered_and_rooms_are_not_supported():
    async with mock_wechat(Reverse(), puppet="ilink") as wx:
        alice = await wx.contact("Alice")
        await alice.say("hello")
        assert (await alice.next_reply(timeout=10)).text == "olleh"
        capabilities = wx.server.capabilities()
        assert capabilities.channel == "ilink" and not capabilities.can("rooms")
        started = time.monotonic()
        with pytest.raises(NotSupported, match="'ilink' channel does not support rooms"):
            await wx.server.rooms.find(topic="Team")
        with pytest.raises(NotSupported, match="rooms"):
            await wx.server.say("team@chatroom", "hi", room=True)
        with pytest.raises(NotSupported):
            await alice.say("hi", room=object())
        assert time.monotonic() - started < 1.0


async def test_files_travel_both_ways_byte_for_byte():
    picture = bytes(range(256)) * 40
    document = os.urandom(5 * 1024 * 1024)
    robot = Keeper()
    async with mock_wechat(robot, puppet="ilink", timeout=90) as wx:
        alice = await wx.contact("Alice")
        await alice.send_file("cat.png", picture)
        await alice.send_file("report.bin", document)
        for expected in (picture, document):
            message = await asyncio.wait_for(robot.messages.get(), 30)
            box = await message.to_file_box()
            assert box.data == expected
            await message.say(box)  # and back to the user, uploaded to the CDN encrypted
            assert (await (await alice.next_reply(timeout=60)).file()).data == expected


async def test_the_eleventh_message_after_one_user_message_never_reaches_wechat():
    robot = Keeper()
    async with mock_wechat(robot, puppet="ilink") as wx:
        alice = await wx.contact("Alice")
        await alice.say("tell me everything")
        message = await asyncio.wait_for(robot.messages.get(), 10)
        for i in range(10):
            await message.say(f"part {i}")
        sends = wx.sim.request_count("sendmessage")
        with pytest.raises(SendWindowClosed, match="10 messages were sent"):
            await message.say("part 10")
        assert wx.sim.request_count("sendmessage") == sends == 10
        assert wx.server.send_budget(None, alice.id)["remaining"] == 0
        # a new message from the user opens a new window
        await alice.say("more?")
        newer = await asyncio.wait_for(robot.messages.get(), 10)
        await newer.say("yes")
        assert wx.sim.request_count("sendmessage") == 11


async def test_a_window_older_than_its_limit_is_refused_and_a_new_message_reopens_it():
    budget = {"user_first": True, "per_user_message": 10, "window_s": 60}
    robot = Keeper()
    # the window is configurable (users see shorter ones than 24 h); 60 s for this account
    async with mock_wechat(robot, puppet="ilink", puppet_options={"send_budget": budget}) as wx:
        assert wx.server.capabilities().send_budget.window_s == 60
        alice = await wx.contact("Alice")
        # a message sent two minutes ago (the bot was down): its window has closed
        alice.user.send_text("are you there?", create_time_ms=int(time.time() * 1000) - 120_000)
        old = await asyncio.wait_for(robot.messages.get(), 10)
        sends = wx.sim.request_count("sendmessage")
        with pytest.raises(SendWindowClosed, match="window of 1 min") as closed:
            await old.say("sorry, I was away")
        assert closed.value.closed_at is not None and "new message" in str(closed.value)
        assert wx.sim.request_count("sendmessage") == sends
        await alice.say("hello again")
        fresh = await asyncio.wait_for(robot.messages.get(), 10)
        await fresh.say("hi!")
        assert (await alice.next_reply(timeout=10)).text == "hi!"


async def test_a_refusal_by_wechat_is_an_error_and_closes_the_window():
    robot = Keeper()
    async with mock_wechat(robot, puppet="ilink") as wx:
        wx.sim.set_budget(per_message=1)  # WeChat is stricter than the model
        alice = await wx.contact("Alice")
        await alice.say("hi")
        message = await asyncio.wait_for(robot.messages.get(), 10)
        await message.say("one")
        with pytest.raises(SendWindowClosed, match="refused") as refused:
            await message.say("two")
        assert getattr(refused.value.__cause__, "code", None) == -2
        sends = wx.sim.request_count("sendmessage")
        with pytest.raises(SendWindowClosed):
            await message.say("three")  # not retried: closed until the user writes
        assert wx.sim.request_count("sendmessage") == sends
        assert [r.reason for r in wx.sim.refused] == ["exhausted"]


async def test_sigkill_of_the_node_client_while_50_messages_arrive_loses_and_repeats_none():
    robot = Reverse()
    async with mock_wechat(robot, puppet="ilink", timeout=90) as wx:
        alice = await wx.contact("Alice")
        qrcodes = len(wx.sim.qrcodes)
        texts = [f"message {i}" for i in range(50)]
        for text in texts[:20]:
            await alice.say(text)
        await asyncio.sleep(0.3)  # some are handled, some are on their way
        restart = asyncio.ensure_future(wx.restart_node(kill=True, timeout=60))
        for text in texts[20:]:
            await alice.say(text)
            await asyncio.sleep(0.01)
        await restart
        deadline = time.monotonic() + 60
        while set(robot.handled) < set(texts) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        counts = Counter(robot.handled)
        lost = [t for t in texts if counts[t] == 0]
        # a handling whose reply was on its way when the client died runs again once the
        # client sends the event again; its reply is not sent twice (the send records)
        again = [t for t in texts if counts[t] > 1]
        assert lost == [] and len(again) <= 3, (lost, again)
        # a reply whose send was in flight at the kill is in doubt (it may or may not have
        # reached WeChat): never sent again, reported to the robot as SendInterrupted
        doubt = [e for e in robot.errors if "SendInterrupted" in str(e)]
        assert [e for e in robot.errors if e not in doubt] == []
        assert len(doubt) <= 3
        assert len(wx.sim.qrcodes) == qrcodes, "the restart needed a new QR scan"
        # each one answered exactly once, within its own message's window
        replies = Counter(r.text for r in alice.pending_replies())
        deadline = time.monotonic() + 30
        while len(replies) < 50 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            replies.update(r.text for r in alice.pending_replies())
        await asyncio.sleep(0.5)  # a late duplicate would show up now
        replies.update(r.text for r in alice.pending_replies())
        missing = [t for t in texts if replies[t[::-1]] == 0]
        doubled = [t for t in texts if replies[t[::-1]] > 1]
        print(
            f"\nilink SIGKILL: sent 50, handled {len(counts)} ({len(again)} run again), "
            f"replies lost {len(missing)} (in doubt, reported: {len(doubt)}), "
            f"duplicated {len(doubled)}"
        )
        assert doubled == [], doubled
        assert len(missing) <= len(doubt), (missing, doubt)  # none lost without a word
        assert set(replies) <= {t[::-1] for t in texts}


async def test_session_expiry_logs_out_with_a_reason_shows_a_new_qr_and_logs_in_again():
    events: list[BotEvent] = []
    async with mock_wechat(Reverse(), puppet="ilink") as wx:
        wx.server.add_event_listener(events.append)
        bot = wx.bot()
        wx.sim.expire_session()
        new_qr = await wx.sim.wait_qr(timeout=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            names = [e.name for e in events]
            if "logout" in names and "scan" in names[names.index("logout") :]:
                break
            await asyncio.sleep(0.1)
        logout = next(e for e in events if e.name == "logout")
        assert "expired" in str(logout.payload).lower(), logout.payload
        scan = next(e for e in events[events.index(logout) :] if e.name == "scan")
        assert scan.payload.get("qrcode") == new_qr.img_content
        wx.sim.scan(bot.owner, new_qr.qrcode)
        wx.sim.confirm(new_qr.qrcode)
        deadline = time.monotonic() + 30
        while not [e for e in events if e.name == "login"] and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert [e for e in events if e.name == "login"], "no login after the new scan"
        alice = await wx.contact("Alice")
        await alice.say("back?")
        assert (await alice.next_reply(timeout=15)).text == "?kcab"


async def test_a_failing_service_backs_off_and_reports_errors_rate_limited():
    events: list[BotEvent] = []
    # the delays of a real account (1 s doubling to 30 s, a 35 s long poll) scaled down
    # so the test takes seconds; the shape of the backoff is the same
    fast = {"retry_delay_ms": 250, "retry_delay_max_ms": 1_000, "long_poll_timeout_ms": 2_000}
    async with mock_wechat(Reverse(), puppet="ilink", puppet_options=fast) as wx:
        wx.server.add_event_listener(events.append)
        wx.sim.reset_counts()
        wx.sim.add_fault("getupdates", "http_error", count=1000, status=500)
        await asyncio.sleep(5)
        polls = wx.sim.request_count("getupdates")
        errors = [e for e in events if e.name == "error"]
        print(f"\n5 s of HTTP 500: {polls} polls, {len(errors)} error events")
        # capped at 1 s with jitter in its upper half: at most ~11 polls in 5 s; a tight
        # loop would make hundreds
        assert polls <= 14, "the puppet retried in a tight loop"
        assert len(errors) <= 3, "an error event per retry"
        assert wx.server.bots == ["mock-bot"]  # the bridge stays up
        wx.sim.clear_faults()
        wx.sim.add_fault("getupdates", "hang", count=1)
        alice = await wx.contact("Alice")
        await alice.say("still there?")
        assert (await alice.next_reply(timeout=20)).text == "?ereht llits"


async def test_typing_shows_while_the_robot_works():
    class Slow(RobotBase):
        async def on_message(self, msg: Message) -> Any:
            async with msg.typing():
                await asyncio.sleep(0.2)
            return "done"

    async with mock_wechat(Slow(), puppet="ilink") as wx:
        alice = await wx.contact("Alice")
        await alice.say("think hard")
        assert (await alice.next_reply(timeout=10)).text == "done"
        assert [e.status for e in wx.sim.typing_events(alice.user)] == [1, 2]


async def test_qr_login_through_an_expired_code_and_a_redirect():
    sim = ILinkSimulator()
    sim.configure(redirect_on_scan=True)
    server = SweetSocketServer(
        robot=Reverse(), config=Config(), token=new_token(), port=0, rate_limiter=None
    )
    scans: list[dict[str, Any]] = []
    logins: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    server.add_event_listener(
        lambda e: (
            scans.append(e.payload)
            if e.name == "scan"
            else logins.put_nowait(e.payload)
            if e.name == "login"
            else None
        )
    )
    async with sim:
        await server.start(host="127.0.0.1", port=0)
        node = NodeClient(
            {
                "server": {"token": server.token},
                "client": {"url": server.url, "bot": "b"},
                "puppet": {
                    "name": "ilink",
                    "options": {"base_url": sim.base_url, "cdn_base_url": sim.cdn_base_url},
                },
            }
        )
        try:
            await node.start()
            first = await sim.wait_qr(timeout=30)
            sim.set_qr_state("expired", first.qrcode)
            second = await sim.wait_qr(timeout=30, after=first)
            assert second.qrcode != first.qrcode
            owner = sim.create_user("owner")
            sim.scan(owner, second.qrcode)
            sim.confirm(second.qrcode)
            user = await asyncio.wait_for(logins.get(), 30)
            assert user.get("id")
            assert sim.host_counts["redirect:get_qrcode_status"] >= 1  # followed the redirect
            urls = [s.get("qrcode") for s in scans]
            assert first.img_content in urls and second.img_content in urls, scans
        finally:
            await node.stop()
            await server.stop()


async def test_hostile_answers_are_logged_per_message_and_nothing_valid_is_lost():
    robot = Reverse()
    async with mock_wechat(robot, puppet="ilink", timeout=90) as wx:
        alice = await wx.contact("Alice")
        node = wx.bot().node
        assert node is not None
        await alice.say("before")
        assert (await alice.next_reply(timeout=10)).text == "erofeb"
        for kind in ("wrong_types", "missing_fields", "bad_media_key", "garbage_media_key"):
            alice.user.send_hostile(kind)
        alice.user.send_hostile("many_items")  # 10,000 text items in one message
        wx.sim.add_fault("getupdates", "huge_cursor")  # a 10 MB get_updates_buf
        await alice.say("after")
        replies: list[str] = []
        deadline = time.monotonic() + 60
        while "retfa" not in replies and time.monotonic() < deadline:
            replies += [r.text for r in alice.pending_replies()]
            await asyncio.sleep(0.2)
        assert "retfa" in replies, f"the loop stopped; the client log ends with:\n{node.log_tail()}"
        # the 10,000 items were one message, answered once within the budget, not 10,000 times
        assert robot.handled.count("after") == 1 and len(robot.handled) < 20
        log = node.log_tail(200)
        assert "media" in log.lower() or "decrypt" in log.lower(), log  # the bad keys were named
        assert wx.server.bots == ["mock-bot"]
