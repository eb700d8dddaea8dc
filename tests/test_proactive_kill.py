"""A kill -9 of a real server process with proactive messages queued loses none: the Node
client on the ilink puppet, the iLink simulator, `metapuppet serve` as its own process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from MetaPuppet.config import new_token
from MetaPuppet.testing import NodeClient
from MetaPuppet.testing.ilink import ILinkSimulator

from .conftest import free_port

pytestmark = pytest.mark.e2e


async def _serve(folder: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAPUPPET_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "MetaPuppet", "serve", "--config", "config.json",
        cwd=folder, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    while b"MetaPuppet serving" not in (
        line := await asyncio.wait_for(process.stdout.readline(), 30)
    ):
        assert line, "the server exited before serving"
    return process


async def _until(check: Any, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_kill_9_with_queued_proactive_messages_loses_none(tmp_path: Path):
    token, port = new_token(), free_port()
    config = {
        "server": {"token": token, "port": port, "data_dir": "data", "rate_limit": "off"},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    sim = ILinkSimulator()
    await sim.start()
    url = f"http://127.0.0.1:{port}"
    node = NodeClient(
        {
            "server": {"token": token},
            "client": {"url": url, "bot": "shop", "reconnect_delay_max_ms": 500},
            "puppet": {
                "name": "ilink",
                "options": {"base_url": sim.base_url, "cdn_base_url": sim.cdn_base_url},
            },
        },
        log_level="warn",
    )
    owner = sim.create_user("owner")
    accounts: list[Any] = []

    async def scan() -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                qr = await sim.wait_qr(timeout=3600)
                if qr.user_id is None:
                    sim.scan(owner, qr.qrcode)
                    accounts.append(sim.confirm(qr.qrcode))
            await asyncio.sleep(0.05)

    server = await _serve(tmp_path)
    scanner = asyncio.create_task(scan())
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with aiohttp.ClientSession(url, headers=headers) as http:

            async def logged_in() -> bool:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get("/api/bots") as r:
                        bots = (await r.json())["bots"]
                        return any(b["bot"] == "shop" and b["connected"] for b in bots)
                return False

            await node.start()
            await _until(logged_in, "the bot to connect", 60)
            await _until(lambda: asyncio.sleep(0, bool(accounts)), "the QR login", 60)
            alice = sim.create_user("Alice")
            ids = []
            for text in ("report 1", "report 2"):
                async with http.post("/api/outbox", json={"to": alice.user_id, "text": text}) as r:
                    assert r.status == 200, await r.text()
                    body = await r.json()
                    assert body["state"] == "queued", body
                    ids.append(body["id"])
            server.send_signal(signal.SIGKILL)
            await server.wait()
            database = tmp_path / "data" / "proactive.db"
            assert database.stat().st_mode & 0o777 == 0o600
            assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700

            server = await _serve(tmp_path)
            await _until(logged_in, "the bot to reconnect to the new server", 60)
            async with http.get("/api/outbox?state=queued") as r:
                assert {m["id"] for m in (await r.json())["messages"]} == set(ids)
            alice.send_text("hi", bot_id=accounts[0].bot_id)
            sent = await alice.wait_sent(3, timeout=30)
            assert [m.text for m in sent] == ["ih", "report 1", "report 2"]
            for message_id in ids:

                async def delivered(message_id: str = message_id) -> bool:
                    async with http.get(f"/api/outbox/{message_id}") as r:
                        return (await r.json())["state"] == "delivered"

                await _until(delivered, "the delivered state")
            await asyncio.sleep(0.5)
            assert len(alice.sent()) == 3  # each exactly once
    finally:
        scanner.cancel()
        if server.returncode is None:
            server.kill()
            await server.wait()
        await node.stop()
        await sim.stop()
