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


# --- media ---------------------------------------------------------------------------------


def test_aes_ecb_and_the_three_key_forms() -> None:
    key = os.urandom(16)
    for size in (0, 1, 15, 16, 17, 1000):
        data = os.urandom(size)
        ciphertext = encrypt(data, key)
        assert len(ciphertext) == padded_size(size) and decrypt(ciphertext, key) == data
    hex_form = present_key(key, "hex")
    raw_form = present_key(key, "base64_raw")
    hex64_form = present_key(key, "base64_hex")
    assert len(hex_form) == 32 and base64.b64decode(raw_form) == key
    assert base64.b64decode(hex64_form).decode() == key.hex()
    assert {parse_key(hex_form), parse_key(raw_form), parse_key(hex64_form)} == {key}
    for bad in ("", "zz", base64.b64encode(b"short").decode()):
        with pytest.raises(MediaKeyError):
            parse_key(bad)
    with pytest.raises(MediaKeyError, match="whole number of blocks"):
        decrypt(b"x" * 15, key)


async def test_a_5_mb_file_round_trips_both_ways(
    client: Client, sim: ILinkSimulator, alice: WeChatUser
) -> None:
    data = os.urandom(5 * 1024 * 1024)
    alice.send_file(data, "big.bin")
    msg, _ = await first_message(client)
    item = msg["item_list"][0]["file_item"]
    assert item["file_name"] == "big.bin" and item["len"] == str(len(data))
    assert item["md5"] == hashlib.md5(data).hexdigest()
    ciphertext = await client.download(item["media"])
    assert decrypt(ciphertext, parse_key(item["media"]["aes_key"])) == data

    param, key = await client.upload(alice.user_id, data, media_type=3)
    media = {
        "encrypt_query_param": param,
        "aes_key": present_key(key, "base64_hex"),
        "encrypt_type": 1,
    }
    file_item = {
        "type": 4,
        "file_item": {"media": media, "file_name": "back.bin", "len": str(len(data))},
    }
    assert await client.send(alice.user_id, msg["context_token"], [file_item]) == {}
    [sent] = alice.sent()
    [got] = sent.items
    assert got.kind == "file" and got.file_name == "back.bin" and got.error is None
    assert got.data == data


@pytest.mark.parametrize("kind", ["image", "voice", "file", "video"])
@pytest.mark.parametrize("key_form", ["auto", "hex", "base64_raw", "base64_hex"])
async def test_media_to_the_bot_in_every_key_form(
    client: Client, alice: WeChatUser, kind: str, key_form: str
) -> None:
    data = os.urandom(3000)
    if kind == "image":
        alice.send_image(data, key_form=key_form)
    elif kind == "voice":
        alice.send_voice(data, transcript="hello there", playtime_ms=2500, key_form=key_form)
    elif kind == "file":
        alice.send_file(data, "a.pdf", key_form=key_form)
    else:
        alice.send_video(data, key_form=key_form)
    msg, _ = await first_message(client)
    item = msg["item_list"][0]
    sub = item[f"{kind}_item"]
    assert item["type"] == {"image": 2, "voice": 3, "file": 4, "video": 5}[kind]
    media = sub["media"]
    assert media["encrypt_type"] == 1 and media["full_url"].startswith(client.sim.cdn_base_url)
    key_text = sub["aeskey"] if kind == "image" and "aeskey" in sub else media["aes_key"]
    if key_form == "hex":
        assert len(key_text) == 32
    elif key_form == "base64_raw":
        assert len(base64.b64decode(key_text)) == 16
    elif key_form == "base64_hex":
        assert len(base64.b64decode(key_text)) == 32
    assert decrypt(await client.download(media), parse_key(key_text)) == data
    by_param = {"encrypt_query_param": media["encrypt_query_param"]}
    assert decrypt(await client.download(by_param), parse_key(key_text)) == data
    if kind == "voice":
        assert sub["text"] == "hello there" and sub["playtime"] == 2500 and sub["encode_type"] == 6


@pytest.mark.parametrize("key_form", ["hex", "base64_raw", "base64_hex"])
async def test_the_bot_can_send_an_image_with_any_key_form(
    client: Client, alice: WeChatUser, key_form: str
) -> None:
    msg, _ = await first_message_after(client, alice, "send a picture")
    data = os.urandom(777)
    param, key = await client.upload(alice.user_id, data, media_type=1)
    image: JSON = {
        "media": {"encrypt_query_param": param, "encrypt_type": 1},
        "mid_size": padded_size(777),
    }
    if key_form == "hex":
        image["aeskey"] = key.hex()
    else:
        image["media"]["aes_key"] = present_key(key, key_form)  # type: ignore[arg-type]
    assert (
        await client.send(alice.user_id, msg["context_token"], [{"type": 2, "image_item": image}])
        == {}
    )
    assert alice.sent()[0].items[0].data == data


async def test_a_sent_media_key_that_does_not_decrypt_is_recorded(
    client: Client, alice: WeChatUser
) -> None:
    msg, _ = await first_message_after(client, alice, "hi")
    param, _key = await client.upload(alice.user_id, b"payload", media_type=3)
    media = {"encrypt_query_param": param, "aes_key": present_key(os.urandom(16), "base64_hex")}
    item = {"type": 4, "file_item": {"media": media, "file_name": "x", "len": "7"}}
    assert await client.send(alice.user_id, msg["context_token"], [item]) == {}
    [got] = alice.sent()[0].items
    assert got.data is None and got.error and "decrypt" in got.error


async def test_upload_checks_sizes_key_and_md5(
    client: Client, sim: ILinkSimulator, alice: WeChatUser
) -> None:
    data = b"hello world"
    key = os.urandom(16)
    body = {
        "filekey": "fk1",
        "media_type": 3,
        "to_user_id": alice.user_id,
        "rawsize": len(data),
        "rawfilemd5": hashlib.md5(data).hexdigest(),
        "filesize": len(data),  # not the padded size
        "no_need_thumb": True,
        "aeskey": key.hex(),
    }
    bad = await client.call("getuploadurl", body)
    assert bad["ret"] == -1 and "filesize" in bad["errmsg"]
    body["filesize"] = padded_size(len(data))
    good = await client.call("getuploadurl", body)
    assert set(good) == {"upload_param", "upload_full_url"}
    wrong_key = await client.session.post(
        good["upload_full_url"], data=encrypt(data, os.urandom(16))
    )
    assert wrong_key.status == 400 and "decrypt" in wrong_key.headers["x-error-message"]
    built = f"{sim.cdn_base_url}/upload?encrypted_query_param={good['upload_param']}&filekey=fk1"
    ok = await client.session.post(built, data=encrypt(data, key))
    assert ok.status == 200 and ok.headers["x-encrypted-param"]
    again = await client.session.post(built, data=encrypt(data, key))
    assert again.status == 400  # an upload target is good once
    missing = await client.session.get(f"{sim.cdn_base_url}/download?encrypted_query_param=nope")
    assert missing.status == 404
    sim.configure(upload_url_style="param")
    assert set(await client.call("getuploadurl", body)) == {"upload_param"}


# --- session expiry ------------------------------------------------------------------------


async def test_session_expiry_answers_minus_14_until_a_new_login(
    client: Client, sim: ILinkSimulator, http: aiohttp.ClientSession, alice: WeChatUser
) -> None:
    msg, buf = await first_message_after(client, alice, "hi")
    sim.configure(updates_hold_s=5.0)
    held = asyncio.create_task(client.updates(buf))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    sim.expire_session()
    expired = {"errcode": -14, "errmsg": "session timeout"}
    assert await held == expired and time.monotonic() - started < 2.0
    assert await client.send_text(alice.user_id, msg["context_token"], "x") == expired
    assert await client.call("getconfig", {"ilink_user_id": alice.user_id}) == expired
    assert await client.call("msg/notifystop") == expired
    sim.configure(updates_hold_s=0.3)
    fresh = Client(http, sim)
    await fresh.login(alice)
    assert (await fresh.updates())["ret"] == 0
    assert await client.updates() == expired  # the old token stays dead


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ("ret", {"ret": -14, "errmsg": "session timeout"}),
        ("both", {"ret": -14, "errcode": -14, "errmsg": "session timeout"}),
    ],
)
async def test_expired_answer_shapes(
    client: Client, sim: ILinkSimulator, shape: str, expected: JSON
) -> None:
    sim.configure(expired_shape=shape)
    sim.expire_session()
    assert await client.updates() == expected


# --- headers and base_info -----------------------------------------------------------------


async def test_headers_and_base_info_are_checked(client: Client, sim: ILinkSimulator) -> None:
    headers = client.headers()
    del headers["X-WECHAT-UIN"]
    resp = await client.raw(
        "getupdates", {"get_updates_buf": "", "base_info": BASE_INFO}, headers=headers
    )
    answer = json.loads(await resp.text())
    assert (
        resp.status == 200 and answer["ret"] == -1 and "X-WECHAT-UIN is missing" in answer["errmsg"]
    )
    headers = client.headers()
    headers["X-WECHAT-UIN"] = base64.b64encode(b"not-a-number").decode()
    answer = json.loads(
        await (await client.raw("getupdates", {"base_info": BASE_INFO}, headers=headers)).text()
    )
    assert "uint32" in answer["errmsg"]
    headers = client.headers()
    headers["AuthorizationType"] = "bearer"
    answer = json.loads(
        await (await client.raw("getupdates", {"base_info": BASE_INFO}, headers=headers)).text()
    )
    assert "AuthorizationType" in answer["errmsg"]
    no_info = json.loads(await (await client.raw("getupdates", {"get_updates_buf": ""})).text())
    assert no_info["ret"] == -1 and "base_info" in no_info["errmsg"]
    assert client.token and all(client.token not in v for v in sim.violations)
    assert client.token not in no_info["errmsg"]
    sim.configure(require_base_info=False)
    assert (
        json.loads(await (await client.raw("getupdates", {"get_updates_buf": ""})).text())["ret"]
        == 0
    )
    sim.configure(strict=False)
    headers = client.headers()
    del headers["X-WECHAT-UIN"]
    relaxed = await client.raw("getupdates", {"get_updates_buf": ""}, headers=headers)
    assert json.loads(await relaxed.text())["ret"] == 0
    headers = client.headers()
    del headers["Authorization"]
    unauthenticated = await client.raw("getupdates", {"base_info": BASE_INFO}, headers=headers)
    assert json.loads(await unauthenticated.text()) == {"errcode": -14, "errmsg": "session timeout"}


# --- typing and stop -----------------------------------------------------------------------


async def test_typing_ticket_and_states(
    client: Client, sim: ILinkSimulator, alice: WeChatUser
) -> None:
    msg, _ = await first_message_after(client, alice, "think hard")
    config = await client.call(
        "getconfig", {"ilink_user_id": alice.user_id, "context_token": msg["context_token"]}
    )
    assert config["ret"] == 0 and base64.b64decode(config["typing_ticket"])
    ticket = config["typing_ticket"]
    for status in (1, 2):
        body = {"ilink_user_id": alice.user_id, "typing_ticket": ticket, "status": status}
        assert await client.call("sendtyping", body) == {"ret": 0}
        assert sim.is_typing(alice) is (status == 1)
    assert [e.status for e in alice.typing()] == [1, 2]
    wrong = await client.call(
        "sendtyping", {"ilink_user_id": alice.user_id, "typing_ticket": "x", "status": 1}
    )
    assert wrong["ret"] == -1
    unknown = await client.call("getconfig", {"ilink_user_id": "nobody@im.wechat"})
    assert unknown["ret"] == -1 and "unknown ilink_user_id" in unknown["errmsg"]


async def test_stop_notification_is_recorded(client: Client, sim: ILinkSimulator) -> None:
    assert await client.call("msg/notifystart") == {"ret": 0}
    assert await client.call("msg/notifystop") == {"ret": 0}
    assert [n["kind"] for n in sim.notifications] == ["start", "stop"]
    assert sim.request_count("msg/notifystop") == 1


# --- faults --------------------------------------------------------------------------------


async def test_http_errors_then_normal_answers(
    client: Client, sim: ILinkSimulator, alice: WeChatUser
) -> None:
    sim.add_fault("getupdates", "http_error", count=2, status=500)
    alice.send_text("after the storm")
    for _ in range(2):
        resp = await client.raw("getupdates", {"get_updates_buf": "", "base_info": BASE_INFO})
        assert resp.status == 500
    msg, _ = await first_message(client)
    assert msg["item_list"][0]["text_item"]["text"] == "after the storm"
    assert sim.request_count("getupdates") == 3 and sim.faults == []


async def test_a_hang_lasts_until_the_client_gives_up(client: Client, sim: ILinkSimulator) -> None:
    sim.add_fault("sendmessage", "hang")
    with pytest.raises(TimeoutError):
        await client.raw("sendmessage", {"base_info": BASE_INFO}, timeout=0.5)
    sim.add_fault("getconfig", "delay", seconds=0.3)
    started = time.monotonic()
    assert (await client.call("getconfig", {"ilink_user_id": "x"}))["ret"] == -1
    assert time.monotonic() - started >= 0.25


async def test_stop_ends_hangs_and_long_polls_at_once(http: aiohttp.ClientSession) -> None:
    simulator = ILinkSimulator(updates_hold_s=30.0)
    await simulator.start()
    user = simulator.create_user()
    c = Client(http, simulator)
    await c.login(user)
    simulator.add_fault("getconfig", "hang")
    held = [
        asyncio.create_task(c.updates()),
        asyncio.create_task(c.raw("getconfig", {"base_info": BASE_INFO})),
    ]
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await simulator.stop()
    assert time.monotonic() - started < 3.0
    await asyncio.wait(held, timeout=3)
    assert all(task.done() for task in held)
    for task in held:
        if not task.cancelled():
            task.exception()  # an error or a 504 answer; either way nothing is left hanging


@pytest.mark.parametrize(
    "kind", ["not_json", "truncated_json", "empty_body", "missing_fields", "wrong_types"]
)
async def test_malformed_answers(
    client: Client, sim: ILinkSimulator, alice: WeChatUser, kind: str
) -> None:
    alice.send_text("valid")
    sim.add_fault("getupdates", kind)
    resp = await client.raw("getupdates", {"get_updates_buf": "", "base_info": BASE_INFO})
    text = await resp.text()
    assert resp.status == 200
    if kind == "not_json":
        assert resp.content_type == "text/html" and text.startswith("<html>")
    elif kind == "empty_body":
        assert text == ""
    elif kind == "truncated_json":
        with pytest.raises(ValueError):
            json.loads(text)
    elif kind == "missing_fields":
        assert json.loads(text) == {"ret": 0}
    else:
        wrong = json.loads(text)
        assert isinstance(wrong["ret"], str) and isinstance(wrong["msgs"], str)
        assert isinstance(wrong["get_updates_buf"], int)
    msg, _ = await first_message(client)  # nothing valid was lost
    assert msg["item_list"][0]["text_item"]["text"] == "valid"


async def test_a_10_mb_cursor_keeps_the_messages_pending(
    client: Client, sim: ILinkSimulator, alice: WeChatUser
) -> None:
    start = (await client.updates())["get_updates_buf"]
    alice.send_text("keep me")
    sim.add_fault("getupdates", "huge_cursor")
    huge = await client.updates(start)
    assert len(huge["get_updates_buf"]) == 10 * 1024 * 1024 and huge["msgs"]
    msg, _ = await first_message(client, start)
    assert msg["item_list"][0]["text_item"]["text"] == "keep me"
    resp = await client.raw(
        "getupdates", {"get_updates_buf": huge["get_updates_buf"], "base_info": BASE_INFO}
    )
    assert resp.status == 413  # sending it back is refused, not swallowed
    with pytest.raises(SimulatorError, match="getupdates only"):
        sim.add_fault("sendmessage", "huge_cursor")


async def test_hostile_messages_and_the_valid_ones_around_them(
    client: Client, sim: ILinkSimulator, alice: WeChatUser
) -> None:
    alice.send_text("before")
    for kind in (
        "many_items",
        "bad_media_key",
        "garbage_media_key",
        "wrong_types",
        "missing_fields",
    ):
        alice.send_hostile(kind)
    alice.send_text("after")
    msgs = (await client.updates())["msgs"]
    assert len(msgs) == 7
    assert msgs[0]["item_list"][0]["text_item"]["text"] == "before"
    assert len(msgs[1]["item_list"]) == 10_000
    image = msgs[2]["item_list"][0]["image_item"]
    ciphertext = await client.download(image["media"])
    with pytest.raises(MediaKeyError):
        decrypt(ciphertext, parse_key(image["media"]["aes_key"]))
    with pytest.raises(MediaKeyError):
        parse_key(msgs[3]["item_list"][0]["file_item"]["media"]["aes_key"])
    assert msgs[4]["message_id"] == "not-a-number" and isinstance(msgs[4]["item_list"], dict)
    assert set(msgs[5]) == {"seq"}
    assert msgs[6]["item_list"][0]["text_item"]["text"] == "after"
    with pytest.raises(SimulatorError, match="unknown hostile kind"):
        alice.send_hostile("nice")


async def test_cdn_faults(client: Client, sim: ILinkSimulator, alice: WeChatUser) -> None:
    alice.send_file(b"abc" * 100, "f.txt")
    msg, _ = await first_message(client)
    media = msg["item_list"][0]["file_item"]["media"]
    sim.add_fault("cdn/download", "http_error", status=503)
    assert (await client.session.get(media["full_url"])).status == 503
    sim.add_fault("cdn/download", "wrong_types")
    with pytest.raises(MediaKeyError):
        decrypt(await client.download(media), parse_key(media["aes_key"]))
    assert decrypt(await client.download(media), parse_key(media["aes_key"])) == b"abc" * 100
    sim.add_fault("cdn/upload", "missing_fields")
    with pytest.raises(KeyError):
        await client.upload(alice.user_id, b"data", media_type=3)
    with pytest.raises(SimulatorError, match="unknown endpoint"):
        sim.add_fault("nowhere", "hang")


# --- the control API over HTTP ---------------------------------------------------------------


class Control:
    def __init__(self, http: aiohttp.ClientSession, url: str, token: str | None) -> None:
        self.http, self.url, self.token = http, url, token

    async def __call__(
        self, method: str, path: str, body: JSON | None = None, **query: Any
    ) -> tuple[int, JSON]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        resp = await self.http.request(
            method, f"{self.url}/{path}", json=body, params=query or None, headers=headers
        )
        return resp.status, await resp.json()


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "info"), ("POST", "users"), ("POST", "session/expire"), ("GET", "sent")],
)
async def test_control_api_needs_the_control_token(
    sim: ILinkSimulator, http: aiohttp.ClientSession, method: str, path: str
) -> None:
    for token in (None, "wrong", sim.control_token + "x"):
        status, answer = await Control(http, sim.control_url, token)(method, path, {})
        assert status == 401 and "control token" in answer["error"]
    assert sim.users == {}


async def test_control_api_drives_a_whole_conversation(
    sim: ILinkSimulator, http: aiohttp.ClientSession
) -> None:
    ctl = Control(http, sim.control_url, sim.control_token)
    status, info = await ctl("GET", "info")
    assert (
        status == 200
        and info["base_url"] == sim.base_url
        and info["cdn_base_url"] == sim.cdn_base_url
    )
    _, created = await ctl("POST", "users", {"name": "Carol"})
    carol = created["user"]["user_id"]
    c = Client(http, sim)
    qr = await c.fetch_qr()
    _, waited = await ctl("POST", "qr/wait", {"timeout": 2})
    assert waited["qr"]["qrcode"] == qr["qrcode"] and waited["qr"]["status"] == "wait"
    _, scanned = await ctl("POST", "qr/scan", {"user_id": carol})
    assert scanned["qr"]["status"] == "scaned"
    _, confirmed = await ctl("POST", "qr/confirm", {})
    login = await c.poll(qr["qrcode"])
    assert (
        login["status"] == "confirmed" and login["ilink_bot_id"] == confirmed["account"]["bot_id"]
    )
    c.token = login["bot_token"]

    _, sent_text = await ctl(
        "POST", "messages", {"user_id": carol, "kind": "text", "text": "hi bot"}
    )
    picture = os.urandom(1234)
    _, sent_image = await ctl(
        "POST",
        "messages",
        {"user_id": carol, "kind": "image", "data_b64": base64.b64encode(picture).decode()},
    )
    _, quoted = await ctl(
        "POST",
        "messages",
        {
            "user_id": carol,
            "kind": "quote",
            "text": "re",
            "quote_message_id": sent_text["message"]["message_id"],
        },
    )
    answer = await c.updates()
    ids = [str(m["message_id"]) for m in answer["msgs"]]
    assert ids == [
        sent_text["message"]["message_id"],
        sent_image["message"]["message_id"],
        quoted["message"]["message_id"],
    ]
    assert isinstance(sent_text["message"]["message_id"], str)
    image = answer["msgs"][1]["item_list"][0]["image_item"]
    assert decrypt(await c.download(image["media"]), parse_key(image["aeskey"])) == picture

    ctx = answer["msgs"][0]["context_token"]
    config = await c.call("getconfig", {"ilink_user_id": carol, "context_token": ctx})
    await c.call(
        "sendtyping",
        {"ilink_user_id": carol, "typing_ticket": config["typing_ticket"], "status": 1},
    )
    _, typing = await ctl("GET", "typing", user_id=carol)
    assert typing["typing"] is True and typing["events"][0]["status"] == 1
    reply = asyncio.create_task(ctl("GET", "sent", user_id=carol, min="2", timeout="5"))
    await c.send_text(carol, ctx, "hello Carol")
    param, key = await c.upload(carol, b"file body", media_type=3)
    media = {"encrypt_query_param": param, "aes_key": present_key(key, "base64_hex")}
    await c.send(
        carol, ctx, [{"type": 4, "file_item": {"media": media, "file_name": "r.txt", "len": "9"}}]
    )
    status, sent = await reply
    assert status == 200 and [m["text"] for m in sent["sent"]] == ["hello Carol", ""]
    file_item = sent["sent"][1]["items"][0]
    assert (
        base64.b64decode(file_item["data_b64"]) == b"file body"
        and file_item["file_name"] == "r.txt"
    )

    _, budget = await ctl("POST", "budget", {"per_message": 2})
    assert budget["budget"]["per_message"] == 2
    assert (await c.send_text(carol, ctx, "third"))["ret"] == -2
    _, refused = await ctl("GET", "refused", user_id=carol)
    assert refused["refused"][-1]["reason"] == "exhausted"

    _, faults = await ctl(
        "POST", "faults", {"endpoint": "getupdates", "kind": "http_error", "status": 502}
    )
    assert faults["faults"][0]["kind"] == "http_error"
    assert (await c.raw("getupdates", {"base_info": BASE_INFO})).status == 502
    _, counts = await ctl("GET", "requests")
    assert counts["counts"]["getupdates"] == 2 and counts["by_host"]["main:getupdates"] == 2
    await ctl("POST", "requests/reset")
    _, counts = await ctl("GET", "requests")
    assert counts["counts"] == {}

    _, before = await ctl("GET", "clock")
    _, after = await ctl("POST", "clock/advance", {"seconds": 25 * HOUR})
    assert after["now_ms"] - before["now_ms"] >= 25 * HOUR * 1000
    await ctl("POST", "budget", {"per_message": 10})
    assert (await c.send_text(carol, ctx, "a day later"))["ret"] == -2
    _, refused = await ctl("GET", "refused")
    assert refused["refused"][-1]["reason"] == "window_closed"

    _, expired = await ctl("POST", "session/expire", {})
    assert expired["account"]["logged_in"] is False
    assert await c.updates() == {"errcode": -14, "errmsg": "session timeout"}
    _, accounts = await ctl("GET", "accounts")
    assert accounts["accounts"][0]["owner_id"] == carol


async def test_control_api_reports_bad_input_clearly(
    sim: ILinkSimulator, http: aiohttp.ClientSession
) -> None:
    ctl = Control(http, sim.control_url, sim.control_token)
    status, answer = await ctl(
        "POST", "messages", {"user_id": "nobody", "kind": "text", "text": "x"}
    )
    assert status == 400 and "no simulated WeChat user" in answer["error"]
    status, answer = await ctl("POST", "qr/scan", {"user_id": "x"})
    assert status == 400
    status, answer = await ctl("POST", "settings", {"updates_hold_s": "long"})
    assert status == 400 and "updates_hold_s" in answer["error"]
    status, answer = await ctl("POST", "settings", {"no_such": 1})
    assert status == 400 and "unknown setting" in answer["error"]
    status, answer = await ctl("POST", "faults", {"endpoint": "getupdates", "kind": "explode"})
    assert status == 400 and "unknown fault" in answer["error"]
    status, answer = await ctl("POST", "qr/wait", {"timeout": 0.2})
    assert status == 408 and "get_bot_qrcode" in answer["error"]
    _, user = await ctl("POST", "users", {})
    status, answer = await ctl(
        "POST", "messages", {"user_id": user["user"]["user_id"], "kind": "image", "data_b64": "%%%"}
    )
    assert status == 400 and "data_b64 is not valid base64" in answer["error"]
    status, answer = await ctl("GET", "sent", user_id="u", min="1", timeout="0.2")
    assert status == 408


async def test_requests_count_proves_nothing_reached_the_simulator(
    client: Client, sim: ILinkSimulator
) -> None:
    sim.reset_counts()
    assert sim.request_count() == 0 and sim.request_count("sendmessage") == 0
    await client.call("getconfig", {"ilink_user_id": "x"})
    assert sim.request_count() == 1 and sim.request_count("sendmessage") == 0


async def test_standalone_prints_one_json_line_and_serves(http: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "MetaPuppet.testing.ilink",
        "--updates-hold",
        "0.2",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        assert set(line) == {
            "base_url",
            "cdn_base_url",
            "control_url",
            "control_token",
            "redirect_base_url",
            "redirect_host",
            "pid",
        }
        assert line["base_url"].startswith("http://127.0.0.1:") and line["pid"] == proc.pid
        ctl = Control(http, line["control_url"], line["control_token"])
        status, info = await ctl("GET", "info")
        assert status == 200 and info["cdn_base_url"] == line["cdn_base_url"]
        _, user = await ctl("POST", "users", {"name": "Dave"})
        resp = await http.get(f"{line['base_url']}/ilink/bot/get_bot_qrcode?bot_type=3")
        qr = await resp.json()
        await ctl("POST", "qr/scan", {"user_id": user["user"]["user_id"]})
        await ctl("POST", "qr/confirm", {})
        resp = await http.get(
            f"{line['base_url']}/ilink/bot/get_qrcode_status", params={"qrcode": qr["qrcode"]}
        )
        assert (await resp.json())["status"] == "confirmed"
        _, moved = await ctl("POST", "clock/advance", {"seconds": 60})
        assert moved["now_ms"] > time.time() * 1000 + 50_000
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
