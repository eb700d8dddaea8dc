"""The simulator's records: settings, users, QR logins, bot accounts, what the bot sent, faults.

Plain data with a ``to_json`` where the HTTP control API shows it. The logic that moves
them lives in ``_world.py``; the wire handlers in ``_api.py``.
"""

from __future__ import annotations

import base64
import dataclasses
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from ...errors import MetaPuppetError

__all__ = [
    "ENDPOINTS",
    "FAULT_KINDS",
    "HOSTILE_KINDS",
    "QR_STATUSES",
    "BotAccount",
    "Fault",
    "InboundMessage",
    "QrLogin",
    "RefusedSend",
    "SentItem",
    "SentMessage",
    "SimSettings",
    "SimUser",
    "SimulatorError",
    "TypingEvent",
]

JSON = dict[str, Any]

# Every name a fault or a request count can refer to.
ENDPOINTS = (
    "get_bot_qrcode",
    "get_qrcode_status",
    "getupdates",
    "sendmessage",
    "getuploadurl",
    "getconfig",
    "sendtyping",
    "msg/notifystart",
    "msg/notifystop",
    "cdn/upload",
    "cdn/download",
)
FAULT_KINDS = (
    "http_error",
    "hang",
    "delay",
    "not_json",
    "truncated_json",
    "empty_body",
    "missing_fields",
    "wrong_types",
    "huge_cursor",
)
HOSTILE_KINDS = (
    "many_items",
    "bad_media_key",
    "garbage_media_key",
    "wrong_types",
    "missing_fields",
)
QR_STATUSES = (
    "wait",
    "scaned",
    "confirmed",
    "expired",
    "scaned_but_redirect",
    "need_verifycode",
    "verify_code_blocked",
    "binded_redirect",
)


class SimulatorError(MetaPuppetError):
    """A control call the simulator cannot do in its current state (the message says why)."""


@dataclass
class SimSettings:
    """Behaviour switches. Where the public sources disagree the default is named in the
    module docstring of :mod:`MetaPuppet.testing.ilink`, and the other reading is a value here."""

    updates_hold_s: float = 2.0
    longpolling_timeout_ms: int | None = None  # None: the hold itself, as the real service says
    qr_hold_s: float = 1.0
    qr_ttl_s: float = 120.0
    big_message_ids: bool = True
    expired_shape: Literal["errcode", "ret", "both"] = "errcode"
    send_ok_body: Literal["empty", "ret0"] = "empty"
    upload_url_style: Literal["both", "param", "full"] = "both"
    media_full_url: bool = True
    empty_cursor: Literal["unacked", "all", "new"] = "unacked"
    strict: bool = True
    require_base_info: bool = True
    redirect_on_scan: bool = False
    verify_code: str | None = None
    verify_attempts: int = 3
    max_batch: int = 100
    max_backlog: int = 10_000
    max_json_body: int = 4 * 1024 * 1024
    max_upload_bytes: int = 100 * 1024 * 1024
    max_cdn_bytes: int = 1024 * 1024 * 1024

    _CHOICES = {
        "expired_shape": ("errcode", "ret", "both"),
        "send_ok_body": ("empty", "ret0"),
        "upload_url_style": ("both", "param", "full"),
        "empty_cursor": ("unacked", "all", "new"),
    }

    def update(self, changes: JSON) -> None:
        """Apply ``changes`` (from the control API), refusing unknown names and bad values."""
        known = {f.name: f for f in dataclasses.fields(self)}
        for name in changes:
            if name not in known:
                raise SimulatorError(f"unknown setting {name!r}; known: {', '.join(sorted(known))}")
        for name, value in changes.items():
            current = getattr(self, name)
            if name in self._CHOICES:
                if value not in self._CHOICES[name]:
                    raise SimulatorError(
                        f"{name} must be one of {self._CHOICES[name]}, got {value!r}"
                    )
            elif name in ("longpolling_timeout_ms", "verify_code"):
                expected = int if name == "longpolling_timeout_ms" else str
                if value is not None and (
                    not isinstance(value, expected) or isinstance(value, bool)
                ):
                    raise SimulatorError(
                        f"{name} must be {expected.__name__} or null, got {value!r}"
                    )
            elif isinstance(current, bool):
                if not isinstance(value, bool):
                    raise SimulatorError(f"{name} must be true or false, got {value!r}")
            elif isinstance(current, (int, float)):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise SimulatorError(f"{name} must be a number >= 0, got {value!r}")
                value = type(current)(value)
            setattr(self, name, value)

    def to_json(self) -> JSON:
        return dataclasses.asdict(self)


@dataclass
class SimUser:
    """A WeChat user: ``user_id`` looks like the real ones (``o9cq80…@im.wechat``)."""

    user_id: str
    name: str

    def to_json(self) -> JSON:
        return {"user_id": self.user_id, "name": self.name}


@dataclass
class QrLogin:
    qrcode: str
    img_content: str
    created_s: float
    local_tokens: list[str]
    status: str = "wait"
    user_id: str | None = None
    verify_code: str | None = None
    attempts_left: int = 0
    redirect: bool = False
    bot_id: str | None = None
    reported: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> JSON:
        return {
            "qrcode": self.qrcode,
            "qrcode_img_content": self.img_content,
            "status": self.status,
            "user_id": self.user_id,
            "verify_code": self.verify_code,
            "attempts_left": self.attempts_left,
            "redirect": self.redirect,
            "bot_id": self.bot_id,
            "created_ms": int(self.created_s * 1000),
        }


@dataclass
class BotAccount:
    """One bound bot: its live token (``None`` once the session expired), its message log."""

    bot_id: str
    owner_id: str
    epoch: str
    token: str | None = None
    logins: int = 0
    next_seq: int = 1
    acked: int = 0
    log: deque[tuple[int, JSON]] = field(default_factory=deque)
    typing_tickets: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> JSON:
        return {
            "bot_id": self.bot_id,
            "owner_id": self.owner_id,
            "logged_in": self.token is not None,
            "logins": self.logins,
            "pending": sum(1 for seq, _ in self.log if seq > self.acked),
            "acked_seq": self.acked,
            "last_seq": self.next_seq - 1,
        }


@dataclass(frozen=True)
class InboundMessage:
    """A message a user sent to the bot; ``message_id`` is a string (the wire has a uint64)."""

    message_id: str
    seq: int
    bot_id: str
    from_user_id: str
    context_token: str | None
    create_time_ms: int
    payload: JSON

    def to_json(self) -> JSON:
        return {
            "message_id": self.message_id,
            "seq": self.seq,
            "bot_id": self.bot_id,
            "from_user_id": self.from_user_id,
            "context_token": self.context_token,
            "create_time_ms": self.create_time_ms,
        }


@dataclass(frozen=True)
class SentItem:
    """One item the bot sent, media already downloaded from the CDN and decrypted.

    ``kind`` is text / image / voice / file / video / unknown; ``error`` says why the media
    could not be read (the user would see a broken attachment), ``data`` is ``None`` then.
    """

    type: int
    kind: str
    text: str | None = None
    data: bytes | None = None
    file_name: str | None = None
    error: str | None = None
    raw: JSON = field(default_factory=dict)

    def to_json(self) -> JSON:
        out: JSON = {"type": self.type, "kind": self.kind}
        if self.text is not None:
            out["text"] = self.text
        if self.data is not None:
            out["data_b64"] = base64.b64encode(self.data).decode("ascii")
            out["size"] = len(self.data)
        if self.file_name is not None:
            out["file_name"] = self.file_name
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class SentMessage:
    bot_id: str
    to_user_id: str
    client_id: str | None
    context_token: str | None
    message_state: int | None
    items: tuple[SentItem, ...]
    at_ms: int

    @property
    def text(self) -> str:
        """The text items joined by newlines ("" when there are none)."""
        return "\n".join(item.text for item in self.items if item.kind == "text" and item.text)

    def to_json(self) -> JSON:
        return {
            "bot_id": self.bot_id,
            "to_user_id": self.to_user_id,
            "client_id": self.client_id,
            "context_token": self.context_token,
            "message_state": self.message_state,
            "at_ms": self.at_ms,
            "text": self.text,
            "items": [item.to_json() for item in self.items],
        }


@dataclass(frozen=True)
class RefusedSend:
    """A ``sendmessage`` the budget refused (``ret = -2``) or dropped; ``reason`` names the rule."""

    bot_id: str
    to_user_id: str
    context_token: str | None
    reason: str
    dropped: bool
    at_ms: int

    def to_json(self) -> JSON:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TypingEvent:
    user_id: str
    status: int
    at_ms: int

    def to_json(self) -> JSON:
        return dataclasses.asdict(self)


@dataclass
class Fault:
    """The next ``remaining`` requests to ``endpoint`` misbehave as ``kind``."""

    endpoint: str
    kind: str
    remaining: int = 1
    status: int = 500
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.endpoint not in ENDPOINTS:
            raise SimulatorError(f"unknown endpoint {self.endpoint!r}; use one of {ENDPOINTS}")
        if self.kind not in FAULT_KINDS:
            raise SimulatorError(f"unknown fault {self.kind!r}; use one of {FAULT_KINDS}")
        if self.kind == "huge_cursor" and self.endpoint != "getupdates":
            raise SimulatorError("huge_cursor applies to getupdates only")
        if self.remaining < 1:
            raise SimulatorError(f"a fault needs count >= 1, got {self.remaining}")
        if not 100 <= self.status <= 599:
            raise SimulatorError(f"status must be an HTTP status, got {self.status}")

    def to_json(self) -> JSON:
        return dataclasses.asdict(self)
