"""Hostile input over real sockets: at least 10,000 random or malformed payloads to every
event name, from authenticated clients and from strangers. The server must not crash, must
still serve a normal exec afterwards, and its memory must not grow without bound.
"""

from __future__ import annotations

import asyncio
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
            {**good, "protocol": rng.choice([1, 3, "2", None, 2.0, True])},
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
                with pytest.raises(socketio.exceptions.ConnectionError):
                    await stranger.connect(
                        server.url, auth=auth, transports=["websocket"], wait_timeout=5
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
