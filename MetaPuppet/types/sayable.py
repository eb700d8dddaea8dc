"""What a bot can say, and how a robot's reply becomes things to say."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .cards import MiniProgram, UrlLink
from .contact import Contact
from .filebox import FileBox
from .room import Room

__all__ = ["Reply", "Sayable", "reply_to_sayables", "sayable_to_wire"]

Sayable = str | FileBox | UrlLink | MiniProgram | Contact
Reply = Sayable | dict[str, Any] | Iterable[Any] | None

_LEGACY_TYPES = {"text": "TEXT", "file": "FILE", "url": "URLLINK", "urllink": "URLLINK"}


def sayable_to_wire(something: Any) -> dict[str, Any]:
    """Encode one thing to say as plain JSON for the ``say`` snippet."""
    if isinstance(something, str):
        return {"type": "text", "text": something}
    if isinstance(something, FileBox | UrlLink | MiniProgram):
        return something.to_wire()
    if isinstance(something, Contact):
        return {"type": "contact", "id": something.id}
    if isinstance(something, Room):
        raise TypeError("a Room cannot be sent as a card; send a Contact, text or a file")
    raise TypeError(
        f"cannot say a {type(something).__name__}: use str, FileBox, UrlLink, MiniProgram "
        "or Contact"
    )


def reply_to_sayables(reply: Any) -> list[Any]:
    """Flatten a robot's reply into things to say, accepting the original dict shapes."""
    if reply is None:
        return []
    if isinstance(reply, str | FileBox | UrlLink | MiniProgram | Contact):
        return [reply]
    if isinstance(reply, dict):
        kind = _LEGACY_TYPES.get(str(reply.get("wx_msg_type", "")).lower())
        if kind == "TEXT":
            text = reply.get("text", reply.get("path"))
            return [str(text)] if text is not None else []
        if kind == "FILE":
            if "url" in reply:
                return [FileBox.from_url(str(reply["url"]), reply.get("name"))]
            if "path" in reply:
                return [FileBox.from_file(reply["path"])]
            if "base64" in reply:
                return [FileBox.from_base64(reply["base64"], str(reply.get("name") or "file"))]
            raise ValueError("a FILE reply needs 'path' or 'base64'")
        if kind == "URLLINK":
            return [
                UrlLink(
                    url=str(reply["url"]),
                    title=str(reply.get("title", "")),
                    description=str(reply.get("description", "")),
                    thumbnail_url=str(reply.get("thumbnailUrl", "")),
                )
            ]
        raise ValueError(
            f"reply dict needs wx_msg_type TEXT, FILE or URLLINK, got {reply.get('wx_msg_type')!r}"
        )
    if isinstance(reply, list | tuple):
        return [item for part in reply for item in reply_to_sayables(part)]
    raise TypeError(f"cannot send a reply of type {type(reply).__name__}")
