"""Fast checks of the access pieces: the handshake's pure functions, token candidates,
the bounds' config keys, the connection guard's counting, Host names, JSON depth."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from MetaPuppet import protocol
from MetaPuppet.errors import ConfigError, ProtocolError
from MetaPuppet.protocol import Handshake
from MetaPuppet.transport.auth import Authenticator, TokenRegistry
from MetaPuppet.transport.guard import ConnectionGuard, host_name
from MetaPuppet.transport.limits import Limits
from MetaPuppet.web.body import MAX_JSON_DEPTH, deeper_than

MAIN = "the-main-token-0123456789"
PUPPET = "the-puppet-token-0123456789"
WEB = "the-web-token-0123456789"
READER = "a-read-only-token-0123456789"
SHOP = "the-shop-token-0123456789"


def authenticator() -> Authenticator:
    return Authenticator(
        MAIN,
        puppet_token=PUPPET,
        web_token=WEB,
        web_tokens=TokenRegistry({READER: ["read"]}),
        bot_tokens={"shop": SHOP},
    )


# --------------------------------------------------------------------------- handshake


def test_every_auth_payload_has_a_fresh_nonce_and_no_token():
    first = protocol.auth_payload(MAIN, "puppet", bot="b", replace=True)
    second = protocol.auth_payload(MAIN, "puppet", bot="b")
    assert first["nonce"] != second["nonce"]
    assert MAIN not in str(first) and "token" not in first
    assert first["key"] == protocol.key_id(MAIN, first["nonce"])
    assert first["replace"] is True and "replace" not in second


def test_the_proofs_cover_role_bot_both_nonces_and_replace():
    base = Handshake("puppet", "b", "1" * 64, "2" * 64)
    proof = protocol.server_proof(MAIN, base)
    for changed in (
        Handshake("web", "b", "1" * 64, "2" * 64),
        Handshake("puppet", "c", "1" * 64, "2" * 64),
        Handshake("puppet", "b", "3" * 64, "2" * 64),
        Handshake("puppet", "b", "1" * 64, "3" * 64),
        Handshake("puppet", "b", "1" * 64, "2" * 64, replace=True),
    ):
        assert protocol.server_proof(MAIN, changed) != proof
    # the two directions never match each other (a server cannot reflect the client's proof)
    assert protocol.client_proof(MAIN, base) != proof
    assert protocol.server_proof("another-token", base) != proof
    assert protocol.proof_matches(proof, proof) and not protocol.proof_matches(proof, None)


def test_challenge_and_proof_messages_are_checked():
    good = {"nonce": "a" * 64, "proof": "b" * 64}
    assert protocol.parse_challenge(good) == protocol.Challenge("a" * 64, "b" * 64)
    for bad in (None, [], {}, {**good, "nonce": "A" * 64}, {**good, "proof": "b" * 63}):
        with pytest.raises(ProtocolError):
            protocol.parse_challenge(bad)
    assert protocol.parse_proof({"proof": "c" * 64}) == "c" * 64
    for bad in (None, {"proof": 5}, {"proof": "z" * 64}, "c" * 64):
        with pytest.raises(ProtocolError, match="authenticate with"):
            protocol.parse_proof(bad)


def test_the_key_finds_the_token_and_its_grant_among_those_that_open_the_role():
    auth = authenticator()
    nonce = protocol.new_nonce()

    def found(token: str, role: str, bot: str | None = None) -> str | None:
        hit = auth.find(role, bot, nonce, protocol.key_id(token, nonce))
        return None if hit is None else hit[1].source

    assert found(MAIN, "web") == "server.token"
    assert found(WEB, "web") == "server.web_token"
    assert found(READER, "web") == "web.tokens"
    assert found(PUPPET, "web") is None
    assert found(MAIN, "puppet", "x") == "server.token"
    assert found(PUPPET, "puppet", "x") == "server.puppet_token"
    assert found(WEB, "puppet", "x") is None
    # a bot with a token of its own: that token only, and only for that bot
    assert found(SHOP, "puppet", "shop") == "server.bot_tokens"
    assert found(MAIN, "puppet", "shop") is None
    assert found(PUPPET, "puppet", "shop") is None
    assert found(SHOP, "puppet", "x") is None
    assert found(SHOP, "web") is None
    assert SHOP in auth.secrets()


def test_bot_tokens_are_checked_at_load():
    with pytest.raises(ConfigError, match="server.bot_tokens must map"):
        Authenticator.from_config({"server": {"bot_tokens": ["x"]}}, MAIN)
    with pytest.raises(ConfigError, match=r"server.bot_tokens\['shop'\] must be a non-empty"):
        Authenticator.from_config({"server": {"bot_tokens": {"shop": ""}}}, MAIN)
    with pytest.raises(ConfigError, match="bot names must be 1 to 64"):
        Authenticator.from_config({"server": {"bot_tokens": {"x" * 65: SHOP}}}, MAIN)


def test_a_public_bind_names_every_weak_token_and_never_shows_one():
    auth = Authenticator("short", puppet_token="tiny", bot_tokens={"shop": "wee"})
    auth.check_bind("127.0.0.1")  # loopback: the user's choice
    with pytest.raises(ConfigError) as caught:
        auth.check_bind("0.0.0.0")
    text = str(caught.value)
    assert "server.token" in text and "server.puppet_token" in text
    assert "server.bot_tokens['shop']" in text and "server.web_token" not in text
    for secret in ("short", "tiny", "wee"):
        assert f"'{secret}'" not in text and f" {secret} " not in text
    Authenticator(MAIN, puppet_token=PUPPET, bot_tokens={"shop": SHOP}).check_bind("0.0.0.0")


# --------------------------------------------------------------------------- limits


def test_limits_have_defaults_and_name_a_bad_key():
    limits = Limits.from_config({}, max_events_in_flight=10_000)
    assert limits.max_unauthenticated_bytes == 8192
    assert limits.auth_timeout == 5.0
    assert limits.max_pending_per_address == 64
    assert limits.max_buffered_bytes == 8 * 2**20
    for section, key, value in (
        ("server", "max_unauthenticated_bytes", 0),
        ("server", "auth_timeout_s", -1),
        ("server", "max_pending_per_address", "lots"),
        ("server", "takeover_probe_s", True),
        ("web", "max_buffered_bytes", 1.5),
    ):
        with pytest.raises(ConfigError, match=f"{section}.{key} must be"):
            Limits.from_config({section: {key: value}}, max_events_in_flight=1)
    with pytest.raises(ConfigError, match="server.allowed_hosts must be a list"):
        Limits.from_config({"server": {"allowed_hosts": [3]}}, max_events_in_flight=1)


@pytest.mark.parametrize(
    "header,name",
    [
        ("Example.ORG:8080", "example.org"),
        ("example.org", "example.org"),
        ("127.0.0.1:80", "127.0.0.1"),
        ("[::1]:8080", "::1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
    ],
)
def test_host_names(header, name):
    assert host_name(header) == name


# --------------------------------------------------------------------------- guard


def make_guard(**limits: Any) -> tuple[ConnectionGuard, set[str], list[str]]:
    alive: set[str] = set()
    closed: list[str] = []

    async def close_polling(sid: str) -> None:
        closed.append(sid)

    guard = ConnectionGuard(
        Limits(**limits), alive=lambda sid: sid in alive, close_polling=close_polling
    )
    return guard, alive, closed


def test_the_guard_caps_pending_sessions_per_address_and_in_all():
    guard, alive, _ = make_guard(max_pending_per_address=2, max_pending=3)
    assert guard.admit("a", "10.0.0.1") is None
    assert guard.admit("b", "10.0.0.1") is None
    assert "max_pending_per_address" in (guard.admit("c", "10.0.0.1") or "")
    guard.authenticated("a")  # authenticated sessions are no longer pending
    assert guard.admit("c", "10.0.0.1") is None
    assert guard.admit("d", "10.0.0.2") is None
    assert "max_pending_connections" in (guard.admit("e", "10.0.0.3") or "")
    guard.forget("b")
    guard.forget("b")  # twice: no harm
    assert guard.admit("e", "10.0.0.3") is None
    assert guard.pending == 3


def test_the_guard_caps_all_sessions_per_address():
    guard, _, _ = make_guard(max_connections_per_address=2)
    for sid in ("a", "b"):
        assert guard.admit(sid, "10.0.0.1") is None
        guard.authenticated(sid)
    assert "max_connections_per_address" in (guard.admit("c", "10.0.0.1") or "")
    guard.forget("a")
    assert guard.admit("c", "10.0.0.1") is None


def test_the_budget_counts_only_until_authenticated():
    guard, _, _ = make_guard(max_unauthenticated_bytes=100)
    guard.admit("a", "x")
    assert guard.charge("a", 60) and not guard.charge("a", 60)
    guard.admit("b", "x")
    guard.authenticated("b")
    assert guard.charge("b", 10**9)
    assert not guard.charge("unknown", 101) and guard.charge("unknown", 100)


async def test_the_sweep_closes_late_sessions_and_forgets_dead_ones():
    guard, alive, closed = make_guard(auth_timeout=0.05)
    guard.admit("late", "x")
    guard.admit("dead", "x")
    guard.admit("fine", "x")
    guard.authenticated("fine")
    alive.update({"late", "fine"})
    await asyncio.sleep(0.1)
    guard.sweep()
    await asyncio.sleep(0)
    assert closed == ["late"]
    assert "dead" not in guard.sessions and "fine" in guard.sessions
    assert guard.stats["timed_out"] == 1


async def test_hosts_for_a_loopback_a_named_and_a_wildcard_bind():
    guard, _, _ = make_guard()
    guard.open("127.0.0.1")
    try:
        assert guard.host_allowed("127.0.0.1:8080") and guard.host_allowed("localhost")
        assert guard.host_allowed("[::1]:80") and guard.host_allowed(None)
        assert not guard.host_allowed("evil.example:8080")
        assert not guard.host_allowed("10.1.2.3:8080")
    finally:
        await guard.close()
    wildcard, _, _ = make_guard(allowed_hosts=("bot.example.org",))
    wildcard.open("0.0.0.0")
    try:
        assert wildcard.host_allowed("10.1.2.3:8080")  # an address: no rebinding possible
        assert wildcard.host_allowed("bot.example.org")
        assert not wildcard.host_allowed("evil.example")
    finally:
        await wildcard.close()
    anything, _, _ = make_guard(allowed_hosts=("*",))
    anything.open("127.0.0.1")
    assert anything.host_allowed("evil.example")
    await anything.close()


async def test_origins():
    guard, _, _ = make_guard(allowed_origins=("https://app.example",))
    guard.open("127.0.0.1")
    try:
        environ = {"HTTP_HOST": "127.0.0.1:8080"}
        assert guard.origin_allowed(None, environ)
        assert guard.origin_allowed("http://127.0.0.1:8080", environ)
        assert guard.origin_allowed("https://app.example", environ)
        assert not guard.origin_allowed("http://evil.example", environ)
        # a rebound name matches its own Host, but that Host is not ours
        assert not guard.origin_allowed(
            "http://evil.example:8080", {"HTTP_HOST": "evil.example:8080"}
        )
    finally:
        await guard.close()


async def test_read_gates():
    guard, _, _ = make_guard()
    guard.admit("a", "x")
    guard.pause("a")
    waiting = asyncio.ensure_future(guard.readable("a"))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    guard.resume("a")
    await asyncio.wait_for(waiting, 1)
    guard.pause("a")
    stuck = asyncio.ensure_future(guard.readable("a"))
    guard.forget("a")  # a closed session never leaves a reader waiting
    await asyncio.wait_for(stuck, 1)


# --------------------------------------------------------------------------- bodies


def test_json_depth():
    nested: Any = "x"
    for _ in range(MAX_JSON_DEPTH):
        nested = [nested]
    assert not deeper_than(nested, MAX_JSON_DEPTH)
    assert deeper_than([nested], MAX_JSON_DEPTH)
    assert not deeper_than({"to": "a", "file": {"name": "n", "base64": ""}}, 3)
    assert deeper_than({"a": {"b": {"c": {}}}}, 3)
