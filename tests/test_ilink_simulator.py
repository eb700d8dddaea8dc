"""The iLink simulator over real HTTP on loopback: login states, long-polls and cursors, the send
budget, media through the CDN, session expiry, faults, the control API, standalone mode."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from MetaPuppet.testing.ilink import (
    BudgetRules,
    ILinkSimulator,
    ManualClock,
    MediaKeyError,
    SendBudget,
    SimulatorError,
    WeChatUser,
    decrypt,
    encrypt,
    padded_size,
    parse_key,
    present_key,
)
from tests.ilink_client import BASE_INFO, Client

JSON = dict[str, Any]
HOUR = 3600.0


@pytest.fixture
async def sim() -> AsyncIterator[ILinkSimulator]:
    async with ILinkSimulator(updates_hold_s=0.3, qr_hold_s=0.2) as simulator:
        yield simulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def alice(sim: ILinkSimulator) -> WeChatUser:
    return sim.create_user("Alice")


@pytest.fixture
async def client(sim: ILinkSimulator, http: aiohttp.ClientSession, alice: WeChatUser) -> Client:
    """A client logged in by Alice's scan."""
    c = Client(http, sim)
    await c.login(alice)
    return c


async def first_message(client: Client, buf: str = "") -> tuple[JSON, str]:
    answer = await client.updates(buf)
    assert answer["ret"] == 0 and answer["msgs"], answer
    return answer["msgs"][0], answer["get_updates_buf"]


# --- QR login ----------------------------------------------------------------------------


async def test_login_goes_wait_scaned_confirmed(
    sim: ILinkSimulator, http: aiohttp.ClientSession, alice: WeChatUser
) -> None:
    c = Client(http, sim)
    qr = await c.fetch_qr()
    assert len(qr["qrcode"]) == 32 and qr["qrcode_img_content"].startswith("https://")
    assert await c.poll(qr["qrcode"]) == {"status": "wait"}
    alice.scan()
    assert await c.poll(qr["qrcode"]) == {"status": "scaned"}
    account = sim.confirm()
    done = await c.poll(qr["qrcode"])
    assert done["status"] == "confirmed"
    assert done["ilink_bot_id"] == account.bot_id and done["ilink_bot_id"].endswith("@im.bot")
    assert done["ilink_user_id"] == alice.user_id and alice.user_id.endswith("@im.wechat")
    assert done["baseurl"] == sim.base_url and done["bot_token"] == account.token


async def test_qr_poll_holds_then_answers_wait(
    sim: ILinkSimulator, http: aiohttp.ClientSession
) -> None:
    sim.configure(qr_hold_s=0.5)
    c = Client(http, sim)
    qr = await c.fetch_qr()
    assert (await c.poll(qr["qrcode"]))["status"] == "wait"  # first answer: at once
    started = time.monotonic()
    assert await c.poll(qr["qrcode"]) == {"status": "wait"}
    assert time.monotonic() - started >= 0.45


async def test_qr_poll_answers_a_change_at_once(
    sim: ILinkSimulator, http: aiohttp.ClientSession, alice: WeChatUser
) -> None:
    sim.configure(qr_hold_s=5.0)
    c = Client(http, sim)
    qr = await c.fetch_qr()
    await c.poll(qr["qrcode"])
    poll = asyncio.create_task(c.poll(qr["qrcode"]))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    alice.scan()
    assert (await poll)["status"] == "scaned"
    assert time.monotonic() - started < 2.0


async def test_expired_qr_is_replaced_by_a_new_one(
    sim: ILinkSimulator, http: aiohttp.ClientSession, alice: WeChatUser
) -> None:
    c = Client(http, sim)
    old = await c.fetch_qr()
    sim.advance_clock(sim.settings.qr_ttl_s + 1)
    assert await c.poll(old["qrcode"]) == {"status": "expired"}
    with pytest.raises(SimulatorError, match="no open QR code"):
        alice.scan()
    new = await c.fetch_qr()
    alice.scan(new["qrcode"])
    sim.confirm()
    assert (await c.poll(new["qrcode"]))["status"] == "confirmed"
    assert await c.poll(old["qrcode"]) == {"status": "expired"}


async def test_scaned_but_redirect_continues_at_the_redirect_host(
    sim: ILinkSimulator, http: aiohttp.ClientSession, alice: WeChatUser
) -> None:
    sim.configure(redirect_on_scan=True)
    c = Client(http, sim)
    qr = await c.fetch_qr()
    alice.scan()
    moved = await c.poll(qr["qrcode"])
    assert moved == {"status": "scaned_but_redirect", "redirect_host": sim.redirect_host}
    assert sim.redirect_port and sim.redirect_host == f"127.0.0.1:{sim.redirect_port}"
    redirect = f"http://{moved['redirect_host']}"
    assert (await c.poll(qr["qrcode"], base=redirect))["status"] == "scaned"
    sim.confirm()
    assert (await c.poll(qr["qrcode"]))["status"] == "scaned_but_redirect"  # the old host stays put
    done = await c.poll(qr["qrcode"], base=redirect)
    assert done["status"] == "confirmed" and done["baseurl"] == redirect
    assert sim.host_counts["redirect:get_qrcode_status"] == 2
    c.token = done["bot_token"]
    alice.send_text("hi")
    assert (await c.updates(base=redirect))["msgs"][0]["item_list"][0]["text_item"]["text"] == "hi"


async def test_pairing_code_right_and_wrong(
    sim: ILinkSimulator, http: aiohttp.ClientSession, alice: WeChatUser
) -> None:
    sim.configure(verify_code="42", verify_attempts=3)
    c = Client(http, sim)
    qr = await c.fetch_qr()
    alice.scan()
    assert await c.poll(qr["qrcode"]) == {"status": "need_verifycode"}
    with pytest.raises(SimulatorError, match="pairing code"):
        sim.confirm()
    assert await c.poll(qr["qrcode"], verify_code="17") == {"status": "need_verifycode"}
    assert await c.poll(qr["qrcode"], verify_code="42") == {"status": "scaned"}
    sim.confirm()
    assert (await c.poll(qr["qrcode"]))["status"] == "confirmed"


async def test_too_many_wrong_codes_block_the_qr(
    sim: ILinkSimulator, http: aiohttp.ClientSession, alice: WeChatUser
) -> None:
    sim.configure(verify_code="42", verify_attempts=2)
    c = Client(http, sim)
    qr = await c.fetch_qr()
    alice.scan()
    await c.poll(qr["qrcode"])
    assert await c.poll(qr["qrcode"], verify_code="1") == {"status": "need_verifycode"}
    assert await c.poll(qr["qrcode"], verify_code="2") == {"status": "verify_code_blocked"}
    assert await c.poll(qr["qrcode"], verify_code="42") == {"status": "verify_code_blocked"}
    with pytest.raises(SimulatorError):
        sim.confirm(qr["qrcode"])


async def test_binded_redirect_when_the_saved_token_is_offered(
    client: Client, sim: ILinkSimulator, alice: WeChatUser
) -> None:
    qr = await client.fetch_qr(post=True, tokens=[client.token or ""])
    alice.scan(qr["qrcode"])
    assert await client.poll(qr["qrcode"]) == {"status": "binded_redirect"}
    alice.send_text("still here")
    assert (await client.updates())["msgs"]  # the saved token keeps working


async def test_a_new_login_of_the_same_user_kills_the_old_token(
    client: Client, sim: ILinkSimulator, http: aiohttp.ClientSession, alice: WeChatUser
) -> None:
    old = client.token
    bot_id = sim.account().bot_id
    second = Client(http, sim)
    status = await second.login(alice)
    assert status["ilink_bot_id"] == bot_id and status["bot_token"] != old
    assert await client.updates() == {"errcode": -14, "errmsg": "session timeout"}
    assert (await second.updates())["ret"] == 0


async def test_forced_states_and_bad_requests(
    sim: ILinkSimulator, http: aiohttp.ClientSession, alice: WeChatUser
) -> None:
    c = Client(http, sim)
    qr = await c.fetch_qr()
    with pytest.raises(SimulatorError, match="needs the user"):
        sim.set_qr_state("scaned")
    sim.set_qr_state("scaned_but_redirect", user=alice)
    assert (await c.poll(qr["qrcode"]))["status"] == "scaned_but_redirect"
    sim.set_qr_state("expired")
    assert (await c.poll(qr["qrcode"]))["status"] == "expired"
    with pytest.raises(SimulatorError, match="unknown QR status"):
        sim.set_qr_state("nope", qrcode=qr["qrcode"])
    assert await c.poll("f" * 32) == {"status": "expired"}
    resp = await http.get(f"{sim.base_url}/ilink/bot/get_bot_qrcode?bot_type=7")
    assert (await resp.json())["ret"] == -1 and "bot_type" in (await resp.json())["errmsg"]


# --- getupdates ----------------------------------------------------------------------------


async def test_getupdates_holds_until_a_message_arrives(
    client: Client, sim: ILinkSimulator, alice: WeChatUser
) -> None:
    sim.configure(updates_hold_s=5.0)
    poll = asyncio.create_task(client.updates())
    await asyncio.sleep(0.2)
    assert not poll.done()
    started = time.monotonic()
    sent = alice.send_text("wake up")
    answer = await poll
    assert time.monotonic() - started < 2.0
    [msg] = answer["msgs"]
    assert str(msg["message_id"]) == sent.message_id
    assert answer["longpolling_timeout_ms"] == 5000


async def test_getupdates_timeout_answers_empty_with_a_cursor(
    client: Client, sim: ILinkSimulator
) -> None:
    started = time.monotonic()
    answer = await client.updates()
    assert time.monotonic() - started >= 0.25
    assert answer["ret"] == 0 and answer["msgs"] == [] and answer["get_updates_buf"]
    assert answer["longpolling_timeout_ms"] == 300


async def test_cursors_neither_lose_nor_repeat_and_a_restart_resumes(
    client: Client, sim: ILinkSimulator, alice: WeChatUser
) -> None:
    sim.configure(max_batch=2)
    texts = [f"m{i}" for i in range(7)]
    for text in texts:
        alice.send_text(text)
    seen: list[str] = []
    buf = ""
    answer = await client.updates(buf)
    seen += [m["item_list"][0]["text_item"]["text"] for m in answer["msgs"]]
    buf = answer["get_updates_buf"]  # saved after handling: m0, m1
    await client.updates(buf)  # m2, m3 delivered, then the reader "crashes" before saving
    restarted = Client(client.session, sim)
    restarted.token = client.token
    while True:
        answer = await restarted.updates(buf)
        if not answer["msgs"]:
            break
        seen += [m["item_list"][0]["text_item"]["text"] for m in answer["msgs"]]
        buf = answer["get_updates_buf"]
    assert seen == texts
    alice.send_text("later")
    assert [
        m["item_list"][0]["text_item"]["text"] for m in (await restarted.updates(buf))["msgs"]
    ] == ["later"]


@pytest.mark.parametrize(
    ("mode", "expected"), [("unacked", ["b"]), ("all", ["a", "b"]), ("new", [])]
)
async def test_empty_cursor_modes(
    client: Client, sim: ILinkSimulator, alice: WeChatUser, mode: str, expected: list[str]
) -> None:
    sim.configure(empty_cursor=mode)
    start = (await client.updates(""))["get_updates_buf"]
    alice.send_text("a")
    _, buf = await first_message(client, start)
    await client.updates(buf)  # acknowledges "a"
    alice.send_text("b")
    answer = await client.updates("")
    assert [m["item_list"][0]["text_item"]["text"] for m in answer["msgs"]] == expected


async def test_a_foreign_cursor_counts_as_empty_and_is_recorded(
    client: Client, sim: ILinkSimulator, alice: WeChatUser
) -> None:
    alice.send_text("x")
    answer = await client.updates(base64.urlsafe_b64encode(b"v1|forged|0|0|abc").decode())
    assert answer["msgs"]
    assert any("get_updates_buf was not issued" in v for v in sim.violations)
    bad = await client.updates(12345)  # type: ignore[arg-type]
    assert bad["ret"] == -1 and "get_updates_buf must be a string" in bad["errmsg"]


async def test_message_shape_and_ids_above_2_to_the_53(
    client: Client, sim: ILinkSimulator, alice: WeChatUser
) -> None:
    first = alice.send_text("one")
    second = alice.send_text("two")
    answer = await client.updates()
    one, two = answer["msgs"]
    assert isinstance(one["message_id"], int) and one["message_id"] > 2**53
    assert two["message_id"] == one["message_id"] + 1
    assert float(one["message_id"]) == float(two["message_id"])  # the trap a double falls into
    assert (first.message_id, second.message_id) == (str(one["message_id"]), str(two["message_id"]))
    assert one["from_user_id"] == alice.user_id and one["to_user_id"] == sim.account().bot_id
    assert one["message_type"] == 1 and one["message_state"] == 2 and one["seq"] + 1 == two["seq"]
    assert (
        one["context_token"] == first.context_token and one["context_token"] != two["context_token"]
    )
    assert isinstance(one["create_time_ms"], int) and isinstance(one["session_id"], str)
    assert one["item_list"] == [
        {"type": 1, "create_time_ms": one["create_time_ms"], "text_item": {"text": "one"}}
    ]


async def test_small_ids_on_request(http: aiohttp.ClientSession) -> None:
    async with ILinkSimulator(updates_hold_s=0.2, big_message_ids=False) as small:
        user = small.create_user()
        c = Client(http, small)
        await c.login(user)
        user.send_text("x")
        [msg] = (await c.updates())["msgs"]
        assert msg["message_id"] < 2**53


async def test_quote_keeps_its_reference(client: Client, alice: WeChatUser) -> None:
    original = alice.send_text("what is 6 x 7?")
    alice.send_quote("and this?", original)
    _, quote = (await client.updates())["msgs"]
    item = quote["item_list"][0]
    assert item["text_item"]["text"] == "and this?"
    assert item["ref_msg"]["message_item"]["text_item"]["text"] == "what is 6 x 7?"
    assert item["ref_msg"]["svr_id"] == original.message_id and item["ref_msg"]["title"]


# --- context_token and the send budget ------------------------------------------------------


async def test_reply_is_recorded(client: Client, sim: ILinkSimulator, alice: WeChatUser) -> None:
    msg, _ = await first_message_after(client, alice, "hello")
    assert await client.send_text(alice.user_id, msg["context_token"], "olleh") == {}
    [sent] = alice.sent()
    assert sent.text == "olleh" and sent.context_token == msg["context_token"]
    assert sent.bot_id == sim.account().bot_id and sent.to_user_id == alice.user_id


async def first_message_after(client: Client, user: WeChatUser, text: str) -> tuple[JSON, str]:
    user.send_text(text)
    return await first_message(client)


@pytest.mark.parametrize("token", [None, "", "made-up-token"])
async def test_send_without_a_valid_token_is_refused(
    client: Client, sim: ILinkSimulator, alice: WeChatUser, token: str | None
) -> None:
    await first_message_after(client, alice, "hi")
    assert await client.send_text(alice.user_id, token, "x") == {"ret": -2, "errmsg": ""}
    assert alice.sent() == []
    assert sim.refused[-1].reason == ("unknown_token" if token else "missing_token")


async def test_a_token_is_good_only_for_its_user(
    client: Client, sim: ILinkSimulator, alice: WeChatUser
) -> None:
    bob = sim.create_user("Bob")
    msg, _ = await first_message_after(client, alice, "hi")
    assert (await client.send_text(bob.user_id, msg["context_token"], "x"))["ret"] == -2
    assert sim.refused[-1].reason == "wrong_user" and bob.sent() == []


async def test_missing_token_drop_answers_success_and_delivers_nothing(
    client: Client, sim: ILinkSimulator, alice: WeChatUser
) -> None:
    sim.set_budget(missing_token="drop")
    await first_message_after(client, alice, "hi")
    assert await client.send_text(alice.user_id, None, "lost") == {}
    assert alice.sent() == [] and sim.refused[-1].dropped


async def test_eleventh_send_is_refused_and_a_new_message_reopens(
    client: Client, sim: ILinkSimulator, alice: WeChatUser
) -> None:
    msg, buf = await first_message_after(client, alice, "one question")
    for i in range(10):
        assert await client.send_text(alice.user_id, msg["context_token"], f"r{i}") == {}
    assert await client.send_text(alice.user_id, msg["context_token"], "r10") == {
        "ret": -2,
        "errmsg": "",
    }
    assert len(alice.sent()) == 10 and sim.refused[-1].reason == "exhausted"
    alice.send_text("another")
    [fresh] = (await client.updates(buf))["msgs"]
    assert (await client.send_text(alice.user_id, fresh["context_token"], "again")) == {}
    assert (await client.send_text(alice.user_id, msg["context_token"], "old"))["ret"] == -2


async def test_the_window_closes_after_24_hours_and_reopens(
    client: Client, sim: ILinkSimulator, alice: WeChatUser
) -> None:
    msg, buf = await first_message_after(client, alice, "hi")
    sim.advance_clock(24 * HOUR - 1)
    assert await client.send_text(alice.user_id, msg["context_token"], "just in time") == {}
    sim.advance_clock(1)
    assert (await client.send_text(alice.user_id, msg["context_token"], "too late"))["ret"] == -2
    assert sim.refused[-1].reason == "window_closed"
    alice.send_text("back")
    [fresh] = (await client.updates(buf))["msgs"]
    assert await client.send_text(alice.user_id, fresh["context_token"], "welcome back") == {}
    assert [m.text for m in alice.sent()] == ["just in time", "welcome back"]


async def test_an_old_message_brings_an_already_closed_window(
    client: Client, sim: ILinkSimulator, alice: WeChatUser
) -> None:
    alice.send_text(
        "sent while the bot was down", create_time_ms=sim.now_ms() - int(25 * HOUR * 1000)
    )
    msg, _ = await first_message(client)
    assert (await client.send_text(alice.user_id, msg["context_token"], "late"))["ret"] == -2
    assert sim.refused[-1].reason == "window_closed"


async def test_budget_rules_are_configurable(
    client: Client, sim: ILinkSimulator, alice: WeChatUser
) -> None:
    sim.set_budget(per_message=2, window_s=60)
    sim.configure(send_ok_body="ret0")
    msg, _ = await first_message_after(client, alice, "hi")
    assert await client.send_text(alice.user_id, msg["context_token"], "1") == {"ret": 0}
    assert await client.send_text(alice.user_id, msg["context_token"], "2") == {"ret": 0}
    assert (await client.send_text(alice.user_id, msg["context_token"], "3"))["ret"] == -2
    with pytest.raises(ValueError, match="scope"):
        sim.set_budget(scope="room")


async def test_sendmessage_shape_errors_name_the_field(client: Client, alice: WeChatUser) -> None:
    msg, _ = await first_message_after(client, alice, "hi")
    empty = await client.send(alice.user_id, msg["context_token"], [])
    assert empty["ret"] == -1 and "item_list" in empty["errmsg"]
    bad = await client.send(alice.user_id, msg["context_token"], [{"type": 9}])
    assert bad["ret"] == -1 and "item_list[0].type" in bad["errmsg"]
    nomsg = await client.call("sendmessage", {"message": {}})
    assert nomsg["ret"] == -1 and "msg must be an object" in nomsg["errmsg"]
    assert alice.sent() == []


# --- the budget model, with an injected clock ----------------------------------------------


def test_budget_model_counts_per_token_and_closes_the_window() -> None:
    clock = ManualClock(1_000_000.0)
    budget = SendBudget(BudgetRules(per_message=3, window_s=100))
    now = int(clock() * 1000)
    budget.issue("t1", "bot", "u", now)
    assert budget.check("t1", "bot", "u", now).remaining == 3
    for left in (2, 1, 0):
        assert budget.consume("t1", "bot", "u", now).remaining == left
    assert budget.consume("t1", "bot", "u", now).reason == "exhausted"
    budget.issue("t2", "bot", "u", now)
    assert budget.consume("t2", "bot", "u", now).ok
    clock.advance(99.999)
    assert budget.check("t2", "bot", "u", int(clock() * 1000)).ok
    clock.advance(0.001)
    closed = budget.check("t2", "bot", "u", int(clock() * 1000))
    assert closed.reason == "window_closed" and closed.closes_at_ms == now + 100_000
    assert budget.check(None, "bot", "u", now).reason == "missing_token"
    assert budget.check("t1", "other-bot", "u", now).reason == "unknown_token"
    assert budget.check("t1", "bot", "v", now).reason == "wrong_user"
    assert budget.owner("t2") == ("bot", "u") and budget.owner("nope") is None


def test_budget_model_user_scope_shares_one_allowance() -> None:
    budget = SendBudget(BudgetRules(per_message=2, window_s=10, scope="user"))
    budget.issue("old", "bot", "u", 0)
    budget.issue("new", "bot", "u", 5_000)
    assert budget.consume("old", "bot", "u", 6_000).ok  # counts against the latest message
    assert budget.consume("new", "bot", "u", 6_000).ok
    assert budget.consume("old", "bot", "u", 6_000).reason == "exhausted"
    budget.issue("newer", "bot", "u", 7_000)
    assert budget.check("old", "bot", "u", 16_999).ok
    assert budget.check("old", "bot", "u", 17_000).reason == "window_closed"
    with pytest.raises(ValueError):
        BudgetRules(per_message=-1)


def test_manual_clock_only_moves_forward() -> None:
    clock = ManualClock(10.0)
    clock.advance(5)
    assert clock() == 15.0
    with pytest.raises(ValueError):
        clock.advance(-1)
