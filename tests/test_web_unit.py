"""Web clients, the REST API and the OpenAPI document, with a fake puppet in Python (no Node)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import pytest
import socketio

from MetaPuppet import Config, snippets
from MetaPuppet.errors import AuthenticationError, ConfigError
from MetaPuppet.transport.fake import say_fields
from MetaPuppet.web.api import ROUTES
from MetaPuppet.web.errors import ERROR_CODES
from MetaPuppet.web.filters import EventFilter
from MetaPuppet.web_client import connect

from .conftest import FakePuppet, make_event, message_payload

MAIN = "unit-test-token-0123456789"
READER = "reader-token-0123456789abcdef"
SENDER = "sender-token-0123456789abcdef"
WEB = "web-only-token-0123456789abcdef"

CONTACTS = [
    {"id": "alice", "name": "Alice", "alias": None, "friend": True, "type": 1, "self": False},
    {"id": "bob", "name": "Bob", "alias": "Bobby", "friend": True, "type": 1, "self": False},
]
ROOMS = [{"id": "team@chatroom", "topic": "Team", "member_count": 3}]
MEMBERS = [{"id": "alice", "name": "Alice", "alias": None}]


def bot_answers(event: str, data: Any) -> dict[str, Any]:
    """The fake puppet: answers the constant snippets of the web actions like a real bot."""
    code = data.get("code") if isinstance(data, dict) else None
    args = data.get("args") if isinstance(data, dict) else {}
    if code == snippets.LIST_CONTACTS:
        return {"ok": True, "result": CONTACTS}
    if code == snippets.LIST_ROOMS:
        return {"ok": True, "result": ROOMS}
    if code == snippets.ROOM_MEMBERS:
        return {"ok": True, "result": MEMBERS if args["roomId"] == "team@chatroom" else None}
    if code == snippets.FRIENDSHIP_ACCEPT:
        if args["id"] == "no-such-request":
            return {
                "ok": False,
                "error": {"kind": "runtime", "name": "Error", "message": "no payload"},
            }
        return {"ok": True, "result": True}
    if say_fields(event, data) is not None:  # a typed say action (or the SAY snippet)
        return {"ok": True, "result": "sent-1"}
    return {"ok": True, "result": None}


def web_config() -> Config:
    config = Config()
    config.raw["server"]["web_token"] = WEB
    config.raw["web"] = {"tokens": {READER: ["read"], SENDER: ["read", "send"]}, "flush_ms": 5}
    return config


@pytest.fixture
async def server(server_factory):
    server = await server_factory(config=web_config(), rate_limiter=None)
    puppet = FakePuppet(answer=bot_answers)
    server.attach_puppet(puppet)
    server.fake_puppet = puppet
    return server


@pytest.fixture
async def http():
    # a bounded timeout: a route that wrongly streams forever fails the test instead of hanging
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(
    http: aiohttp.ClientSession,
    server: Any,
    method: str,
    path: str,
    token: str | None = MAIN,
    **kw: Any,
) -> tuple[int, Any]:
    headers = bearer(token) if token else {}
    async with http.request(method, server.url + path, headers=headers, **kw) as response:
        return response.status, await response.json()


async def web_client(
    server: Any, token: str = MAIN
) -> tuple[socketio.AsyncClient, list[dict[str, Any]]]:
    client = socketio.AsyncClient(reconnection=False)
    received: list[dict[str, Any]] = []

    @client.on("events")
    def on_events(batch: list[dict[str, Any]]) -> None:
        received.extend(batch)

    await connect(server.url, token, client=client, wait_timeout=5)
    return client, received


async def wait_for(predicate: Any, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- filters


def test_filter_matches_by_bot_event_room_and_contact():
    in_room = make_event(
        "message", message_payload("hi", talker="alice", room="r1@chatroom"), bot="b1"
    )
    direct = make_event("message", message_payload("yo", talker="bob"), bot="b2")
    friend = make_event("friendship", {"id": "f", "contactId": "carol"}, bot="b1")
    assert EventFilter().matches(in_room) and EventFilter().matches(friend)
    assert EventFilter.parse({"bots": "b1"}).matches(in_room)
    assert not EventFilter.parse({"bots": ["b1"]}).matches(direct)
    assert EventFilter.parse({"events": ["friendship"]}).matches(friend)
    assert not EventFilter.parse({"events": ["friendship"]}).matches(in_room)
    assert EventFilter.parse({"rooms": ["r1@chatroom"]}).matches(in_room)
    assert not EventFilter.parse({"rooms": ["r1@chatroom"]}).matches(direct)
    assert EventFilter.parse({"contacts": ["carol"]}).matches(friend)
    assert EventFilter.parse({"contacts": ["alice", "bob"]}).matches(direct)
    assert not EventFilter.parse({"contacts": ["alice"], "events": ["friendship"]}).matches(in_room)


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("message", "must be an object"),
        ({"event": ["message"]}, "unknown filter key 'event'"),
        ({"events": ["mesage"]}, "unknown event name 'mesage'"),
        ({"rooms": [1]}, "non-empty strings"),
        ({"bots": {"a": 1}}, "string or a list"),
    ],
)
def test_a_bad_filter_is_refused_with_a_reason(bad, says):
    with pytest.raises(Exception, match=says) as caught:
        EventFilter.parse(bad)
    assert caught.value.error == "invalid_request"


def test_config_rejects_short_web_tokens_and_unknown_permissions(server_factory):
    from MetaPuppet.web.auth import TokenRegistry

    with pytest.raises(ConfigError, match="at least 16 characters"):
        TokenRegistry({"short": ["read"]})
    with pytest.raises(ConfigError, match="unknown permission 'admin'"):
        TokenRegistry({READER: ["read", "admin"]})
    assert TokenRegistry({READER: "read"}).authenticate(READER).permissions == {"read"}
    assert TokenRegistry({READER: "read"}).authenticate(READER + "x") is None


# --------------------------------------------------------------------------- socket clients


async def test_a_web_client_gets_subscribed_events_and_not_others(server):
    client, received = await web_client(server)
    try:
        answer = await client.call(
            "subscribe", {"events": ["message"], "rooms": ["team@chatroom"]}, timeout=5
        )
        assert answer["ok"] is True and answer["filter"]["events"] == ["message"]
        await server.handle_event(
            make_event("message", message_payload("in the room", room="team@chatroom"))
        )
        await server.handle_event(make_event("message", message_payload("direct", talker="bob")))
        await server.handle_event(make_event("friendship", {"id": "f1", "contactId": "carol"}))
        await wait_for(lambda: received)
        await asyncio.sleep(0.2)  # anything wrongly delivered would have arrived by now
        assert [e["payload"]["text"] for e in received] == ["in the room"]
        assert set(received[0]) == {"id", "bot", "name", "payload", "ts"}

        removed = await client.call(
            "unsubscribe", {"subscription": answer["subscription"]}, timeout=5
        )
        assert removed == {"ok": True, "removed": 1}
        await server.handle_event(
            make_event("message", message_payload("after", room="team@chatroom"))
        )
        await asyncio.sleep(0.2)
        assert [e["payload"]["text"] for e in received] == ["in the room"]
    finally:
        await client.disconnect()


async def test_without_a_subscription_a_web_client_gets_no_events(server):
    client, received = await web_client(server)
    try:
        await server.handle_event(make_event("message", message_payload("unseen")))
        await asyncio.sleep(0.2)
        assert received == []
    finally:
        await client.disconnect()


async def test_events_keep_their_order_in_batches(server):
    client, received = await web_client(server)
    try:
        await client.call("subscribe", None, timeout=5)
        for i in range(50):
            await server.handle_event(
                make_event("message", message_payload(f"m{i}", talker=f"t{i}"))
            )
        await wait_for(lambda: len(received) == 50)
        assert [e["payload"]["text"] for e in received] == [f"m{i}" for i in range(50)]
    finally:
        await client.disconnect()


async def test_tokens_and_permissions_for_web_clients(server):
    # a web token opens the web role only
    with pytest.raises(AuthenticationError, match="invalid token"):
        probe = socketio.AsyncClient(reconnection=False)
        await connect(server.url, WEB, role="puppet", bot="x", client=probe, wait_timeout=5)
    reader, _ = await web_client(server, READER)
    try:
        ok = await reader.call("action", {"action": "list_contacts"}, timeout=5)
        assert ok == {"ok": True, "result": {"contacts": CONTACTS}}
        refused = await reader.call(
            "action", {"action": "send_text", "to": "alice", "text": "hi"}, timeout=5
        )
        assert refused["ok"] is False
        assert (refused["code"], refused["error"]) == (403, "permission_denied")
        assert "'send'" in refused["message"]
        assert server.fake_puppet.said() == []  # nothing was sent
    finally:
        await reader.disconnect()
    web, _ = await web_client(server, WEB)
    try:
        sent = await web.call(
            "action", {"action": "send_text", "to": "alice", "text": "hi"}, timeout=5
        )
        assert sent == {
            "ok": True,
            "result": {"message_id": "sent-1", "to": "alice", "kind": "contact"},
        }
        assert server.fake_puppet.said()[-1]["sayable"] == {"type": "text", "text": "hi"}
    finally:
        await web.disconnect()


@pytest.mark.parametrize(
    ("payload", "error", "says"),
    [
        ("send_text", "invalid_request", "must be an object"),
        ({"to": "alice"}, "unknown_action", "unknown action None"),
        ({"action": "rm -rf"}, "unknown_action", "unknown action 'rm -rf'"),
        ({"action": "send_text", "text": "hi"}, "invalid_request", "missing field 'to'"),
        (
            {"action": "send_text", "to": "alice", "text": 5},
            "invalid_request",
            "'text' must be a non-empty string",
        ),
        (
            {"action": "send_text", "to": "alice", "text": "x", "code": "1"},
            "invalid_request",
            "unknown field 'code'",
        ),
        (
            {"action": "send_text", "to": "a", "text": "x", "kind": "group"},
            "invalid_request",
            "'kind' must be",
        ),
        (
            {"action": "send_file", "to": "a", "file": {"name": "a.txt", "base64": "!!"}},
            "invalid_request",
            "not valid base64",
        ),
        (
            {"action": "send_file", "to": "a", "file": "a.txt"},
            "invalid_request",
            "'file' must be an object",
        ),
        ({"action": "room_members"}, "invalid_request", "missing field 'room'"),
        (
            {"action": "room_members", "room": "nope@chatroom"},
            "not_found",
            "no room 'nope@chatroom'",
        ),
        ({"action": "accept_friendship", "id": "no-such-request"}, "bot_error", "no payload"),
    ],
)
async def test_malformed_actions_get_the_error_envelope(server, payload, error, says):
    client, _ = await web_client(server)
    try:
        answer = await client.call("action", payload, timeout=5)
    finally:
        await client.disconnect()
    assert answer["ok"] is False
    assert answer["error"] == error and answer["code"] == ERROR_CODES[error]
    assert says in answer["message"]
    assert server.fake_puppet.said() == []


async def test_actions_send_files_and_list_rooms(server):
    client, _ = await web_client(server)
    try:
        data = base64.b64encode(b"%PDF-1.4 report").decode()
        sent = await client.call(
            "action",
            {
                "action": "send_file",
                "to": "team@chatroom",
                "file": {"name": "r.pdf", "base64": data},
            },
            timeout=5,
        )
        assert sent["ok"] is True and sent["result"]["kind"] == "room"
        said = server.fake_puppet.said()[-1]
        assert said["kind"] == "room" and said["sayable"]["name"] == "r.pdf"
        assert base64.b64decode(said["sayable"]["base64"]) == b"%PDF-1.4 report"
        rooms = await client.call("action", {"action": "list_rooms", "query": "tea"}, timeout=5)
        assert rooms == {"ok": True, "result": {"rooms": ROOMS}}
        accepted = await client.call(
            "action", {"action": "accept_friendship", "id": "f-1"}, timeout=5
        )
        assert accepted == {"ok": True, "result": {"accepted": "f-1"}}
    finally:
        await client.disconnect()


async def test_subscribing_needs_read_and_a_valid_filter(server_factory):
    config = web_config()
    config.raw["web"]["tokens"]["sender-only-0123456789abcdef"] = ["send"]
    server = await server_factory(config=config, rate_limiter=None)
    client, _ = await web_client(server, "sender-only-0123456789abcdef")
    try:
        refused = await client.call("subscribe", {}, timeout=5)
        assert refused["ok"] is False and refused["error"] == "permission_denied"
    finally:
        await client.disconnect()
    client, _ = await web_client(server)
    try:
        bad = await client.call("subscribe", {"events": "typo"}, timeout=5)
        assert bad["ok"] is False and bad["error"] == "invalid_request" and "typo" in bad["message"]
        bad = await client.call("unsubscribe", {"subscription": 999}, timeout=5)
        assert bad["ok"] is False and "no subscription 999" in bad["message"]
    finally:
        await client.disconnect()


async def test_on_web_message_handlers_and_emit_to_web(server):
    seen: list[tuple[str, dict[str, Any]]] = []

    @server.on_web_message(type="PING")
    async def ping(sid: str, message: dict[str, Any]) -> dict[str, Any]:
        seen.append((sid, message))
        return {"type": "PONG", "text": message["text"]}

    @server.on_web_message(type="SYNC")
    def sync_handler(sid: str, message: dict[str, Any]) -> str:  # plain functions run in the pool
        return "synced"

    custom: list[dict[str, Any]] = []

    async def process_custom_message(sid: str, message: dict[str, Any]) -> None:
        custom.append(message)

    server.process_custom_message = process_custom_message
    client = socketio.AsyncClient(reconnection=False)
    messages: list[dict[str, Any]] = []
    pushed: list[Any] = []
    client.on("message", messages.append)
    client.on("news", pushed.append)
    await connect(server.url, MAIN, client=client, wait_timeout=5)
    try:
        await client.emit("message", {"sender": "app", "type": "PING", "text": "hello"})
        await client.emit("message", {"sender": "app", "type": "SYNC"})
        await client.emit(
            "message", {"sender": "app", "type": "OTHER", "text": "to the original hook"}
        )
        await wait_for(lambda: len(messages) == 2 and custom)
        assert {m.get("type") or m.get("text") for m in messages} == {"PONG", "synced"}
        assert seen[0][1]["text"] == "hello"
        assert custom == [{"sender": "app", "type": "OTHER", "text": "to the original hook"}]

        await server.emit_to_web("news", {"n": 1})
        await server.emit_to_web("news", {"n": 2}, to=seen[0][0])
        await wait_for(lambda: len(pushed) == 2)
        assert pushed == [{"n": 1}, {"n": 2}]
        with pytest.raises(ValueError, match="not a connected web client"):
            await server.emit_to_web("news", {}, to="nobody")
        with pytest.raises(ValueError, match="reserved"):
            await server.emit_to_web("events", [])
    finally:
        await client.disconnect()


# --------------------------------------------------------------------------- REST


async def test_every_route_refuses_a_missing_or_wrong_token(server, http):
    server.auth_free_failures = 10_000  # repeated failures are slowed down (tested below)
    for route in ROUTES:
        path = "/api" + route.path.replace("{room}", "team@chatroom").replace("{friendship}", "f-1")
        if route.operation_id == "getSession":
            status, body = await call(http, server, route.method, path, token="wrong-token")
            assert (status, body) == (200, {"authenticated": False, "permissions": []})
            continue
        status, body = await call(http, server, route.method, path, token=None)
        assert (status, body["error"]) == (401, "auth_required"), path
        status, body = await call(http, server, route.method, path, token="wrong-token")
        assert (status, body["code"], body["error"]) == (401, 401, "invalid_token"), path
        assert body["message"]
    assert server.fake_puppet.said() == []


async def test_repeated_wrong_tokens_are_answered_more_and_more_slowly(server, http):
    server.auth_free_failures = 2
    took = []
    for _ in range(4):
        started = asyncio.get_running_loop().time()
        status, body = await call(http, server, "GET", "/api/health", token="guess-" + "x" * 20)
        took.append(asyncio.get_running_loop().time() - started)
        assert body["error"] == "invalid_token"
    assert max(took[:2]) < 0.09 and took[2] >= 0.09 and took[3] >= 0.19


async def test_rest_reads(server, http):
    status, body = await call(http, server, "GET", "/api/health")
    assert status == 200 and body["status"] == "ok" and body["bots"] == ["fake"]
    assert body["permissions"] == ["read", "send", "accept"]
    assert (await call(http, server, "GET", "/api/session", token=READER)) == (
        200,
        {"authenticated": True, "permissions": ["read"]},
    )
    assert await call(http, server, "GET", "/api/contacts") == (200, {"contacts": CONTACTS})
    assert await call(http, server, "GET", "/api/contacts?q=bobby") == (
        200,
        {"contacts": [CONTACTS[1]]},
    )
    assert await call(http, server, "GET", "/api/rooms?bot=fake") == (200, {"rooms": ROOMS})
    status, body = await call(http, server, "GET", "/api/rooms/team@chatroom/members")
    assert status == 200 and body["members"] == MEMBERS
    status, body = await call(http, server, "GET", "/api/clients", token=READER)
    assert status == 200 and isinstance(body["clients"], list)
    assert await call(http, server, "GET", "/api/dialogs") == (200, {"dialogs": []})
    server.dialog_provider = lambda: [{"id": "d1", "dialog": "signup", "chat": "alice", "step": 2}]
    assert (await call(http, server, "GET", "/api/dialogs"))[1]["dialogs"][0]["dialog"] == "signup"


async def test_rest_bad_input_gets_the_documented_codes(server, http):
    cases = [
        (
            "GET",
            "/api/contacts?query=a",
            {},
            400,
            "invalid_request",
            "unknown query parameter 'query'",
        ),
        ("GET", "/api/rooms?bot=", {}, 400, "invalid_request", "'bot' must be a non-empty string"),
        ("GET", "/api/rooms/nope@chatroom/members", {}, 404, "not_found", "no room"),
        (
            "GET",
            "/api/rooms/team@chatroom/members?bot=other",
            {},
            503,
            "bot_not_connected",
            "other",
        ),
        ("GET", "/api/health?x=1", {}, 400, "invalid_request", "unknown query parameter 'x'"),
        ("GET", "/api/bots?x=1", {}, 400, "invalid_request", "unknown query parameter"),
        ("GET", "/api/clients?all=yes", {}, 400, "invalid_request", "'all' must be 0 or 1"),
        ("GET", "/api/dialogs?x=1", {}, 400, "invalid_request", "unknown query parameter"),
        ("GET", "/api/events?limit=0", {}, 400, "invalid_request", "'limit'"),
        ("GET", "/api/events?event=nope", {}, 400, "invalid_request", "unknown event name"),
        ("GET", "/api/events/stream?room=", {}, 400, "invalid_request", "non-empty strings"),
        ("GET", "/api/openapi.json?x=1", {}, 400, "invalid_request", "unknown query parameter"),
        ("GET", "/api/session?x=1", {}, 400, "invalid_request", "unknown query parameter"),
        ("POST", "/api/send", {"data": b"not json"}, 400, "invalid_json", "JSON object"),
        ("POST", "/api/send", {"json": ["a"]}, 400, "invalid_json", "not list"),
        ("POST", "/api/send", {"json": {"to": "alice"}}, 400, "invalid_request", "exactly one of"),
        (
            "POST",
            "/api/send",
            {"json": {"to": "alice", "text": "a", "file": {}}},
            400,
            "invalid_request",
            "exactly one",
        ),
        (
            "POST",
            "/api/send",
            {"json": {"text": "a"}},
            400,
            "invalid_request",
            "missing field 'to'",
        ),
        (
            "POST",
            "/api/send",
            {"json": {"to": "a", "text": "x" * 20001}},
            400,
            "invalid_request",
            "longer than",
        ),
        (
            "POST",
            "/api/friendships/f-1/accept",
            {"json": {"id": "other"}},
            400,
            "invalid_request",
            "only hold 'bot'",
        ),
        ("POST", "/api/friendships/no-such-request/accept", {}, 502, "bot_error", "no payload"),
        ("GET", "/api/nothing-here", {}, 404, "not_found", "no API route"),
        ("DELETE", "/api/send", {}, 405, "method_not_allowed", "DELETE"),
    ]
    for method, path, kw, status, error, says in cases:
        got_status, body = await call(http, server, method, path, **kw)
        assert (got_status, body["code"], body["error"]) == (status, status, error), (path, body)
        assert says in body["message"], (path, body)
    assert server.fake_puppet.said() == []


async def test_rest_send_and_accept(server, http):
    status, body = await call(
        http, server, "POST", "/api/send", token=SENDER, json={"to": "alice", "text": "hi"}
    )
    assert (status, body) == (200, {"message_id": "sent-1", "to": "alice", "kind": "contact"})
    data = base64.b64encode(b"GIF89a").decode()
    status, body = await call(
        http,
        server,
        "POST",
        "/api/send",
        json={"to": "team@chatroom", "file": {"name": "a.gif", "base64": data}},
    )
    assert status == 200 and body["kind"] == "room"
    assert [s["sayable"]["type"] for s in server.fake_puppet.said()] == ["text", "file"]
    status, body = await call(http, server, "POST", "/api/friendships/f-1/accept", token=SENDER)
    assert (status, body["error"]) == (403, "permission_denied")
    assert await call(http, server, "POST", "/api/friendships/f-1/accept") == (
        200,
        {"accepted": "f-1"},
    )
    status, body = await call(
        http, server, "POST", "/api/send", token=READER, json={"to": "alice", "text": "x"}
    )
    assert (status, body["error"]) == (403, "permission_denied")


async def test_ambiguous_bot_and_missing_bot_are_named(server, http):
    server.attach_puppet(FakePuppet(bot="second", answer=bot_answers))
    status, body = await call(http, server, "GET", "/api/contacts")
    assert (status, body["error"]) == (400, "bot_required") and "second" in body["message"]
    assert (await call(http, server, "GET", "/api/contacts?bot=second"))[0] == 200


async def test_bots_show_the_qr_code_while_a_scan_is_needed(server, http):
    await server.handle_event(
        make_event(
            "scan", {"qrcode": "https://login.example/abc", "status": 2, "statusName": "Waiting"}
        )
    )
    status, body = await call(http, server, "GET", "/api/bots")
    bot = body["bots"][0]
    assert status == 200 and bot["bot"] == "fake" and bot["logged_in"] is False
    assert bot["scan"]["qr_image"].startswith("data:image/svg+xml;base64,")
    svg = base64.b64decode(bot["scan"]["qr_image"].split(",", 1)[1]).decode()
    assert svg.startswith("<svg") and "<script" not in svg
    # a standalone SVG document: without its namespace an <img> shows nothing
    assert 'xmlns="http://www.w3.org/2000/svg"' in svg.split(">", 1)[0]
    await server.handle_event(make_event("login", {"id": "me", "name": "Bot"}))
    bot = (await call(http, server, "GET", "/api/bots"))[1]["bots"][0]
    assert bot["logged_in"] is True and bot["scan"] is None and bot["user"]["name"] == "Bot"


async def test_recent_events_and_the_live_stream(server, http):
    await server.handle_event(
        make_event("message", message_payload("before", room="team@chatroom"))
    )
    await server.handle_event(make_event("heartbeat", {"data": "beat"}))
    status, body = await call(http, server, "GET", "/api/events?event=message&limit=5")
    assert status == 200 and [e["payload"]["text"] for e in body["events"]] == ["before"]

    async with http.get(
        server.url + "/api/events/stream?event=message", headers=bearer(READER)
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        hello = await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5)
        assert hello.startswith(b"event: hello")
        await server.handle_event(make_event("friendship", {"id": "f", "contactId": "carol"}))
        await server.handle_event(make_event("message", message_payload("live one")))
        frame = (await asyncio.wait_for(response.content.readuntil(b"\n\n"), 5)).decode()
        kind, data = frame.strip().split("\n")
        assert kind == "event: events"
        assert [e["payload"]["text"] for e in json.loads(data.removeprefix("data: "))] == [
            "live one"
        ]


async def test_dashboard_page_is_served_with_a_strict_policy(server, http):
    async with http.get(server.url + "/") as response:
        assert response.status == 200
        page = await response.text()
        assert "MetaPuppet dashboard" in page
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert "http" not in page.replace("http-equiv", "")  # nothing loaded from elsewhere
    for name in ("app.js", "style.css", "favicon.svg"):
        async with http.get(f"{server.url}/static/{name}") as response:
            assert response.status == 200, name
    async with http.get(server.url + "/static/../server.py") as response:
        assert response.status in (403, 404)


# --------------------------------------------------------------------------- OpenAPI


def _registered_api_routes(app: Any) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in app.router.routes():
        canonical = route.resource.canonical if route.resource is not None else ""
        if canonical.startswith("/api") and route.method != "HEAD":
            found.add((route.method, canonical))
    for resource in app.router.resources():
        sub = getattr(resource, "_app", None)
        if sub is not None:
            found |= _registered_api_routes(sub)
    return found


async def test_openapi_document_validates_and_matches_the_routes_exactly(server, http):
    from openapi_spec_validator import validate

    status, document = await call(http, server, "GET", "/api/openapi.json")
    assert status == 200
    validate(document)
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert documented == _registered_api_routes(server.app)
    for route in ROUTES:  # every error a route can give is a documented code
        operation = document["paths"]["/api" + route.path][route.method.lower()]
        for code in route.errors:
            assert f"`{code}`" in operation["responses"][str(ERROR_CODES[code])]["description"]
    assert sorted(
        document["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
    ) == sorted(ERROR_CODES)
