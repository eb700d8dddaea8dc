"""Identity and access end to end: the mutual handshake, no silent bot takeover, per-bot
tokens, strong tokens on public binds, and the Origin / Host checks, with the real Node
client where a puppet is involved."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import aiohttp
import pytest
import socketio
from aiohttp import web

from MetaPuppet import Config, SweetSocketServer, TestBot, protocol
from MetaPuppet.config import new_token
from MetaPuppet.errors import AuthenticationError, ConfigError
from MetaPuppet.testing import NodeClient, mock_wechat
from MetaPuppet.web_client import connect, connect_sync

from .conftest import free_port
from .hostile import RawWebSocket

pytestmark = pytest.mark.e2e


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(0.05)


class Impostor:
    """A Socket.IO server that takes any client, as a program that took over the port while
    the real server restarted would: it records what clients send and tries to run code."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncServer(async_mode="aiohttp", logger=False, engineio_logger=False)
        self.app = web.Application()
        self.sio.attach(self.app)
        self.auths: list[Any] = []
        self.events: list[Any] = []
        self.proofs: list[Any] = []
        self.exec_answers: list[Any] = []
        self.sio.on("connect", self.on_connect)
        self.sio.on("event", lambda sid, data=None: self.events.append(data) or {"ok": True})
        self.sio.on("authenticate", lambda sid, data=None: self.proofs.append(data) or {"ok": True})
        self.runner: web.AppRunner | None = None
        self.port = free_port()

    async def on_connect(self, sid: str, environ: Any, auth: Any = None) -> None:
        self.auths.append(auth)
        self.sio.start_background_task(self.attack, sid)

    async def attack(self, sid: str) -> None:
        # a proof it cannot make: the client must not answer, send events or run code
        await self.sio.emit("challenge", {"nonce": "1" * 64, "proof": "0" * 64}, to=sid)
        try:
            answer = await self.sio.call("exec", {"code": "return process.pid"}, to=sid, timeout=2)
        except Exception:  # noqa: BLE001 - no answer at all is fine too
            answer = None
        self.exec_answers.append(answer)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Impostor:
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def test_the_node_client_refuses_a_server_that_cannot_prove_it_holds_the_token():
    token = new_token()
    async with Impostor() as impostor:
        node = NodeClient(
            {
                "server": {"token": token},
                "client": {"url": impostor.url, "bot": "victim", "reconnect_delay_ms": 100},
                "puppet": {"name": "wechaty-puppet-mock"},
            },
            log_level="info",
        )
        await node.start()
        try:
            await wait_until(lambda: impostor.exec_answers, 60, "a connection attempt")
            # the client leaves and tries again later (the real server may be restarting)
            with contextlib.suppress(AssertionError):
                await wait_until(lambda: len(impostor.exec_answers) >= 2, 10, "a second attempt")
            log = node.log_tail(200)
        finally:
            await node.stop()
    wire = json.dumps(impostor.auths)
    assert token not in wire, "the token itself must never travel"
    assert all(isinstance(a, dict) and "token" not in a for a in impostor.auths)
    assert all(a is None or a.get("ok") is False for a in impostor.exec_answers), "no code ran"
    assert impostor.events == [], "no event for a server that did not prove itself"
    assert impostor.proofs == [], "no proof either"
    assert "could not prove it holds the token: refusing to talk to it" in log
    assert len(impostor.auths) >= 2
    nonces = [a["nonce"] for a in impostor.auths]
    assert len(set(nonces)) == len(nonces), "a fresh nonce on every attempt"


async def test_python_web_clients_refuse_an_impostor_too(caplog):
    caplog.set_level(logging.ERROR, "MetaPuppet.web_client")
    async with Impostor() as impostor:
        with pytest.raises(AuthenticationError, match="could not prove it holds the token"):
            await connect(impostor.url, "a-web-token-of-enough-length")
        with pytest.raises(AuthenticationError, match="could not prove it holds the token"):
            await asyncio.to_thread(connect_sync, impostor.url, "a-web-token-of-enough-length")
    assert impostor.proofs == []
    assert any("could not prove" in r.getMessage() for r in caplog.records)


async def test_a_second_puppet_with_a_connected_bots_name_is_refused_on_both_sides(caplog):
    caplog.set_level(logging.WARNING, "MetaPuppet.server")
    async with mock_wechat(TestBot()) as wx:
        server = wx.server
        first = server.registry.get("mock-bot")
        pid = await server.exec_snippet("return process.pid")
        second = NodeClient(
            {
                "server": {"token": server.token},
                "client": {"url": server.url, "bot": "mock-bot", "reconnect_delay_ms": 200},
                "puppet": {"name": "wechaty-puppet-mock"},
            }
        )
        await second.start()
        try:
            await wait_until(
                lambda: "is already connected" in second.log_tail(50), 60, "the refusal"
            )
            await asyncio.sleep(1.0)
            assert server.registry.get("mock-bot") is first, "the first keeps its bot"
            assert await server.exec_snippet("return process.pid") == pid
            assert second.returncode is None, "the newcomer waits and retries (a standby)"
            assert "client.replace_existing" in second.log_tail(50)
        finally:
            await second.stop()
    refusals = [
        r.getMessage() for r in caplog.records if "refused a second puppet" in r.getMessage()
    ]
    assert refusals and "'mock-bot'" in refusals[0]


async def test_replace_existing_hands_the_bot_over():
    async with mock_wechat(TestBot()) as wx:
        server = wx.server
        old_pid = await server.exec_snippet("return process.pid")
        newcomer = NodeClient(
            {
                "server": {"token": server.token},
                "client": {"url": server.url, "bot": "mock-bot", "replace_existing": True},
                "puppet": {"name": "wechaty-puppet-mock"},
            }
        )
        await newcomer.start()
        try:
            assert newcomer.process is not None
            new_pid = newcomer.process.pid

            async def answering_pid() -> Any:
                try:
                    return await server.exec_snippet("return process.pid", timeout=5)
                except Exception:  # noqa: BLE001 - mid hand-over
                    return None

            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and await answering_pid() in (old_pid, None):
                await asyncio.sleep(0.3)
            assert await answering_pid() != old_pid
            assert await answering_pid() == await answering_pid()  # and it stays there
            assert new_pid
            # the old client is refused from now on (it has no replace_existing)
            await wait_until(
                lambda: "is already connected" in wx.bot().node.log_tail(50),
                30,
                "the old one refused",
            )
        finally:
            await newcomer.stop()


async def test_a_half_open_connection_does_not_keep_its_bot_from_the_real_client(caplog):
    caplog.set_level(logging.WARNING, "MetaPuppet.server")
    async with mock_wechat(TestBot(), bots=[]) as wx:
        server = wx.server
        # a puppet whose peer stopped answering (it never acknowledges the probe)
        ghost = socketio.AsyncClient(reconnection=False)

        async def never_answers(data: Any = None) -> None:
            await asyncio.Event().wait()

        ghost.on("echo", never_answers)
        await connect(server.url, server.token, role="puppet", bot="mock-bot", client=ghost)
        assert server.bots == ["mock-bot"]
        started = time.monotonic()
        await wx.add_bot("mock-bot")  # the real client logs in despite the ghost
        took = time.monotonic() - started
        assert await server.exec_snippet("return 'real'") == "real"
        await wait_until(lambda: not ghost.connected, 10, "the ghost disconnected")
        print(f"\nhalf-open connection replaced; the real client was in after {took:.1f} s")
    assert any("did not answer within 3.0 s" in r.getMessage() for r in caplog.records)


async def test_per_bot_tokens_open_their_bot_only():
    shop_token = new_token()
    config = Config()
    config.raw["server"]["bot_tokens"] = {"shop": shop_token}
    server = SweetSocketServer(config=config, token=new_token(), port=0, rate_limiter=None)
    async with mock_wechat(server=server, bots=[]) as wx:
        url = wx.server.url
        with pytest.raises(AuthenticationError, match="invalid token"):
            await connect(
                url, wx.server.token, role="puppet", bot="shop"
            )  # not even the main token
        with pytest.raises(AuthenticationError, match="invalid token"):
            await connect(url, shop_token, role="puppet", bot="other")
        with pytest.raises(AuthenticationError, match="invalid token"):
            await connect(url, shop_token)  # a bot token is no web token
        # the real Node client picks server.bot_tokens[client.bot] from its config
        node = NodeClient(
            {
                "server": {"token": "not-the-right-one", "bot_tokens": {"shop": shop_token}},
                "client": {"url": url, "bot": "shop"},
                "puppet": {"name": "wechaty-puppet-mock"},
            }
        )
        await node.start()
        try:
            await wx.server.async_wait_for_puppet(60, bot="shop")
            assert await wx.server.exec_snippet("return 'shop'", bot="shop") == "shop"
            assert shop_token not in node.log_tail(200)
        finally:
            await node.stop()


@pytest.mark.parametrize(
    "section,key,value",
    [
        ("server", "puppet_token", "abc"),
        ("server", "web_token", "short-web"),
        ("server", "bot_tokens", {"shop": "tiny"}),
    ],
)
async def test_a_public_bind_refuses_any_weak_role_token(section, key, value):
    config = Config()
    config.raw[section][key] = value
    server = SweetSocketServer(config=config, token=new_token(), port=0, rate_limiter=None)
    with pytest.raises(ConfigError, match=f"refusing to listen on 0.0.0.0.*{key}") as caught:
        await server.start(host="0.0.0.0", port=0)
    weak = value if isinstance(value, str) else next(iter(value.values()))
    assert weak not in str(caught.value)
    await server.start(host="127.0.0.1", port=0)  # loopback stays the user's choice
    await server.stop()


async def test_host_header_must_name_this_server():
    token = new_token()
    config = Config()
    config.raw["server"]["allowed_hosts"] = ["bot.example.org"]
    server = SweetSocketServer(config=config, token=token, port=0, rate_limiter=None)
    await server.start(host="127.0.0.1", port=0)
    try:
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as session:
            for path in ("/api/health", "/", "/socket.io/?EIO=4&transport=polling"):
                async with session.get(
                    server.url + path, headers={**auth, "Host": "evil.example:8080"}
                ) as response:
                    assert response.status == 421, path
                    assert (await response.json())["error"] == "host_not_allowed"
            for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", "bot.example.org"):
                async with session.get(
                    server.url + "/api/health", headers={**auth, "Host": host}
                ) as response:
                    assert response.status == 200, host
    finally:
        await server.stop()


async def test_browser_socket_connections_must_come_from_an_allowed_origin():
    token = new_token()
    config = Config()
    config.raw.setdefault("web", {})["allowed_origins"] = ["https://app.example"]
    server = SweetSocketServer(config=config, token=token, port=0, rate_limiter=None)
    await server.start(host="127.0.0.1", port=0)
    try:
        same = f"http://127.0.0.1:{server.port}"
        for origin, allowed in (
            ("http://evil.example", False),
            ("null", False),
            (same, True),
            ("https://app.example", True),
        ):
            try:
                ws = await RawWebSocket.open(server.port, headers={"Origin": origin})
                ws.close()
                opened = True
            except ConnectionRefusedError:
                opened = False
            assert opened is allowed, origin
        # clients that send no Origin (programs, the Node client) are not browsers
        client = await connect(server.url, token)
        await client.disconnect()
    finally:
        await server.stop()


async def test_a_replayed_connect_and_a_wrong_proof_are_refused():
    token = new_token()
    server = SweetSocketServer(config=Config(), token=token, port=0, rate_limiter=None)
    server.auth_free_failures = 100
    await server.start(host="127.0.0.1", port=0)
    try:
        payload = protocol.auth_payload(token, "web")
        first = socketio.AsyncClient(reconnection=False)
        challenges: list[Any] = []
        first.on("challenge", challenges.append)
        await first.connect(server.url, auth=payload, transports=["websocket"])
        await wait_until(lambda: challenges, 5, "the challenge")
        # events before authenticating are refused
        refused = await first.call("subscribe", {}, timeout=5)
        assert refused["ok"] is False and refused["error"]["kind"] == "forbidden"
        # a wrong proof ends the handshake: refused, then disconnected
        answer = await first.call("authenticate", {"proof": "0" * 64}, timeout=5)
        assert answer["ok"] is False and "invalid proof" in answer["error"]["message"]
        await wait_until(lambda: not first.connected, 5, "the disconnect")
        # the very same connect payload again: refused, it was seen before
        replay = socketio.AsyncClient(reconnection=False)
        reasons: list[Any] = []
        replay.on("connect_error", reasons.append)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await replay.connect(server.url, auth=payload, transports=["websocket"])
        assert "seen before" in str(reasons)
        assert server.list_clients() == []
    finally:
        await server.stop()
