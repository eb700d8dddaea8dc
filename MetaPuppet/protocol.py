"""Wire names, payload shapes, the handshake and the protocol version.

Mirrored by ``socket_client/src/protocol.ts``; change both together and bump
:data:`PROTOCOL_VERSION` when a change is not backward compatible.

**The handshake** (protocol 2): both sides prove they hold the same token, and neither
sends anything that can be replayed or turned into the token.

1. The client connects with ``auth = {protocol, role, bot?, capabilities?, replace?,
   nonce, key}``: ``nonce`` is fresh randomness (:func:`new_nonce`), ``key`` is
   :func:`key_id` of its token and that nonce. ``key`` tells the server which of its
   tokens the client holds without revealing it, and shows the client holds one.
2. Right after the connect the server sends ``challenge {nonce, proof}``: its own fresh
   nonce and :func:`server_proof`, an HMAC over both nonces, the role and the bot. The
   client checks it before doing anything else; a server that cannot prove it holds the
   token gets nothing more (a program that took over the port while the real server
   restarted learns neither the token nor a proof it could use).
3. The client answers ``authenticate {proof}`` (:func:`client_proof`, the same transcript
   under another label); the server acknowledges ``{ok: true, role, bot, permissions}``
   or refuses with ``{ok: false, error}`` and closes. Only then does the connection count
   as authenticated: before that it may send only a few KiB, for a few seconds.

Every message is bound to both nonces, so an answer recorded from one connection is
worthless on the next; the server also refuses a client nonce it has already seen.

**Delivery** (protocol 3): the steady path is one frame each way per answered message.
The reply a robot hook returns travels in the event's acknowledgement as typed actions,
``{ok: true, actions: [{action: "say", send_id, to, kind, sayable, mentions, replyTo?}]}``
(:func:`event_ack`); every other send is an ``act`` request (:func:`act_request`). Every
send carries a ``send_id`` (:func:`send_id_of`): the Node client records each completed
one durably and answers a repeated id with the recorded result instead of sending again,
so a handler run again after a crash of either side duplicates no reply. The handshake's
answer says whether the server wants the bot's own messages (``self_messages``); a
``control`` ``{action: "self-messages", on}`` says when that changes.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from dataclasses import dataclass
from typing import Any, Final, Literal

from .errors import ProtocolError, SnippetError

__all__ = [
    "BOT_EVENTS",
    "CAPABILITY_FLAGS",
    "CONTROL_ACTIONS",
    "ACTIONS",
    "ACTION_SAY",
    "ACTION_TYPING",
    "CONTROL_SELF_MESSAGES",
    "EVENT_ACK_DROP_KINDS",
    "EV_ACT",
    "EV_AUTHENTICATE",
    "EV_CHALLENGE",
    "EV_CONTROL",
    "EV_ECHO",
    "EV_EVENT",
    "EV_EXEC",
    "EV_MESSAGE",
    "HANDSHAKE_EVENTS",
    "MAX_BOT_NAME_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_SEND_ID_LENGTH",
    "PROTOCOL_VERSION",
    "ROLES",
    "ROLE_LEGACY",
    "ROLE_PUPPET",
    "ROLE_WEB",
    "Auth",
    "BotEvent",
    "Capabilities",
    "Challenge",
    "Handshake",
    "Role",
    "SendBudget",
    "act_request",
    "auth_payload",
    "client_proof",
    "error_ack",
    "event_ack",
    "exec_request",
    "key_id",
    "new_nonce",
    "ok",
    "parse_auth",
    "parse_capabilities",
    "parse_challenge",
    "parse_event",
    "parse_proof",
    "proof_matches",
    "random_send_id",
    "say_action",
    "send_id_of",
    "server_proof",
    "unwrap_exec_response",
    "valid_text",
]


PROTOCOL_VERSION: Final = 3

ROLE_PUPPET: Final = "puppet"
ROLE_WEB: Final = "web"
#: a client without a token (``web.legacy_clients``): the original ``message`` envelope only
ROLE_LEGACY: Final = "legacy"
ROLES: Final = frozenset({ROLE_PUPPET, ROLE_WEB})

# Socket.IO event names.
EV_EVENT: Final = "event"  # Node -> Python: a Wechaty event, acknowledged
EV_EXEC: Final = "exec"  # Python -> Node: run a snippet, answered by ack
EV_ECHO: Final = "echo"  # Python -> Node: raw round trip (benchmarks, health)
EV_MESSAGE: Final = "message"  # web clients: the original project's envelope
EV_CONTROL: Final = "control"  # Python -> Node: {action: "restart-bot"}, answered by ack
EV_ACT: Final = "act"  # Python -> Node: one typed action (say, typing), answered like exec
EV_CHALLENGE: Final = "challenge"  # Python -> client, right after connect: {nonce, proof}
EV_AUTHENTICATE: Final = "authenticate"  # client -> Python: {proof}, acknowledged
HANDSHAKE_EVENTS: Final = frozenset({EV_CHALLENGE, EV_AUTHENTICATE})
#: ``{action: "self-messages", on: bool}``: forward the bot's own messages, or not
CONTROL_SELF_MESSAGES: Final = "self-messages"
CONTROL_ACTIONS: Final = frozenset({"restart-bot", CONTROL_SELF_MESSAGES})
# typed actions (``act`` requests and the actions of an event acknowledgement)
ACTION_SAY: Final = "say"
ACTION_TYPING: Final = "typing"
ACTIONS: Final = frozenset({ACTION_SAY, ACTION_TYPING})
# error kinds in an event acknowledgement after which the client drops the event; with any
# other kind (e.g. "unavailable" while the server shuts down) it keeps it and re-sends it
EVENT_ACK_DROP_KINDS: Final = frozenset({"bad_request", "forbidden"})

# Wechaty events the Node client forwards.
BOT_EVENTS: Final = frozenset(
    {
        "message",
        "friendship",
        "room-invite",
        "room-join",
        "room-leave",
        "room-topic",
        "login",
        "logout",
        "scan",
        "ready",
        "error",
        "heartbeat",
    }
)

MAX_ID_LENGTH: Final = 256
#: an event id, ``#`` and the send's position in its handling
MAX_SEND_ID_LENGTH: Final = MAX_ID_LENGTH + 12
MAX_BOT_NAME_LENGTH: Final = 64

Role = Literal["puppet", "web"]


@dataclass(frozen=True, slots=True)
class SendBudget:
    """A channel's send rule (iLink): the user writes first; then ``per_user_message`` bot
    messages per user message, within ``window_s`` seconds of it."""

    user_first: bool = True
    per_user_message: int = 10
    window_s: float = 86_400.0

    def to_wire(self) -> dict[str, Any]:
        return {
            "user_first": self.user_first,
            "per_user_message": self.per_user_message,
            "window_s": self.window_s,
        }


#: The capability flags a puppet reports, besides ``channel`` and ``send_budget``.
CAPABILITY_FLAGS: Final = (
    "rooms",
    "friendships",
    "contact_list",
    "files",
    "recall",
    "typing",
    "url_links",
    "mini_programs",
    "contact_cards",
    "alias",
)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a bot's channel can do, as its puppet reports it (at connect and at login).

    A client that reports nothing (an older one, a test double) is taken to be able to do
    everything but typing, as Wechaty's own puppets can.
    """

    channel: str = "unknown"
    flags: frozenset[str] = frozenset(CAPABILITY_FLAGS) - {"typing"}
    send_budget: SendBudget | None = None

    def can(self, capability: str) -> bool:
        return capability in self.flags

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"channel": self.channel}
        wire.update({flag: flag in self.flags for flag in CAPABILITY_FLAGS})
        wire["send_budget"] = None if self.send_budget is None else self.send_budget.to_wire()
        return wire


def parse_capabilities(data: Any) -> Capabilities:
    """Read a ``capabilities`` object; raise :class:`ProtocolError` naming the bad field."""
    if not isinstance(data, dict):
        raise ProtocolError("'capabilities' must be an object")
    channel = data.get("channel", "unknown")
    if not isinstance(channel, str) or not channel or len(channel) > MAX_BOT_NAME_LENGTH:
        raise ProtocolError("'capabilities.channel' must be a short string")
    flags = set()
    for flag in CAPABILITY_FLAGS:
        value = data.get(flag, flag != "typing")
        if not isinstance(value, bool):
            raise ProtocolError(f"'capabilities.{flag}' must be true or false")
        if value:
            flags.add(flag)
    budget = data.get("send_budget")
    parsed_budget = None
    if budget is not None:
        if not isinstance(budget, dict):
            raise ProtocolError("'capabilities.send_budget' must be an object or null")
        user_first = budget.get("user_first", True)
        per_message = budget.get("per_user_message", 10)
        window = budget.get("window_s", 86_400)
        if not isinstance(user_first, bool):
            raise ProtocolError("'send_budget.user_first' must be true or false")
        if isinstance(per_message, bool) or not isinstance(per_message, int) or per_message < 0:
            raise ProtocolError("'send_budget.per_user_message' must be a whole number >= 0")
        if isinstance(window, bool) or not isinstance(window, int | float) or not window > 0:
            raise ProtocolError("'send_budget.window_s' must be a positive number")
        parsed_budget = SendBudget(user_first, per_message, float(window))
    return Capabilities(channel, frozenset(flags), parsed_budget)


@dataclass(frozen=True, slots=True)
class Auth:
    """What a client presented in the Socket.IO ``auth`` payload (never its token)."""

    role: Role
    protocol: int
    bot: str | None
    nonce: str
    key: str
    capabilities: Capabilities | None = None
    #: take the bot over from a puppet already connected with its name (a hand-over)
    replace: bool = False


@dataclass(frozen=True, slots=True)
class BotEvent:
    """One Wechaty event forwarded by a puppet: ``{id, bot, name, payload, ts}``."""

    id: str
    bot: str
    name: str
    payload: dict[str, Any]
    ts: float

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "bot": self.bot,
            "name": self.name,
            "payload": self.payload,
            "ts": self.ts,
        }


def parse_auth(auth: Any) -> Auth:
    """Validate a connect ``auth`` payload; raise :class:`ProtocolError` naming the problem.

    The key is *not* checked here (the server compares it with its tokens' keys).
    """
    if not isinstance(auth, dict):
        raise ProtocolError(
            "missing auth: connect with auth={protocol, role, nonce, key, bot} "
            "(role is 'puppet' or 'web'; MetaPuppet.web_client.connect does it for you)"
        )
    version = auth.get("protocol")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ProtocolError(
            f"missing protocol version: this server speaks protocol {PROTOCOL_VERSION}"
        )
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"protocol version mismatch: the client speaks {version}, the server speaks "
            f"{PROTOCOL_VERSION}; update the older side"
            + (" (and never send the token itself)" if "token" in auth else "")
        )
    role = auth.get("role", ROLE_WEB)
    if not isinstance(role, str) or role not in ROLES:
        raise ProtocolError(f"unknown role {role!r:.40}: use 'puppet' or 'web'")
    nonce, key = auth.get("nonce"), auth.get("key")
    if not _is_hex(nonce):
        raise ProtocolError(f"'nonce' must be {_HEX_LENGTH} hex digits of fresh randomness")
    if not _is_hex(key):
        raise ProtocolError(f"'key' must be {_HEX_LENGTH} hex digits (key_id of the token)")
    bot = auth.get("bot")
    if role == ROLE_PUPPET:
        if not isinstance(bot, str) or not bot.strip():
            raise ProtocolError("a puppet must name its bot in the auth payload ('bot')")
        if len(bot) > MAX_BOT_NAME_LENGTH:
            raise ProtocolError(f"bot name longer than {MAX_BOT_NAME_LENGTH} characters")
    elif bot is not None and not isinstance(bot, str):
        raise ProtocolError("'bot' must be a string")
    replace = auth.get("replace", False)
    if not isinstance(replace, bool):
        raise ProtocolError("'replace' must be true or false")
    checked_role: Role = ROLE_PUPPET if role == ROLE_PUPPET else ROLE_WEB
    capabilities = auth.get("capabilities")
    parsed = None if capabilities is None else parse_capabilities(capabilities)
    return Auth(
        role=checked_role,
        protocol=version,
        bot=bot if checked_role == ROLE_PUPPET else None,
        nonce=str(nonce),
        key=str(key),
        capabilities=parsed,
        replace=replace and checked_role == ROLE_PUPPET,
    )


# --------------------------------------------------------------------------- handshake

_HEX_LENGTH: Final = 64  # 32 bytes: nonces, keys and proofs alike
_HEX: Final = re.compile(r"[0-9a-f]{64}")
_CONTEXT: Final = f"MetaPuppet protocol {PROTOCOL_VERSION}"


def _is_hex(value: Any) -> bool:
    return isinstance(value, str) and _HEX.fullmatch(value) is not None


def new_nonce() -> str:
    """32 bytes of fresh randomness, as hex: one per connection and side."""
    return secrets.token_hex(_HEX_LENGTH // 2)


def _mac(token: str, label: str, *parts: str) -> str:
    message = "\n".join((_CONTEXT, label, *parts)).encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Handshake:
    """What both proofs cover: who connects as what, and both sides' fresh nonces."""

    role: str
    bot: str | None
    client_nonce: str
    server_nonce: str
    replace: bool = False

    def transcript(self) -> tuple[str, ...]:
        return (
            self.role,
            self.bot or "",
            self.client_nonce,
            self.server_nonce,
            "replace" if self.replace else "",
        )


def key_id(token: str, client_nonce: str) -> str:
    """Which token the client holds, bound to its nonce: the server finds the token by
    computing this for each of its own; nobody can turn it back into the token."""
    return _mac(token, "key", client_nonce)


def server_proof(token: str, handshake: Handshake) -> str:
    """The server's proof that it holds ``token`` (sent in ``challenge``)."""
    return _mac(token, "server", *handshake.transcript())


def client_proof(token: str, handshake: Handshake) -> str:
    """The client's proof that it holds ``token`` (sent in ``authenticate``)."""
    return _mac(token, "client", *handshake.transcript())


def proof_matches(expected: str, given: Any) -> bool:
    """Constant-time comparison of a proof or key with the expected one."""
    return isinstance(given, str) and hmac.compare_digest(expected.encode(), given.encode())


@dataclass(frozen=True, slots=True)
class Challenge:
    """The server's ``challenge``: its nonce and its proof."""

    nonce: str
    proof: str


def parse_challenge(data: Any) -> Challenge:
    """Validate a ``challenge`` (the client side of step 2)."""
    if not isinstance(data, dict) or not _is_hex(data.get("nonce")):
        raise ProtocolError("the server's challenge has no valid 'nonce'")
    if not _is_hex(data.get("proof")):
        raise ProtocolError("the server's challenge has no valid 'proof'")
    return Challenge(nonce=data["nonce"], proof=data["proof"])


def parse_proof(data: Any) -> str:
    """The proof in an ``authenticate`` message (the server side of step 3)."""
    if not isinstance(data, dict) or not _is_hex(data.get("proof")):
        raise ProtocolError(f"authenticate with {{proof: <{_HEX_LENGTH} hex digits>}}")
    return str(data["proof"])


def auth_payload(
    token: str,
    role: Role,
    *,
    bot: str | None = None,
    capabilities: Capabilities | None = None,
    replace: bool = False,
) -> dict[str, Any]:
    """A fresh connect ``auth`` payload for ``token`` (step 1): a new nonce every call."""
    nonce = new_nonce()
    payload: dict[str, Any] = {
        "protocol": PROTOCOL_VERSION,
        "role": role,
        "nonce": nonce,
        "key": key_id(token, nonce),
    }
    if bot is not None:
        payload["bot"] = bot
    if capabilities is not None:
        payload["capabilities"] = capabilities.to_wire()
    if replace:
        payload["replace"] = True
    return payload


def parse_event(data: Any, *, bot: str) -> BotEvent:
    """Validate an ``event`` envelope sent by the puppet of ``bot``."""
    if not isinstance(data, dict):
        raise ProtocolError(f"event must be an object, got {type(data).__name__}")
    event_id = data.get("id")
    if not isinstance(event_id, str) or not event_id or len(event_id) > MAX_ID_LENGTH:
        raise ProtocolError("event 'id' must be a non-empty string of at most 256 characters")
    name = data.get("name")
    if not isinstance(name, str) or name not in BOT_EVENTS:
        raise ProtocolError(f"unknown event name {name!r:.40}")
    sender = data.get("bot", bot)
    if sender != bot:
        raise ProtocolError(f"event claims bot {sender!r:.40} but this connection is bot {bot!r}")
    payload = data.get("payload")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise ProtocolError(f"event 'payload' must be an object, got {type(payload).__name__}")
    ts = data.get("ts", 0)
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        raise ProtocolError("event 'ts' must be a number (milliseconds since the epoch)")
    return BotEvent(id=event_id, bot=bot, name=name, payload=valid_text(payload), ts=float(ts))


_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(value: Any) -> Any:
    """``value`` with every lone UTF-16 surrogate in its strings (keys too) replaced by
    U+FFFD.

    A chat message can carry one (an emoji cut in half); JSON turns it into ``\\udXXX``, and
    the ``str`` Python reads from that cannot be encoded as UTF-8, which broke every page
    and stream that showed the event. The Node client already sends valid text; this is the
    second line. Returns ``value`` itself when nothing had to change.
    """
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value) if _SURROGATE.search(value) else value
    if isinstance(value, dict):
        fixed: dict[Any, Any] = {}
        changed = False
        for key, item in value.items():
            new_key, new_item = valid_text(key), valid_text(item)
            changed = changed or new_key is not key or new_item is not item
            fixed[new_key] = new_item
        return fixed if changed else value
    if isinstance(value, list):
        items = [valid_text(item) for item in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    return value


def exec_request(code: str, args: Any, timeout: float) -> dict[str, Any]:
    return {"code": code, "args": args, "timeout_ms": max(1, int(timeout * 1000))}


def send_id_of(event_id: str, position: int) -> str:
    """The id of the ``position``-th send made while handling event ``event_id``: the same
    when the handler runs again after a crash, so the Node client can tell a repeat."""
    return f"{event_id}#{position}"


def random_send_id() -> str:
    """The id of a send made outside any handler (proactive sends, scripts)."""
    return "r:" + secrets.token_hex(16)


def say_action(
    send_id: str,
    to: str,
    kind: str,
    sayable: dict[str, Any],
    mentions: list[str],
    reply_to: str | None = None,
    *,
    with_reply_to: bool = False,
) -> dict[str, Any]:
    """A typed ``say``: the fields of the ``SAY`` snippet's ``args``, plus its send id.

    ``replyTo`` is only there on channels with send windows (``with_reply_to``), as before.
    """
    action: dict[str, Any] = {
        "action": ACTION_SAY,
        "send_id": send_id,
        "to": to,
        "kind": kind,
        "sayable": sayable,
        "mentions": mentions,
    }
    if with_reply_to:
        action["replyTo"] = reply_to
    return action


def act_request(action: dict[str, Any], timeout: float) -> dict[str, Any]:
    """An ``act`` request: one typed action and how long Node may take for it."""
    return {**action, "timeout_ms": max(1, int(timeout * 1000))}


def event_ack(actions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The acknowledgement of a handled event, carrying the reply's typed actions."""
    return {"ok": True, "actions": actions} if actions else {"ok": True}


def unwrap_exec_response(response: Any, *, bot: str | None = None) -> Any:
    """Return the result of an ``exec`` answer or raise the matching :class:`SnippetError`."""
    if not isinstance(response, dict) or "ok" not in response:
        raise ProtocolError(f"malformed exec answer from bot {bot!r}: {response!r:.200}")
    if response["ok"] is True:
        return response.get("result")
    raise SnippetError.from_wire(response.get("error"), bot=bot)


def ok() -> dict[str, Any]:
    return {"ok": True}


def error_ack(kind: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"kind": kind, "name": "ProtocolError", "message": message}}
