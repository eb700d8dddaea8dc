"""Hostile input over real sockets: at least 10,000 random or malformed payloads to every
event name, from authenticated clients and from strangers. The server must not crash, must
still serve a normal exec afterwards, and its memory must not grow without bound.
"""

from __future__ import annotations

import asyncio
import json
import random
import string
from typing import Any

import aiohttp
import pytest
import socketio

from MetaPuppet import TestBot, protocol
from MetaPuppet.protocol import BOT_EVENTS
from MetaPuppet.testing import mock_wechat
from MetaPuppet.web_client import connect

pytestmark = pytest.mark.e2e

SEED = 20261122
EVENT_NAMES = [
    "event",
    "exec",
    "message",
    "echo",
    "control",
    "subscribe",
    "action",
    "connect",
    "disconnect",
    "*",
    "",
    "__proto__",
    "x" * 300,
]


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def junk(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON-able value: wrong types, odd strings, big and deeply nested shapes."""
    roll = rng.random()
    if depth > 3 or roll < 0.35:
        return rng.choice(
            [
                None,
                True,
                False,
                0,
                -1,
                2**63,
                1e308,
                -0.0,
                "",
                "\x00",
                "`${process.exit(1)}`",
                "'; DROP TABLE",
                "\ud7ff\ue000",
                "🐍" * rng.randint(1, 50),
                "".join(rng.choices(string.printable, k=rng.randint(0, 200))),
                rng.randint(-(10**9), 10**9),
                rng.random(),
            ]
        )
    if roll < 0.5:
        return [junk(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if roll < 0.51:
        nested: Any = "bottom"
        for _ in range(rng.randint(50, 400)):  # deeply nested
            nested = [nested]
        return nested
    if roll < 0.515:
        return "y" * rng.randint(10_000, 100_000)  # large, under the size limit
    keys = [
        "id",
        "bot",
        "name",
        "payload",
        "ts",
        "code",
        "args",
        "timeout_ms",
        "sender",
        "type",
        "text",
        "roomId",
        "talkerId",
        "self",
        "filter",
        "action",
    ]
    return {
        rng.choice(keys + [str(rng.random())]): junk(rng, depth + 1)
        for _ in range(rng.randint(0, 6))
    }


def plausible_event(rng: random.Random) -> dict[str, Any]:
    """An event envelope that is nearly right: real names, wrong pieces."""
    payload = {
        "id": junk(rng),
        "text": junk(rng),
        "talkerId": junk(rng),
        "roomId": junk(rng),
        "self": junk(rng),
        "mentionSelf": junk(rng),
        "type": junk(rng),
        "contactId": junk(rng),
    }
    return {
        "id": rng.choice([f"fz-{rng.random()}", junk(rng)]),
        "bot": rng.choice(["fuzzer", "someone-else", junk(rng)]),
        "name": rng.choice(sorted(BOT_EVENTS) + ["nope", junk(rng)]),
        "payload": rng.choice([payload, junk(rng)]),
        "ts": junk(rng),
    }


def hostile_auth(rng: random.Random, token: str) -> dict[str, Any]:
    """A connect payload that is nearly right but must be refused: a real key made for
    another nonce, the key of a wrong token, a mangled nonce or key, odd fields."""
    good = protocol.auth_payload(token, rng.choice(["web", "puppet"]), bot="fuzzer")
    other = protocol.auth_payload(token, "web")
    return rng.choice(
        [
            {**good, "key": other["key"]},  # a key made for another nonce
            {**good, "key": protocol.key_id("not-the-token", good["nonce"])},
            {**good, "nonce": good["nonce"].upper()},
            {**good, "nonce": junk(rng)},
            {**good, "protocol": rng.choice([1, 2, 4, "3", None, 3.0, True])},
            {**good, "key": good["key"][:-1]},
            {**good, "role": junk(rng)},
            {**good, "replace": rng.choice(["yes", 1, [], {}])},
            {**good, "capabilities": {"channel": junk(rng) or 5, "rooms": "maybe"}},
            {"token": token, "role": "web", "protocol": 1},  # a client of protocol 1
        ]
    )


async def test_ten_thousand_hostile_payloads_do_not_hurt_the_server():
    rng = random.Random(SEED)
    async with mock_wechat(TestBot()) as wx:
        server = wx.server
        server.auth_free_failures = 10**9  # the slow-down has its own test; here, speed
        token = server.token
        # an authenticated puppet that answers exec with garbage, and a web client
        puppet = socketio.AsyncClient(reconnection=False)
        puppet.on("exec", lambda data: junk(rng))
        puppet.on("control", lambda data: junk(rng))
        puppet.on("echo", lambda data=None: data)
        await connect(server.url, token, role="puppet", bot="fuzzer", client=puppet)
        web = socketio.AsyncClient(reconnection=False)
        await connect(server.url, token, client=web)
        sent = 0
        mid = 0
        answered = 0

        for round_number in range(40):
            for _ in range(240):
                client = rng.choice([puppet, web])
                name = rng.choice(EVENT_NAMES)
                data = plausible_event(rng) if rng.random() < 0.4 else junk(rng)
                if rng.random() < 0.1:
                    answer = await client.call(name, data, timeout=10) if client.connected else None
                    answered += answer is not None
                elif client.connected:
                    await client.emit(name, data)
                sent += 1
            # strangers: random auth payloads, all refused
            for _ in range(5):
                stranger = socketio.AsyncClient(reconnection=False)
                auth = rng.choice(
                    [
                        junk(rng),
                        {"token": junk(rng), "role": junk(rng), "protocol": junk(rng)},
                        hostile_auth(rng, token),
                    ]
                )
                # a payload past the unauthenticated byte budget is cut without an answer,
                # so the client only notices at its wait_timeout: keep that short
                with pytest.raises(socketio.exceptions.ConnectionError):
                    await stranger.connect(
                        server.url, auth=auth, transports=["websocket"], wait_timeout=1
                    )
                sent += 1
            # raw engine.io garbage: not JSON, not even Socket.IO (before authenticating:
            # past a few KiB the server cuts such a connection, which is the point)
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(
                    f"{server.url}/socket.io/?EIO=4&transport=websocket"
                ) as ws:
                    for _ in range(10):
                        frame = rng.choice(
                            [
                                "4{",
                                "42[",
                                '40{"token":1}',
                                "\x00\xff",
                                "9999",
                                "42" + "[" * 5000,
                                "".join(rng.choices(string.printable, k=50)),
                                '42["authenticate",{"proof":"' + "0" * 64 + '"}]',
                            ]
                        )
                        if ws.closed:
                            break
                        try:
                            await ws.send_str(frame)
                        except ConnectionError:
                            break
                        sent += 1
            if round_number % 10 == 9:
                await asyncio.sleep(0.2)  # let handlers drain
            if round_number == 19:
                mid = rss_bytes()  # after warming up: caches, buffers, first allocations
            if not puppet.connected:  # a deliberately broken packet may end a session: come back
                await connect(server.url, token, role="puppet", bot="fuzzer", client=puppet)
            if not web.connected:
                await connect(server.url, token, client=web)

        assert sent >= 10_000
        # unauthenticated connections that sent too much were cut
        cut = server.transport.guard.stats["over_budget"]
        assert cut > 0
        assert answered > 100  # calls got error acknowledgements, not silence
        await asyncio.sleep(1.0)
        # still serving: the real bot answers a normal exec and a normal message
        assert await server.exec_snippet("return args.a * 2", {"a": 21}, bot="mock-bot") == 42
        alice = await wx.contact("Alice")
        await alice.say("still here")
        assert (await alice.next_reply(10)).text == "ereh llits"
        # the second half of the run must not keep growing the server's memory
        growth = rss_bytes() - mid
        assert growth < 40 * 1024 * 1024, f"RSS grew {growth / 2**20:.0f} MiB in the second half"
        await puppet.disconnect()
        await web.disconnect()
        print(
            f"\nfuzz: {sent} payloads, {answered} answered with an ack, {cut} connections "
            "cut before authenticating, server alive, "
            f"RSS growth over the second half {growth / 2**20:.1f} MiB"
        )


# --------------------------------------------------------------------------- the handshake


def flip_last(proof: str) -> str:
    return proof[:-1] + ("1" if proof[-1] == "0" else "0")


def near_miss_proofs(rng: random.Random, token: str, handshake: protocol.Handshake) -> list[Any]:
    """Proofs that are nearly right: for another nonce, role, bot or direction, another
    token, mangled, or not proofs at all."""
    other_role = "web" if handshake.role == "puppet" else "puppet"
    nonces = handshake.transcript()[2:4]
    wrong = [
        protocol.client_proof(token, protocol.Handshake(other_role, handshake.bot, *nonces)),
        protocol.client_proof(token, protocol.Handshake(handshake.role, "other", *nonces)),
        protocol.client_proof(
            token,
            protocol.Handshake(
                handshake.role, handshake.bot, handshake.client_nonce, protocol.new_nonce()
            ),
        ),
        protocol.client_proof(
            token,
            protocol.Handshake(
                handshake.role,
                handshake.bot,
                handshake.client_nonce,
                handshake.server_nonce,
                not handshake.replace,
            ),
        ),
        protocol.server_proof(token, handshake),  # the other direction's label
        protocol.client_proof("not-the-token", handshake),
        protocol.client_proof(token, handshake).upper(),
        flip_last(protocol.client_proof(token, handshake)),
    ]
    return [{"proof": p} for p in wrong] + [None, {}, {"proof": junk(rng)}, junk(rng), "0" * 64]


async def test_the_handshake_holds_against_hostile_clients():
    """A thousand connects with nearly-right keys and proofs over raw websockets: none
    authenticates, every refusal is an answer (not a hang), and good clients still get in."""
    from MetaPuppet import Config, SweetSocketServer
    from MetaPuppet.config import new_token

    rng = random.Random(SEED + 1)
    token = new_token()
    server = SweetSocketServer(config=Config(), token=token, port=0, rate_limiter=None)
    server.auth_free_failures = 10**9
    await server.start(host="127.0.0.1", port=0)
    url = f"{server.url}/socket.io/?EIO=4&transport=websocket"
    refused_connects = refused_proofs = accepted = replays = 0
    recorded: list[tuple[str, str]] = []  # (connect payload, proof) of good handshakes
    try:
        async with aiohttp.ClientSession() as session:
            for attempt in range(1000):
                async with session.ws_connect(url) as ws:
                    assert (await ws.receive_str()).startswith("0")
                    role = rng.choice(["web", "puppet"])
                    good = protocol.auth_payload(
                        token, role, bot="fz" if role == "puppet" else None
                    )
                    replay = recorded and rng.random() < 0.05
                    hostile = not replay and rng.random() < 0.3
                    if replay:
                        payload, _ = rng.choice(recorded)
                        await ws.send_str("40" + payload)
                    elif hostile:
                        await ws.send_str("40" + json.dumps(hostile_auth(rng, token)))
                    else:
                        await ws.send_str("40" + json.dumps(good))
                    reply_message = await ws.receive(timeout=5)
                    if reply_message.type != aiohttp.WSMsgType.TEXT:
                        # cut: a hostile payload of more than the budget (junk can be big)
                        assert hostile, reply_message
                        refused_connects += 1
                        continue
                    answer = reply_message.data
                    if answer.startswith("44"):
                        assert hostile or replay, answer
                        refused_connects += 1
                        replays += bool(replay)
                        continue
                    assert not replay, "a replayed connect must be refused"
                    assert answer.startswith("40"), answer
                    message = await asyncio.wait_for(ws.receive_str(), 5)
                    assert message.startswith('42["challenge"'), message
                    challenge = protocol.parse_challenge(json.loads(message[2:])[1])
                    handshake = protocol.Handshake(
                        role, "fz" if role == "puppet" else None, good["nonce"], challenge.nonce
                    )
                    assert protocol.proof_matches(
                        protocol.server_proof(token, handshake), challenge.proof
                    ), "the server always proves itself to a client that holds the token"
                    if rng.random() < 0.1:  # something else first: refused, no harm done
                        await ws.send_str('421["subscribe",{}]')
                        assert "forbidden" in await asyncio.wait_for(ws.receive_str(), 5)
                    genuine = rng.random() < 0.1 and attempt % 7 == 0
                    if genuine:
                        data: Any = {"proof": protocol.client_proof(token, handshake)}
                    else:
                        data = rng.choice(near_miss_proofs(rng, token, handshake))
                    sent_frame = "422" + json.dumps(["authenticate", data])
                    await ws.send_str(sent_frame)
                    while True:
                        reply_message = await ws.receive(timeout=5)
                        if reply_message.type != aiohttp.WSMsgType.TEXT:
                            break
                        if reply_message.data.startswith("432"):
                            break
                    if reply_message.type != aiohttp.WSMsgType.TEXT:
                        # cut: junk past the budget of a connection not yet authenticated
                        assert len(sent_frame) > 4000 and not genuine, reply_message
                        refused_proofs += 1
                        continue
                    reply = reply_message.data
                    result = json.loads(reply[3:])[0]
                    if genuine:
                        assert result["ok"] is True, result
                        accepted += 1
                        recorded.append((json.dumps(good), json.dumps(data)))
                    else:
                        assert result["ok"] is False, (data, result)
                        refused_proofs += 1
        # every refused handshake left; only the genuine ones were ever clients
        await asyncio.sleep(0.3)
        assert server.list_clients() == []
        assert refused_connects > 200 and refused_proofs > 400 and accepted > 0 and replays > 0
        good_client = await connect(server.url, token)
        await good_client.disconnect()
        print(
            f"\nhandshake fuzz: {refused_connects} connects refused, {refused_proofs} proofs "
            f"refused, {accepted} genuine handshakes accepted, {replays} replays of them refused"
        )
    finally:
        await server.stop()


def test_clients_refuse_every_hostile_challenge():
    from MetaPuppet.errors import AuthenticationError
    from MetaPuppet.web_client import Handshaker

    rng = random.Random(SEED + 2)
    token = "a-client-token-of-enough-length"
    refused = 0
    for _ in range(5000):
        shaker = Handshaker("http://127.0.0.1:1", token, rng.choice(["web", "puppet"]), bot="b")
        auth = shaker.auth()
        nonce = protocol.new_nonce()
        real = protocol.Handshake(shaker.role, shaker.bot, auth["nonce"], nonce)
        fake_proof = rng.choice(
            [
                protocol.client_proof(token, real),  # the client's own label
                protocol.server_proof("wrong-token", real),
                protocol.server_proof(token, protocol.Handshake("web", "x", auth["nonce"], nonce)),
                protocol.server_proof(
                    token, protocol.Handshake(shaker.role, shaker.bot, nonce, nonce)
                ),
                "0" * 64,
                junk(rng),
            ]
        )
        challenge = rng.choice(
            [
                {"nonce": nonce, "proof": fake_proof},
                junk(rng),
                {"nonce": junk(rng), "proof": fake_proof},
            ]
        )
        with pytest.raises(AuthenticationError):
            shaker.answer(challenge)
        refused += 1
        # the genuine one is accepted
        assert shaker.answer({"nonce": nonce, "proof": protocol.server_proof(token, real)})
    assert refused == 5000


async def test_the_node_client_against_a_server_that_fuzzes_its_handshake():
    """A fake server answers each connect of the real Node client with a hostile challenge;
    the client must send nothing, run nothing, and get in once a genuine one comes."""
    from aiohttp import web

    from MetaPuppet.config import new_token
    from MetaPuppet.testing import NodeClient

    from .conftest import free_port

    rng = random.Random(SEED + 3)
    token = new_token()
    sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False)
    app = web.Application()
    sio.attach(app)
    seen: dict[str, Any] = {"attempts": 0, "events": [], "proofs": [], "exec_ok": 0}
    hostile_rounds = 12
    authenticated = asyncio.Event()

    async def on_connect(sid: str, environ: Any, auth: Any = None) -> None:
        seen["attempts"] += 1
        sio.start_background_task(fuzz, sid, auth, seen["attempts"])

    async def fuzz(sid: str, auth: dict[str, Any], attempt: int) -> None:
        handshake = protocol.Handshake("puppet", auth["bot"], auth["nonce"], protocol.new_nonce())
        genuine = protocol.server_proof(token, handshake)
        if attempt <= hostile_rounds:
            challenge = rng.choice(
                [
                    {
                        "nonce": handshake.server_nonce,
                        "proof": protocol.client_proof(token, handshake),
                    },
                    {
                        "nonce": handshake.server_nonce,
                        "proof": protocol.server_proof("x" * 30, handshake),
                    },
                    {
                        "nonce": protocol.new_nonce(),
                        "proof": genuine,
                    },  # the proof for another nonce
                    {"nonce": handshake.server_nonce, "proof": genuine.upper()},
                    junk(rng),
                    {"nonce": handshake.server_nonce},
                ]
            )
        else:
            challenge = {"nonce": handshake.server_nonce, "proof": genuine}
        await sio.emit("challenge", challenge, to=sid)
        try:
            answer = await sio.call("exec", {"code": "return 1"}, to=sid, timeout=1)
            seen["exec_ok"] += isinstance(answer, dict) and answer.get("ok") is True
        except Exception:  # noqa: BLE001 - no answer: fine
            pass

    def on_authenticate(sid: str, data: Any = None) -> dict[str, Any]:
        seen["proofs"].append(data)
        seen["events_before"] = len(seen["events"])
        authenticated.set()
        return {"ok": True, "role": "puppet", "bot": "fuzzed"}

    sio.on("connect", on_connect)
    sio.on("authenticate", on_authenticate)
    sio.on("event", lambda sid, data=None: seen["events"].append(data) or {"ok": True})
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    node = NodeClient(
        {
            "server": {"token": token},
            "client": {
                "url": f"http://127.0.0.1:{port}",
                "bot": "fuzzed",
                "reconnect_delay_ms": 30,
                "reconnect_delay_max_ms": 60,
            },
            "puppet": {"name": "wechaty-puppet-mock"},
        }
    )
    await node.start()
    try:
        await asyncio.wait_for(authenticated.wait(), 90)
        assert seen["attempts"] == hostile_rounds + 1
        assert len(seen["proofs"]) == 1, "a proof only for the genuine challenge"
        assert seen["events_before"] == 0, "no event before the server proved itself"
        assert seen["exec_ok"] <= 1, "code ran only for the server that proved itself"
        print(f"\nnode handshake fuzz: {hostile_rounds} hostile challenges refused, then in")
    finally:
        await node.stop()
        await runner.cleanup()
    assert token not in node.log_tail(400)
