"""What the web side shows of a bot's channel: capabilities, puppet state and logouts in
``/api/bots``, send budgets, and the mock console's refusals (fake puppets, no Node)."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from MetaPuppet import Config, snippets
from MetaPuppet.protocol import Capabilities, SendBudget
from MetaPuppet.transport import FakePuppetLink

from .conftest import make_event, message_payload

MAIN = "unit-test-token-0123456789"
READER = "reader-token-0123456789abcdef"
RULES = SendBudget(user_first=True, per_user_message=3, window_s=3600)
ILINK = Capabilities("ilink", frozenset({"files", "typing"}), RULES)
MOCK = Capabilities("mock")


def config() -> Config:
    config = Config()
    config.raw["web"] = {"tokens": {READER: ["read"]}, "flush_ms": 5}
    return config


async def call(
    server: Any, method: str, path: str, token: str | None = MAIN, **kw: Any
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.request(method, server.url + path, headers=headers, **kw) as response:
            return response.status, await response.json()


def ilink_message(text: str, talker: str = "alice@im.wechat", bot: str = "ib") -> Any:
    payload = message_payload(text, talker=talker, timestamp=int(time.time() * 1000))
    payload["talker"] = {"id": talker, "name": talker.split("@")[0]}
    return make_event("message", payload, bot=bot)


@pytest.fixture
async def server(server_factory):
    return await server_factory(config=config(), rate_limiter=None)


async def test_bots_carry_their_channel_and_what_it_can_do(server):
    server.attach_puppet(FakePuppetLink("ib", capabilities=ILINK))
    server.attach_puppet(FakePuppetLink("mb", capabilities=MOCK))
    status, body = await call(server, "GET", "/api/bots")
    assert status == 200
    bots = {b["bot"]: b for b in body["bots"]}
    assert bots["ib"]["channel"] == "ilink"
    caps = bots["ib"]["capabilities"]
    assert caps["rooms"] is False and caps["friendships"] is False and caps["typing"] is True
    assert caps["send_budget"] == {"user_first": True, "per_user_message": 3, "window_s": 3600}
    assert bots["mb"]["channel"] == "mock" and bots["mb"]["capabilities"]["rooms"] is True


async def test_a_logout_with_a_reason_then_a_new_qr_code_asks_to_scan_again(server):
    server.attach_puppet(FakePuppetLink("ib", capabilities=ILINK))
    await server.handle_event(make_event("login", {"id": "me@im.bot", "name": "me"}, bot="ib"))
    status, body = await call(server, "GET", "/api/bots")
    assert body["bots"][0]["logged_in"] and body["bots"][0]["logout"] is None
    reason = "ilink session expired (errcode -14): scan the new QR code to log in again"
    await server.handle_event(
        make_event("logout", {"id": "me@im.bot", "name": "me", "reason": reason}, bot="ib")
    )
    qr = "https://liteapp.weixin.qq.com/q/new-code"
    await server.handle_event(
        make_event("scan", {"qrcode": qr, "status": 2, "statusName": "Waiting"}, bot="ib")
    )
    status, body = await call(server, "GET", "/api/bots")
    bot = body["bots"][0]
    assert not bot["logged_in"] and bot["logout"]["reason"] == reason
    assert bot["scan"]["qrcode"] == qr and bot["scan"]["qr_image"].startswith("data:image/svg")
    await server.handle_event(make_event("login", {"id": "me@im.bot", "name": "me"}, bot="ib"))
    status, body = await call(server, "GET", "/api/bots")
    assert body["bots"][0]["logout"] is None and body["bots"][0]["scan"] is None


async def test_the_puppet_state_from_the_heartbeat_reaches_the_bots_list(server):
    import socketio

    from MetaPuppet.web_client import connect

    client = socketio.AsyncClient(reconnection=False)
    await connect(server.url, MAIN, role="puppet", bot="wx", client=client, wait_timeout=5)
    try:
        puppet = {
            "state": "retrying",
            "message": "cannot reach WeChat: getaddrinfo ENOTFOUND login.wx.qq.com; "
            "retrying in 8 s",
            "retry_in_s": 8,
            "attempts": 3,
        }
        event = {
            "id": "hb-1",
            "bot": "wx",
            "name": "heartbeat",
            "payload": {"source": "client", "uptime_s": 3, "puppet": puppet},
            "ts": time.time() * 1000,
        }
        assert (await client.call("event", event, timeout=5))["ok"] is True
        status, body = await call(server, "GET", "/api/bots")
        [bot] = body["bots"]
        assert bot["puppet"] == puppet
    finally:
        await client.disconnect()


async def test_send_budgets_of_the_contacts_who_wrote(server):
    server.attach_puppet(FakePuppetLink("ib", capabilities=ILINK))
    status, body = await call(server, "GET", "/api/bots/ib/budget/alice%40im.wechat")
    assert status == 200 and body["channel"] == "ilink"
    assert body["budget"]["open"] is False and "not written" in body["budget"]["reason"]
    await server.handle_event(ilink_message("hello"))
    await server.say("alice@im.wechat", "hi!", bot="ib")
    status, body = await call(server, "GET", "/api/bots/ib/budget/alice%40im.wechat")
    assert body["contact"] == "alice@im.wechat"
    assert body["budget"]["open"] is True and body["budget"]["remaining"] == 2
    assert body["budget"]["closes_at"] == pytest.approx(time.time() + 3600, abs=30)

    await server.handle_event(ilink_message("me too", talker="bob@im.wechat"))
    status, body = await call(server, "GET", "/api/bots/ib/budgets", token=READER)
    assert status == 200
    assert [(b["contact"], b["name"]) for b in body["budgets"]] == [
        ("bob@im.wechat", "bob"),
        ("alice@im.wechat", "alice"),
    ]
    assert [b["budget"]["remaining"] for b in body["budgets"]] == [3, 2]

    status, body = await call(server, "GET", "/api/bots/nobody/budgets")
    assert (status, body["error"]) == (404, "not_found")
    status, body = await call(server, "GET", "/api/bots/ib/budgets?x=1")
    assert (status, body["error"]) == (400, "invalid_request")


async def test_a_send_outside_the_window_is_a_named_error_not_an_internal_one(server):
    link = FakePuppetLink("ib", capabilities=ILINK)
    server.attach_puppet(link)
    status, body = await call(
        server, "POST", "/api/send", json={"to": "carol@im.wechat", "kind": "contact", "text": "x"}
    )
    assert (status, body["error"]) == (409, "send_window_closed")
    assert "has not written" in body["message"]
    # an iLink user id has an '@' but is no room: the channel decides, not the id's shape
    status, body = await call(
        server, "POST", "/api/send", json={"to": "bob@im.wechat", "text": "x"}
    )
    assert (status, body["error"]) == (409, "send_window_closed"), body
    status, body = await call(server, "GET", "/api/rooms")
    assert (status, body["error"]) == (422, "not_supported")
    assert "'ilink' channel does not support rooms" in body["message"]
    assert link.calls == []  # neither reached the bot


async def test_the_mock_console_is_for_mock_bots_and_send_tokens_only(server):
    server.attach_puppet(FakePuppetLink("ib", capabilities=ILINK))
    status, body = await call(server, "POST", "/api/mock/say", json={"as": "Alice", "text": "hi"})
    assert (status, body["error"]) == (422, "not_supported")
    assert "only for bots on the mock puppet" in body["message"] and "'ilink'" in body["message"]

    answers = {"said": []}

    def mock_answer(event: str, data: Any) -> dict[str, Any]:
        if data.get("code") == snippets.MOCK_SAY:
            answers["said"].append(data["args"])
            contact = {"id": "c1", "name": data["args"]["name"], "created": True}
            return {"ok": True, "result": {"message_id": "m1", "contact": contact, "room": None}}
        return {"ok": True, "result": None}

    server.attach_puppet(FakePuppetLink("mb", answer=mock_answer, capabilities=MOCK))
    body_ok = {"as": "Alice", "text": "hi", "bot": "mb"}
    status, body = await call(server, "POST", "/api/mock/say", json=body_ok)
    assert status == 200 and body["bot"] == "mb" and body["message_id"] == "m1"
    assert answers["said"][0]["name"] == "Alice" and answers["said"][0]["text"] == "hi"

    status, body = await call(server, "POST", "/api/mock/say", token=READER, json=body_ok)
    assert (status, body["error"]) == (403, "permission_denied")
    for bad, why in (
        ({"text": "hi", "bot": "mb"}, "missing field 'as'"),
        ({"as": "A", "bot": "mb"}, "exactly one of 'text' and 'file'"),
        ({"as": "A", "text": "x", "mention": True, "bot": "mb"}, "'mention' needs a 'room'"),
        ({"as": "A", "text": "x", "colour": 1, "bot": "mb"}, "unknown field 'colour'"),
        ({"as": " ", "text": "x", "bot": "mb"}, "'as' must be a non-empty string"),
    ):
        status, body = await call(server, "POST", "/api/mock/say", json=bad)
        assert (status, body["error"]) == (400, "invalid_request"), bad
        assert why in body["message"], body
    status, body = await call(server, "POST", "/api/mock/say", json={"as": "A", "text": "x"})
    assert (status, body["error"]) == (400, "bot_required")
    status, body = await call(server, "POST", "/api/mock/friend", json={"as": "Bob", "bot": "gone"})
    assert (status, body["error"]) == (503, "bot_not_connected")
    assert len(answers["said"]) == 1
