"""The HTTP control API under ``/_sim/``: the same controls as the Python API, for tests that run
in another process (the Node puppet's tests). Every call needs ``Authorization: Bearer <control
token>``; the routes and bodies are listed in the package docstring.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ._budget import BudgetRules
from ._model import Fault, InboundMessage, SimulatorError
from ._world import World

__all__ = ["ControlRoutes"]

JSON = dict[str, Any]
Handler = Callable[[web.Request, JSON], Awaitable[JSON]]
MAX_CONTROL_BODY = 160 * 1024 * 1024
MAX_WAIT_S = 60.0


def _json(obj: JSON, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(obj, separators=(",", ":")), status=status, content_type="application/json"
    )


def _str(body: JSON, name: str, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise SimulatorError(f"{name} must be a non-empty string")
    return value


def _number(body: JSON, name: str, default: float) -> float:
    value = body.get(name, default)
    if isinstance(value, str):  # query parameters arrive as text
        try:
            value = float(value)
        except ValueError:
            raise SimulatorError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise SimulatorError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def _data(body: JSON) -> bytes:
    text = _str(body, "data_b64")
    assert text is not None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SimulatorError("data_b64 is not valid base64") from None


class ControlRoutes:
    def __init__(self, world: World, control_token: str) -> None:
        self.world = world
        self._token = control_token

    def add_to(self, app: web.Application) -> None:
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "info", self._info),
            ("GET", "users", self._users),
            ("POST", "users", self._create_user),
            ("GET", "accounts", self._accounts),
            ("GET", "qr", self._qrcodes),
            ("POST", "qr/wait", self._qr_wait),
            ("POST", "qr/scan", self._qr_scan),
            ("POST", "qr/confirm", self._qr_confirm),
            ("POST", "qr/state", self._qr_state),
            ("POST", "messages", self._message),
            ("POST", "hostile", self._hostile),
            ("POST", "session/expire", self._expire),
            ("GET", "sent", self._sent),
            ("GET", "refused", self._refused),
            ("GET", "typing", self._typing),
            ("GET", "budget", self._budget),
            ("POST", "budget", self._set_budget),
            ("GET", "settings", self._settings),
            ("POST", "settings", self._set_settings),
            ("GET", "faults", self._faults),
            ("POST", "faults", self._add_fault),
            ("DELETE", "faults", self._clear_faults),
            ("GET", "requests", self._requests),
            ("POST", "requests/reset", self._reset_requests),
            ("GET", "clock", self._clock),
            ("POST", "clock/advance", self._advance_clock),
            ("GET", "notifications", self._notifications),
            ("GET", "violations", self._violations),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, f"/_sim/{path}", self._guard(handler))

    def _guard(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def run(request: web.Request) -> web.StreamResponse:
            auth = request.headers.get("Authorization", "")
            given = auth[7:].strip() if auth.startswith("Bearer ") else ""
            if not given or not hmac.compare_digest(given.encode(), self._token.encode()):
                return _json(
                    {"error": "missing or wrong control token (Authorization: Bearer <token>)"}, 401
                )
            body: JSON = dict(request.query)
            if request.method in ("POST", "DELETE") and request.can_read_body:
                if (request.content_length or 0) > MAX_CONTROL_BODY:
                    return _json({"error": f"control body over {MAX_CONTROL_BODY} bytes"}, 413)
                try:
                    parsed = json.loads(await request.read() or b"{}")
                except ValueError:
                    return _json({"error": "control body is not JSON"}, 400)
                if not isinstance(parsed, dict):
                    return _json({"error": "control body must be a JSON object"}, 400)
                body.update(parsed)
            try:
                return _json(await handler(request, body))
            except (SimulatorError, ValueError, TypeError) as exc:
                return _json({"error": str(exc)}, 400)
            except TimeoutError as exc:
                return _json({"error": str(exc) or "timed out"}, 408)

        return run

    # --- handlers ------------------------------------------------------------------------

    async def _info(self, request: web.Request, body: JSON) -> JSON:
        w = self.world
        return {
            "base_url": w.base_url,
            "cdn_base_url": w.cdn_base_url,
            "redirect_base_url": w.redirect_base_url,
            "redirect_host": w.redirect_host,
            "control_url": w.base_url + "/_sim",
        }

    async def _users(self, request: web.Request, body: JSON) -> JSON:
        return {"users": [u.to_json() for u in self.world.users.values()]}

    async def _create_user(self, request: web.Request, body: JSON) -> JSON:
        return {"user": self.world.create_user(_str(body, "name", required=False)).to_json()}

    async def _accounts(self, request: web.Request, body: JSON) -> JSON:
        return {"accounts": [a.to_json() for a in self.world.accounts.values()]}

    async def _qrcodes(self, request: web.Request, body: JSON) -> JSON:
        return {"qrcodes": [self._qr_view(q.qrcode) for q in self.world.qrcodes.values()]}

    def _qr_view(self, qrcode: str) -> JSON:
        qr = self.world.qrcodes[qrcode]
        self.world.qr_status(qr)
        return qr.to_json()

    async def _qr_wait(self, request: web.Request, body: JSON) -> JSON:
        """Wait until the client has fetched an open QR code (a newer one than ``after``)."""
        after = _str(body, "after", required=False)
        timeout = min(MAX_WAIT_S, _number(body, "timeout", 5.0))

        def open_qr() -> bool:
            try:
                return self.world.qr().qrcode != after
            except SimulatorError:
                return False

        if not await self.world.wait_until(open_qr, timeout):
            raise TimeoutError(
                f"no new open QR code within {timeout} s (has the client called get_bot_qrcode?)"
            )
        return {"qr": self._qr_view(self.world.qr().qrcode)}

    async def _qr_scan(self, request: web.Request, body: JSON) -> JSON:
        qr = self.world.scan(_str(body, "user_id") or "", _str(body, "qrcode", required=False))
        return {"qr": self._qr_view(qr.qrcode)}

    async def _qr_confirm(self, request: web.Request, body: JSON) -> JSON:
        account = self.world.confirm(_str(body, "qrcode", required=False))
        qr = next(q for q in reversed(self.world.qrcodes.values()) if q.bot_id == account.bot_id)
        return {"qr": self._qr_view(qr.qrcode), "account": account.to_json()}

    async def _qr_state(self, request: web.Request, body: JSON) -> JSON:
        qr = self.world.set_qr_state(
            _str(body, "status") or "",
            _str(body, "qrcode", required=False),
            _str(body, "user_id", required=False),
        )
        return {"qr": self._qr_view(qr.qrcode)}

    async def _message(self, request: web.Request, body: JSON) -> JSON:
        w = self.world
        user_id = _str(body, "user_id") or ""
        kind = _str(body, "kind") or ""
        bot_id = _str(body, "bot_id", required=False)
        created = body.get("create_time_ms")
        if created is not None and (isinstance(created, bool) or not isinstance(created, int)):
            raise SimulatorError("create_time_ms must be an integer")
        key_form = _str(body, "key_form", required=False) or "auto"
        if kind == "text":
            items = [w.text_item(_str(body, "text") or "")]
        elif kind in ("image", "voice", "file", "video"):
            playtime = body.get("playtime_ms")
            items = [
                w.media_item(
                    kind,
                    _data(body),
                    key_form,
                    file_name=_str(body, "file_name", required=False),
                    transcript=_str(body, "transcript", required=False),
                    playtime_ms=playtime if isinstance(playtime, int) else None,
                )
            ]
        elif kind == "quote":
            quoted_id = _str(body, "quote_message_id", required=False)
            quoted: InboundMessage | str
            if quoted_id is not None:
                quoted = self._inbound(quoted_id)
            else:
                quoted = _str(body, "quote_text") or ""
            items = [
                w.quote_item(_str(body, "text") or "", quoted, _str(body, "title", required=False))
            ]
        elif kind == "items":
            raw = body.get("items")
            if not isinstance(raw, list) or not all(isinstance(i, dict) for i in raw):
                raise SimulatorError("items must be a list of message items (objects)")
            items = raw
        else:
            raise SimulatorError(
                f"unknown kind {kind!r}; use text, image, voice, file, video, quote or items"
            )
        message = w.deliver(user_id, items, bot_id, created)
        return {"message": message.to_json()}

    def _inbound(self, message_id: str) -> InboundMessage:
        for account in self.world.accounts.values():
            for seq, payload in account.log:
                if str(payload.get("message_id")) == message_id:
                    token = payload.get("context_token")
                    return InboundMessage(
                        message_id,
                        seq,
                        account.bot_id,
                        str(payload.get("from_user_id")),
                        token if isinstance(token, str) else None,
                        int(payload.get("create_time_ms") or 0),
                        payload,
                    )
        raise SimulatorError(
            f"no message {message_id!r} to quote (only retained messages can be quoted)"
        )

    async def _hostile(self, request: web.Request, body: JSON) -> JSON:
        message = self.world.hostile(
            _str(body, "user_id") or "",
            _str(body, "kind") or "",
            _str(body, "bot_id", required=False),
        )
        return {"message": message.to_json()}

    async def _expire(self, request: web.Request, body: JSON) -> JSON:
        return {
            "account": self.world.expire_session(_str(body, "bot_id", required=False)).to_json()
        }

    async def _sent(self, request: web.Request, body: JSON) -> JSON:
        user_id = _str(body, "user_id") or ""
        wanted = int(_number(body, "min", 0))
        timeout = min(MAX_WAIT_S, _number(body, "timeout", 0))
        if wanted and not await self.world.wait_until(
            lambda: len(self.world.sent_to(user_id)) >= wanted, timeout
        ):
            got = len(self.world.sent_to(user_id))
            raise TimeoutError(
                f"the bot sent {got} message(s) to {user_id}, not {wanted}, within {timeout} s"
            )
        return {"sent": [m.to_json() for m in self.world.sent_to(user_id)]}

    async def _refused(self, request: web.Request, body: JSON) -> JSON:
        user_id = _str(body, "user_id", required=False)
        return {
            "refused": [r.to_json() for r in self.world.refused if user_id in (None, r.to_user_id)]
        }

    async def _typing(self, request: web.Request, body: JSON) -> JSON:
        user_id = _str(body, "user_id") or ""
        return {
            "events": [e.to_json() for e in self.world.typing_events(user_id)],
            "typing": self.world.is_typing(user_id),
        }

    async def _budget(self, request: web.Request, body: JSON) -> JSON:
        rules = self.world.budget.rules
        return {
            "budget": {
                k: getattr(rules, k) for k in ("per_message", "window_s", "scope", "missing_token")
            }
        }

    async def _set_budget(self, request: web.Request, body: JSON) -> JSON:
        current = await self._budget(request, body)
        merged = {**current["budget"], **body}
        self.world.budget.rules = BudgetRules(**merged)
        return await self._budget(request, body)

    async def _settings(self, request: web.Request, body: JSON) -> JSON:
        return {"settings": self.world.settings.to_json()}

    async def _set_settings(self, request: web.Request, body: JSON) -> JSON:
        self.world.settings.update(body)
        self.world.notify()
        return {"settings": self.world.settings.to_json()}

    async def _faults(self, request: web.Request, body: JSON) -> JSON:
        return {"faults": [f.to_json() for f in self.world.faults]}

    async def _add_fault(self, request: web.Request, body: JSON) -> JSON:
        seconds = body.get("seconds")
        if seconds is not None:
            seconds = _number(body, "seconds", 0)
        fault = Fault(
            _str(body, "endpoint") or "",
            _str(body, "kind") or "",
            int(_number(body, "count", 1)),
            int(_number(body, "status", 500)),
            seconds,
        )
        self.world.faults.append(fault)
        return await self._faults(request, body)

    async def _clear_faults(self, request: web.Request, body: JSON) -> JSON:
        self.world.faults.clear()
        return {"faults": []}

    async def _requests(self, request: web.Request, body: JSON) -> JSON:
        return {"counts": dict(self.world.counts), "by_host": dict(self.world.host_counts)}

    async def _reset_requests(self, request: web.Request, body: JSON) -> JSON:
        self.world.counts.clear()
        self.world.host_counts.clear()
        return {"counts": {}, "by_host": {}}

    async def _clock(self, request: web.Request, body: JSON) -> JSON:
        return {"now_ms": self.world.now_ms()}

    async def _advance_clock(self, request: web.Request, body: JSON) -> JSON:
        advance = getattr(self.world.clock, "advance", None)
        if advance is None:
            raise SimulatorError(
                "this simulator's clock cannot be moved (pass a ManualClock or OffsetClock)"
            )
        advance(_number(body, "seconds", 0))
        self.world.notify()
        return {"now_ms": self.world.now_ms()}

    async def _notifications(self, request: web.Request, body: JSON) -> JSON:
        return {"notifications": list(self.world.notifications)}

    async def _violations(self, request: web.Request, body: JSON) -> JSON:
        return {"violations": list(self.world.violations)}
