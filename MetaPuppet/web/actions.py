"""Typed actions web clients may call, shared by the socket ``action`` event and the REST API.

Each action validates its parameters at the boundary (a :class:`WebError` naming the bad
field), needs one permission, and runs through the server's own API (``say``) or a
constant snippet with the caller's data in ``args``. Nothing a client sends becomes code.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..errors import (
    AmbiguousBot,
    ClusterUnavailable,
    MetaPuppetError,
    NotSupported,
    PuppetNotConnected,
    SendWindowClosed,
    SnippetError,
    SnippetTimeout,
)
from ..protocol import MAX_BOT_NAME_LENGTH, MAX_ID_LENGTH
from ..snippets import FRIENDSHIP_ACCEPT, LIST_CONTACTS, LIST_ROOMS, ROOM_MEMBERS
from ..transport.auth import PERM_ACCEPT, PERM_READ, PERM_SEND
from ..types import FileBox
from .errors import WebError
from .host import WebHost

__all__ = [
    "ACTIONS",
    "MAX_FILE_NAME_LENGTH",
    "MAX_QUERY_LENGTH",
    "MAX_TEXT_LENGTH",
    "Action",
    "Params",
    "accept_friendship",
    "bot_field",
    "check_fields",
    "file_field",
    "kind_field",
    "list_contacts",
    "list_rooms",
    "room_members",
    "run_action",
    "search",
    "send",
    "send_file",
    "send_text",
    "string_field",
    "translate",
]

log = logging.getLogger("MetaPuppet.web")

MAX_TEXT_LENGTH: Final = 20_000
MAX_FILE_NAME_LENGTH: Final = 255
MAX_QUERY_LENGTH: Final = 200

Params = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Action:
    """One typed action: its name, the permission it needs, what it does."""

    name: str
    permission: str
    run: Callable[[WebHost, Params], Awaitable[Any]]
    summary: str


def check_fields(params: Params, allowed: set[str], required: Iterable[str] = ()) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise WebError(
            "invalid_request",
            f"unknown field {unknown[0]!r}: expected {', '.join(sorted(allowed))}",
        )
    missing = sorted(set(required) - set(params))
    if missing:
        raise WebError("invalid_request", f"missing field {missing[0]!r}")


def string_field(
    params: Params, key: str, *, max_length: int, required: bool = False
) -> str | None:
    value = params.get(key)
    if value is None:
        if required:
            raise WebError("invalid_request", f"missing field {key!r}")
        return None
    if not isinstance(value, str) or not value:
        raise WebError("invalid_request", f"{key!r} must be a non-empty string")
    if len(value) > max_length:
        raise WebError("invalid_request", f"{key!r} is longer than {max_length} characters")
    return value


def bot_field(params: Params) -> str | None:
    return string_field(params, "bot", max_length=MAX_BOT_NAME_LENGTH)


def kind_field(params: Params, to: str, host: WebHost | None = None) -> bool:
    """True when ``to`` is a room: ``kind`` says so, or the id has WeChat's room ``@`` on a
    channel with rooms (iLink user ids contain an ``@`` too, and are contacts)."""
    kind = params.get("kind")
    if kind is None:
        if host is not None and not host.capabilities(bot_field(params)).can("rooms"):
            return False
        return "@" in to
    if kind not in ("contact", "room"):
        raise WebError("invalid_request", "'kind' must be 'contact' or 'room'")
    return bool(kind == "room")


def file_field(params: Params, max_bytes: int) -> FileBox:
    value = params.get("file")
    if not isinstance(value, Mapping):
        raise WebError("invalid_request", "'file' must be an object {name, base64}")
    check_fields(value, {"name", "base64"}, {"name", "base64"})
    name = string_field(value, "name", max_length=MAX_FILE_NAME_LENGTH, required=True)
    encoded = value.get("base64")
    if not isinstance(encoded, str) or not encoded:
        raise WebError("invalid_request", "'file.base64' must be a non-empty base64 string")
    if len(encoded) * 3 // 4 > max_bytes:
        raise WebError("payload_too_large", f"the file is larger than {max_bytes} bytes")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise WebError("invalid_request", "'file.base64' is not valid base64") from None
    assert name is not None
    return FileBox.from_bytes(data, name)


def search(
    items: list[dict[str, Any]], query: str | None, fields: tuple[str, ...]
) -> list[dict[str, Any]]:
    if not query:
        return items
    needle = query.casefold()
    return [i for i in items if any(needle in str(i.get(f) or "").casefold() for f in fields)]


def translate(exc: Exception) -> WebError:
    """The web error for a failure of the server's API."""
    if isinstance(exc, WebError):
        return exc
    if isinstance(exc, AmbiguousBot):
        return WebError("bot_required", f"{exc}")
    if isinstance(exc, ClusterUnavailable):
        return WebError("cluster_unavailable", f"{exc}")
    if isinstance(exc, PuppetNotConnected):
        return WebError("bot_not_connected", f"{exc}")
    if isinstance(exc, NotSupported):
        return WebError("not_supported", f"{exc}")
    if isinstance(exc, SendWindowClosed):
        return WebError("send_window_closed", f"{exc}")
    if isinstance(exc, SnippetTimeout):
        return WebError("bot_timeout", f"{exc}")
    if isinstance(exc, SnippetError):
        return WebError("bot_error", f"the bot failed: {exc.name}: {exc.message}")
    return WebError("internal_error", "the server failed to carry out the call; see its log")


# ------------------------------------------------------------------------- the actions


async def list_contacts(host: WebHost, params: Params) -> dict[str, Any]:
    check_fields(params, {"bot", "query"})
    query = string_field(params, "query", max_length=MAX_QUERY_LENGTH)
    found = await host.exec_snippet(LIST_CONTACTS, bot=bot_field(params))
    contacts = search(list(found or []), query, ("name", "alias", "id"))
    contacts.sort(key=lambda c: (str(c.get("alias") or c.get("name") or "").casefold(), c["id"]))
    return {"contacts": contacts}


async def list_rooms(host: WebHost, params: Params) -> dict[str, Any]:
    check_fields(params, {"bot", "query"})
    query = string_field(params, "query", max_length=MAX_QUERY_LENGTH)
    found = await host.exec_snippet(LIST_ROOMS, bot=bot_field(params))
    rooms = search(list(found or []), query, ("topic", "id"))
    rooms.sort(key=lambda r: (str(r.get("topic") or "").casefold(), r["id"]))
    return {"rooms": rooms}


async def room_members(host: WebHost, params: Params) -> dict[str, Any]:
    check_fields(params, {"bot", "room"}, {"room"})
    room = string_field(params, "room", max_length=MAX_ID_LENGTH, required=True)
    members = await host.exec_snippet(ROOM_MEMBERS, {"roomId": room}, bot=bot_field(params))
    if members is None:
        raise WebError("not_found", f"the bot has no room {room!r}")
    return {"room": room, "members": list(members)}


async def send_text(host: WebHost, params: Params) -> dict[str, Any]:
    check_fields(params, {"bot", "to", "kind", "text"}, {"to", "text"})
    to = string_field(params, "to", max_length=MAX_ID_LENGTH, required=True)
    text = string_field(params, "text", max_length=MAX_TEXT_LENGTH, required=True)
    assert to is not None
    room = kind_field(params, to, host)
    message_id = await host.say(to, text, bot=bot_field(params), room=room)
    return {"message_id": message_id, "to": to, "kind": "room" if room else "contact"}


async def send_file(host: WebHost, params: Params) -> dict[str, Any]:
    check_fields(params, {"bot", "to", "kind", "file"}, {"to", "file"})
    to = string_field(params, "to", max_length=MAX_ID_LENGTH, required=True)
    assert to is not None
    room = kind_field(params, to, host)
    box = file_field(params, host.config.max_message_bytes)
    message_id = await host.say(to, box, bot=bot_field(params), room=room)
    return {"message_id": message_id, "to": to, "kind": "room" if room else "contact"}


async def send(host: WebHost, params: Params) -> dict[str, Any]:
    """``send_text`` or ``send_file``, whichever of ``text`` and ``file`` is given."""
    has_text, has_file = "text" in params, "file" in params
    if has_text == has_file:
        raise WebError("invalid_request", "give exactly one of 'text' and 'file'")
    return await (send_text if has_text else send_file)(host, params)


async def accept_friendship(host: WebHost, params: Params) -> dict[str, Any]:
    check_fields(params, {"bot", "id"}, {"id"})
    friendship = string_field(params, "id", max_length=MAX_ID_LENGTH, required=True)
    await host.exec_snippet(FRIENDSHIP_ACCEPT, {"id": friendship}, bot=bot_field(params))
    return {"accepted": friendship}


ACTIONS: Final[dict[str, Action]] = {
    a.name: a
    for a in (
        Action(
            "list_contacts", PERM_READ, list_contacts, "The bot's contacts, optionally searched."
        ),
        Action("list_rooms", PERM_READ, list_rooms, "The bot's rooms, optionally searched."),
        Action("room_members", PERM_READ, room_members, "The members of one room."),
        Action("send_text", PERM_SEND, send_text, "Send text to a contact or a room."),
        Action("send_file", PERM_SEND, send_file, "Send a file to a contact or a room."),
        Action("accept_friendship", PERM_ACCEPT, accept_friendship, "Accept a friend request."),
    )
}


async def run_action(host: WebHost, name: str, params: Params) -> Any:
    """Run one action by name (permission already checked); failures become WebError."""
    action = ACTIONS[name]
    try:
        return await action.run(host, params)
    except WebError:
        raise
    except MetaPuppetError as exc:
        raise translate(exc) from None
    except ValueError as exc:
        raise WebError("invalid_request", str(exc)) from None
    except Exception as exc:
        log.exception("action %s failed", name)
        raise translate(exc) from exc
