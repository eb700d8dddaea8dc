"""The hub's direct-write fan-out path keeps every guarantee of the queued path: order,
compression, clients that upgrade from polling, and frames emitted in between."""

import asyncio
import json

import aiohttp
import socketio

from MetaPuppet.web_client import connect

from .conftest import make_event, message_payload, server_factory  # noqa: F401
from .hostile import raw_handshake
from .test_web_unit import MAIN, server, wait_for, web_config  # noqa: F401


async def test_compressed_raw_client_and_order(server):
    url = server.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    got = []
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(url, compress=15) as ws:
            assert ws.compress == 15
            assert (await ws.receive_str()).startswith("0")
            await raw_handshake(ws.send_str, ws.receive_str, MAIN)
            await ws.send_str('421["subscribe",null]')
            while not (m := await ws.receive_str()).startswith("431"):
                pass
            for i in range(200):
                await server.handle_event(
                    make_event("message", message_payload(f"m{i}", talker=f"t{i}"))
                )
                if i % 7 == 0:
                    await server.emit_to_web("note", {"after": i})
                if i % 13 == 0:
                    await asyncio.sleep(0.006)
            while sum(1 for g in got if g[0] == "m") < 200:
                m = await asyncio.wait_for(ws.receive_str(), 5)
                if m.startswith('42["events"'):
                    got += [("m", int(e["payload"]["text"][1:])) for e in json.loads(m[2:])[1]]
                elif m.startswith('42["note"'):
                    got.append(("n", json.loads(m[2:])[1]["after"]))
    assert [i for k, i in got if k == "m"] == list(range(200))
    # a note emitted before event i+1 reached the hub arrives before event i+1
    for pos, (k, i) in enumerate(got):
        if k == "n":
            assert all(j <= i for kk, j in got[:pos] if kk == "m"), (i, got[:pos][-5:])
    assert server.web.direct_frames > 0


async def test_polling_then_upgrade_client(server):
    client = socketio.AsyncClient(reconnection=False)
    received = []
    client.on("events", lambda batch: received.extend(batch))
    await connect(server.url, MAIN, client=client, transports=None, wait_timeout=5)
    try:
        assert (await client.call("subscribe", None, timeout=5))["ok"]
        await asyncio.sleep(0.3)
        for i in range(100):
            await server.handle_event(
                make_event("message", message_payload(f"m{i}", talker=f"t{i}"))
            )
            await asyncio.sleep(0.002)
        await wait_for(lambda: len(received) == 100)
        assert [e["payload"]["text"] for e in received] == [f"m{i}" for i in range(100)]
        assert client.transport() == "websocket"
        assert server.web.direct_frames > 0
    finally:
        await client.disconnect()


async def test_a_frame_right_after_an_engineio_packet_waits_its_turn(server):
    client = socketio.AsyncClient(reconnection=False)
    seen = []
    client.on("events", lambda batch: seen.append(("events", batch[0])))
    client.on("note", lambda data: seen.append(("note", data)))
    await connect(server.url, MAIN, client=client, wait_timeout=5)
    try:
        sid = client.get_sid("/")
        await asyncio.sleep(0.2)
        hub = server.web
        q0, d0 = hub.queued_frames, hub.direct_frames
        await server.emit_to_web("note", 1)  # queued in Engine.IO, not yet written
        await server.transport.send_to_many("events", [2], [sid])  # must not overtake it
        await asyncio.sleep(0.05)
        await server.transport.send_to_many("events", [3], [sid])  # writer idle again: direct
        await wait_for(lambda: len(seen) == 3)
        assert seen == [("note", 1), ("events", 2), ("events", 3)]
        assert hub.queued_frames - q0 == 1 and hub.direct_frames - d0 == 1
    finally:
        await client.disconnect()
