"""The wire side: aiohttp handlers for ``ilink/bot/*`` and the CDN, shaped like the real service.

Every answer the real service gives at HTTP 200 with ``ret`` / ``errcode`` is given the same
way here; faults (HTTP errors, hangs, malformed bodies) are applied around the real answer.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ._model import BotAccount, Fault
from ._world import World

__all__ = ["ApiRoutes"]

log = logging.getLogger("MetaPuppet.testing.ilink")
JSON = dict[str, Any]
Produce = Callable[[web.Request], Awaitable[JSON | web.StreamResponse]]
HUGE_CURSOR_BYTES = 10 * 1024 * 1024


def _json(obj: JSON, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(obj, ensure_ascii=False, separators=(",", ":")),
        status=status,
        content_type="application/json",
    )


def _wrong_type(value: Any) -> Any:
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, (int, float)):
        return str(value) + "x"
    if isinstance(value, str):
        return 12345
    if isinstance(value, list):
        return "not-a-list"
    if isinstance(value, dict):
        return ["not", "an", "object"]
    return {"unexpected": True}


def _mangle(answer: JSON, kind: str) -> web.Response:
    if kind == "not_json":
        return web.Response(
            text="<html><body>502 Bad Gateway</body></html>", content_type="text/html"
        )
    if kind == "empty_body":
        return web.Response(body=b"", content_type="application/json")
    if kind == "truncated_json":
        text = json.dumps(answer, separators=(",", ":"))
        return web.Response(text=text[: max(1, len(text) // 2)], content_type="application/json")
    if kind == "missing_fields":
        return _json({k: v for k, v in answer.items() if k == "ret"})
    if kind == "wrong_types":
        return _json({k: _wrong_type(v) for k, v in answer.items()})
    if kind == "huge_cursor":
        return _json({**answer, "get_updates_buf": "A" * HUGE_CURSOR_BYTES})
    return _json(answer)


def _uin_problem(value: str | None) -> str | None:
    if not value:
        return "header X-WECHAT-UIN is missing"
    try:
        text = base64.b64decode(value, validate=True).decode("ascii")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return "header X-WECHAT-UIN is not base64"
    if not text.isdigit() or int(text) >= 2**32:
        return "header X-WECHAT-UIN must be base64 of a uint32 written in decimal"
    return None


class ApiRoutes:
    """Adds the service's routes to an app; ``host_of`` names the host (main or redirect)."""

    def __init__(self, world: World, host_of: Callable[[web.Request], str]) -> None:
        self.world = world
        self.host_of = host_of

    def add_to(self, app: web.Application) -> None:
        qr = self._route("get_bot_qrcode", self._get_bot_qrcode)
        app.router.add_get("/ilink/bot/get_bot_qrcode", qr)
        app.router.add_post("/ilink/bot/get_bot_qrcode", qr)
        app.router.add_get(
            "/ilink/bot/get_qrcode_status", self._route("get_qrcode_status", self._qr_status)
        )
        handlers: dict[str, Callable[[web.Request, BotAccount, JSON], Awaitable[JSON]]] = {
            "getupdates": self._getupdates,
            "sendmessage": self._sendmessage,
            "getuploadurl": self._getuploadurl,
            "getconfig": self._getconfig,
            "sendtyping": self._sendtyping,
            "msg/notifystart": self._notify("start"),
            "msg/notifystop": self._notify("stop"),
        }
        for endpoint, produce in handlers.items():
            app.router.add_post(
                f"/ilink/bot/{endpoint}", self._route(endpoint, self._checked(endpoint, produce))
            )
        app.router.add_post("/c2c/upload", self._route("cdn/upload", self._cdn_upload))
        app.router.add_get("/c2c/download", self._route("cdn/download", self._cdn_download))

    # --- the wrapper every request goes through ------------------------------------------

    def _route(
        self, endpoint: str, produce: Produce
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            world = self.world
            world.count(endpoint, self.host_of(request))
            fault = world.take_fault(endpoint)
            if fault is not None:
                early = await self._early_fault(fault)
                if early is not None:
                    return early
                if endpoint == "cdn/upload" and fault.kind != "delay":
                    return web.Response(status=200)  # success without x-encrypted-param
                if endpoint == "cdn/download" and fault.kind != "delay":
                    # not a whole number of AES blocks: random bytes could by chance end
                    # in valid PKCS7 padding (about 1 time in 256) and decrypt to garbage
                    return web.Response(
                        body=os.urandom(33), content_type="application/octet-stream"
                    )
            result = await produce(request)
            if isinstance(result, web.StreamResponse):
                return result
            if fault is not None and fault.kind not in ("delay",):
                return _mangle(result, fault.kind)
            return _json(result)

        return handler

    async def _early_fault(self, fault: Fault) -> web.StreamResponse | None:
        if fault.kind == "http_error":
            return web.Response(status=fault.status, text=f"simulated HTTP {fault.status}")
        if fault.kind in ("hang", "delay"):
            default = 3600.0 if fault.kind == "hang" else 1.0
            await self.world.wait_until(
                lambda: False, fault.seconds if fault.seconds is not None else default
            )
            if fault.kind == "hang":
                return web.Response(status=504, text="simulated hang ended")
        return None

    async def _read_json(self, request: web.Request) -> JSON | str:
        limit = self.world.settings.max_json_body
        if request.content_length is not None and request.content_length > limit:
            return f"request body of {request.content_length} bytes is over the {limit}-byte limit"
        raw = await request.read()
        if len(raw) > limit:
            return f"request body of {len(raw)} bytes is over the {limit}-byte limit"
        try:
            body = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            return "request body is not JSON"
        if not isinstance(body, dict):
            return "request body must be a JSON object"
        return body

    def _checked(
        self, endpoint: str, produce: Callable[[web.Request, BotAccount, JSON], Awaitable[JSON]]
    ) -> Produce:
        """Reads the body, applies the header and ``base_info`` checks, then the token check."""

        async def run(request: web.Request) -> JSON | web.StreamResponse:
            world = self.world
            body = await self._read_json(request)
            if isinstance(body, str):
                world.violation(f"{endpoint}: {body}")
                status = 413 if "limit" in body else 200
                return _json({"ret": -1, "errmsg": f"{endpoint}: {body}"}, status=status)
            problems = []
            if request.content_type != "application/json":
                problems.append("header Content-Type must be application/json")
            if request.headers.get("AuthorizationType") != "ilink_bot_token":
                problems.append("header AuthorizationType must be ilink_bot_token")
            uin = _uin_problem(request.headers.get("X-WECHAT-UIN"))
            if uin:
                problems.append(uin)
            if world.settings.require_base_info:
                info = body.get("base_info")
                if not isinstance(info, dict) or not isinstance(info.get("channel_version"), str):
                    problems.append("body.base_info.channel_version (a string) is missing")
            for problem in problems:
                world.violation(f"{endpoint}: {problem}")
            if problems and world.settings.strict:
                return {"ret": -1, "errmsg": f"{endpoint}: " + "; ".join(problems)}
            auth = request.headers.get("Authorization", "")
            token = auth[7:].strip() if auth.startswith("Bearer ") else ""
            account = world.account_for_token(token) if token else None
            if account is None:
                return world.expired_answer()
            return await produce(request, account, body)

        return run

    # --- login ---------------------------------------------------------------------------

    async def _get_bot_qrcode(self, request: web.Request) -> JSON | web.StreamResponse:
        world = self.world
        bot_type = request.query.get("bot_type")
        problems = [] if bot_type == "3" else [f"query bot_type must be 3, got {bot_type!r}"]
        tokens: list[str] = []
        if request.method == "POST":
            body = await self._read_json(request)
            if isinstance(body, str):
                problems.append(body)
            else:
                listed = body.get("local_token_list", [])
                if not isinstance(listed, list) or not all(isinstance(t, str) for t in listed):
                    problems.append("local_token_list must be a list of strings")
                else:
                    tokens = listed
                    if len(listed) > 10:
                        problems.append("local_token_list holds at most 10 tokens")
        for problem in problems:
            world.violation(f"get_bot_qrcode: {problem}")
        if problems and world.settings.strict:
            return {"ret": -1, "errmsg": "get_bot_qrcode: " + "; ".join(problems)}
        qr = world.new_qrcode(tokens[:10])
        return {"qrcode": qr.qrcode, "qrcode_img_content": qr.img_content}

    async def _qr_status(self, request: web.Request) -> JSON | web.StreamResponse:
        world = self.world
        host = self.host_of(request)
        qrcode = request.query.get("qrcode", "")
        qr = world.qrcodes.get(qrcode)
        if qr is None:
            world.violation("get_qrcode_status: unknown qrcode (answered expired)")
            return {"status": "expired"}
        verify_code = request.query.get("verify_code") or None
        answer = world.qr_answer(qr, host, verify_code)
        if answer["status"] != qr.reported.get(host) or verify_code:
            qr.reported[host] = answer["status"]
            return answer
        seen = answer["status"]
        await world.wait_until(
            lambda: world.qr_answer(qr, host, None)["status"] != seen, world.settings.qr_hold_s
        )
        answer = world.qr_answer(qr, host, None)
        qr.reported[host] = answer["status"]
        return answer

    # --- the bot API ---------------------------------------------------------------------

    async def _getupdates(self, request: web.Request, account: BotAccount, body: JSON) -> JSON:
        world = self.world
        buf = body.get("get_updates_buf", "")
        if not isinstance(buf, str):
            world.violation("getupdates: get_updates_buf must be a string")
            return {"ret": -1, "errmsg": "getupdates: get_updates_buf must be a string"}
        start = world.updates_start(account, buf)
        token = account.token
        await world.wait_until(
            lambda: account.token != token or bool(world.pending(account, start)),
            world.settings.updates_hold_s,
        )
        if account.token != token:
            return world.expired_answer()
        batch = world.pending(account, start)
        last = batch[-1][0] if batch else start
        return {
            "ret": 0,
            "msgs": [payload for _, payload in batch],
            "get_updates_buf": world.cursor(account, last),
            "longpolling_timeout_ms": world.longpolling_timeout_ms,
        }

    async def _sendmessage(self, request: web.Request, account: BotAccount, body: JSON) -> JSON:
        return self.world.send(account, body)

    async def _getuploadurl(self, request: web.Request, account: BotAccount, body: JSON) -> JSON:
        return self.world.cdn.register_upload(account.bot_id, body)

    async def _getconfig(self, request: web.Request, account: BotAccount, body: JSON) -> JSON:
        return self.world.typing_ticket(account, body.get("ilink_user_id"))

    async def _sendtyping(self, request: web.Request, account: BotAccount, body: JSON) -> JSON:
        return self.world.set_typing(account, body)

    def _notify(self, kind: str) -> Callable[[web.Request, BotAccount, JSON], Awaitable[JSON]]:
        async def record(request: web.Request, account: BotAccount, body: JSON) -> JSON:
            self.world.notifications.append(
                {"kind": kind, "bot_id": account.bot_id, "at_ms": self.world.now_ms()}
            )
            self.world.notify()
            return {"ret": 0}

        return record

    # --- CDN -----------------------------------------------------------------------------

    async def _cdn_upload(self, request: web.Request) -> web.StreamResponse:
        world = self.world
        limit = world.settings.max_upload_bytes + 16
        if request.content_length is not None and request.content_length > limit:
            return web.Response(status=413, headers={"x-error-message": "file too large"})
        body = await request.read()
        if len(body) > limit:
            return web.Response(status=413, headers={"x-error-message": "file too large"})
        param = request.query.get("encrypted_query_param", "")
        filekey = request.query.get("filekey", "")
        download, problem = world.cdn.accept_upload(param, filekey, body)
        if download is None:
            world.violation(f"cdn upload refused: {problem}")
            return web.Response(status=400, headers={"x-error-message": problem})
        return web.Response(status=200, headers={"x-encrypted-param": download})

    async def _cdn_download(self, request: web.Request) -> web.StreamResponse:
        ciphertext = self.world.cdn.blob(request.query.get("encrypted_query_param", ""))
        if ciphertext is None:
            return web.Response(status=404, headers={"x-error-message": "no such file"})
        return web.Response(body=ciphertext, content_type="application/octet-stream")
