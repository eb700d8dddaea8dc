"""A minimal iLink client for the simulator's tests, shaped like the official one's requests."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
from typing import Any

import aiohttp

from MetaPuppet.testing.ilink import ILinkSimulator, SimUser, encrypt, padded_size

JSON = dict[str, Any]
BASE_INFO = {"channel_version": "2.4.9", "bot_agent": "MetaPuppetTest/1.0"}


def uin() -> str:
    return base64.b64encode(str(random.getrandbits(32)).encode()).decode()


class Client:
    def __init__(self, session: aiohttp.ClientSession, sim: ILinkSimulator) -> None:
        self.session = session
        self.sim = sim
        self.base_url = sim.base_url
        self.token: str | None = None

    def headers(self, token: str | None = None) -> dict[str, str]:
        h = {
            "Content-Type": "application/json",
            "AuthorizationType": "ilink_bot_token",
            "X-WECHAT-UIN": uin(),
            "iLink-App-Id": "bot",
            "iLink-App-ClientVersion": str((2 << 16) | (4 << 8) | 9),
        }
        token = token or self.token
        if token:
            h["Authorization"] = f"Bearer {token}"
        return h

    async def raw(
        self,
        endpoint: str,
        body: JSON,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        base: str | None = None,
        timeout: float = 10.0,
    ) -> aiohttp.ClientResponse:
        resp = await self.session.post(
            f"{base or self.base_url}/ilink/bot/{endpoint}",
            data=json.dumps(body),
            headers=self.headers(token) if headers is None else headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        )
        await resp.read()
        return resp

    async def call(self, endpoint: str, body: JSON | None = None, **kw: Any) -> JSON:
        payload = {**(body or {}), "base_info": BASE_INFO}
        resp = await self.raw(endpoint, payload, **kw)
        assert resp.status == 200, (resp.status, await resp.text())
        answer = json.loads(await resp.text())
        assert isinstance(answer, dict)
        return answer

    async def fetch_qr(self, post: bool = False, tokens: list[str] | None = None) -> JSON:
        url = f"{self.base_url}/ilink/bot/get_bot_qrcode?bot_type=3"
        if post:
            resp = await self.session.post(
                url, data=json.dumps({"local_token_list": tokens or []}), headers=self.headers("")
            )
        else:
            resp = await self.session.get(url)
        assert resp.status == 200
        answer: JSON = await resp.json()
        return answer

    async def poll(
        self, qrcode: str, verify_code: str | None = None, base: str | None = None
    ) -> JSON:
        params = {"qrcode": qrcode}
        if verify_code:
            params["verify_code"] = verify_code
        resp = await self.session.get(
            f"{base or self.base_url}/ilink/bot/get_qrcode_status", params=params
        )
        assert resp.status == 200
        answer: JSON = await resp.json()
        return answer

    async def login(self, user: SimUser) -> JSON:
        qr = await self.fetch_qr()
        self.sim.scan(user, qr["qrcode"])
        self.sim.confirm(qr["qrcode"])
        status = await self.poll(qr["qrcode"])
        assert status["status"] == "confirmed", status
        self.token = status["bot_token"]
        return status

    async def updates(self, buf: str = "", **kw: Any) -> JSON:
        return await self.call("getupdates", {"get_updates_buf": buf}, **kw)

    async def send(self, to: str, context_token: str | None, items: list[JSON], **kw: Any) -> JSON:
        msg: JSON = {
            "from_user_id": "",
            "to_user_id": to,
            "client_id": "test-" + os.urandom(6).hex(),
            "message_type": 2,
            "message_state": 2,
            "item_list": items,
        }
        if context_token is not None:
            msg["context_token"] = context_token
        return await self.call("sendmessage", {"msg": msg}, **kw)

    async def send_text(self, to: str, context_token: str | None, text: str) -> JSON:
        return await self.send(to, context_token, [{"type": 1, "text_item": {"text": text}}])

    async def upload(
        self, to: str, data: bytes, media_type: int, key: bytes | None = None
    ) -> tuple[str, bytes]:
        """getuploadurl + CDN POST: the download param and the key used."""
        key = key or os.urandom(16)
        filekey = os.urandom(16).hex()
        answer = await self.call(
            "getuploadurl",
            {
                "filekey": filekey,
                "media_type": media_type,
                "to_user_id": to,
                "rawsize": len(data),
                "rawfilemd5": hashlib.md5(data).hexdigest(),
                "filesize": padded_size(len(data)),
                "no_need_thumb": True,
                "aeskey": key.hex(),
            },
        )
        assert "upload_full_url" in answer, answer
        resp = await self.session.post(
            answer["upload_full_url"],
            data=encrypt(data, key),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert resp.status == 200, (resp.status, resp.headers.get("x-error-message"))
        return resp.headers["x-encrypted-param"], key

    async def download(self, media: JSON) -> bytes:
        url = media.get("full_url") or (
            f"{self.sim.cdn_base_url}/download?encrypted_query_param={media['encrypt_query_param']}"
        )
        resp = await self.session.get(url)
        assert resp.status == 200
        return await resp.read()
