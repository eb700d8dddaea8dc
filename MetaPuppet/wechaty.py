"""Typed Python views of Wechaty objects: messages, contacts, rooms, friendships, files.

Each view wraps the plain JSON payload the Node client forwards, plus the bot it came
from. Methods that act run *constant* snippets on that bot; caller data travels in
``args`` and is never formatted into code.
"""

from __future__ import annotations

import base64
import mimetypes
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from .server import SocketServerCore


class MessageType(IntEnum):
    """Wechaty's message types, with Wechaty's numbering."""

    Unknown = 0
    Attachment = 1
    Audio = 2
    Contact = 3
    ChatHistory = 4
    Emoticon = 5
    Image = 6
    Text = 7
    Location = 8
    MiniProgram = 9
    GroupNote = 10
    Transfer = 11
    RedEnvelope = 12
    Recalled = 13
    Url = 14
    Video = 15
    Post = 16


class FriendshipType(IntEnum):
    Unknown = 0
    Confirm = 1
    Receive = 2
    Verify = 3


# --------------------------------------------------------------------------- sayables

_UNSAFE_NAME = re.compile(r"[\x00-\x1f\\/:*?\"<>|]")


@dataclass(frozen=True)
class FileBox:
    """A file to send or one that was received: a name, the bytes and a MIME type."""

    name: str
    data: bytes = field(repr=False)
    mime_type: str | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], name: str | None = None) -> FileBox:
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"cannot send {source}: no such file")
        return cls.from_bytes(source.read_bytes(), name or source.name)

    @classmethod
    def from_bytes(cls, data: bytes, name: str, mime_type: str | None = None) -> FileBox:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"FileBox data must be bytes, not {type(data).__name__}")
        guessed = mime_type or mimetypes.guess_type(name)[0]
        return cls(name=name, data=bytes(data), mime_type=guessed)

    @classmethod
    def from_base64(cls, b64: str, name: str, mime_type: str | None = None) -> FileBox:
        return cls.from_bytes(base64.b64decode(b64, validate=True), name, mime_type)

    @classmethod
    def from_wire(cls, wire: Any) -> FileBox:
        if not isinstance(wire, dict) or "base64" not in wire:
            raise ValueError(f"not a serialised FileBox: {wire!r:.120}")
        return cls.from_base64(
            wire["base64"] or "", str(wire.get("name") or "file"), wire.get("mimeType")
        )

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def safe_name(self) -> str:
        """The name reduced to a plain file name: no directories, no control characters."""
        name = self.name.replace("\\", "/").rsplit("/", 1)[-1]
        name = _UNSAFE_NAME.sub("_", name).strip(" .")
        return name or "file"

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the file into ``directory`` (never outside it, whatever the name says)."""
        folder = Path(directory).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        target = (folder / self.safe_name).resolve()
        if target.parent != folder:  # defence in depth; safe_name already has no separators
            raise ValueError(f"refusing to write {self.name!r} outside {folder}")
        target.write_bytes(self.data)
        return target

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": "file",
            "name": self.name,
            "base64": base64.b64encode(self.data).decode("ascii"),
        }


@dataclass(frozen=True)
class UrlLink:
    """A link card."""

    url: str
    title: str = ""
    description: str = ""
    thumbnail_url: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": "url",
            "payload": {
                "url": self.url,
                "title": self.title,
                "description": self.description,
                "thumbnailUrl": self.thumbnail_url,
            },
        }


@dataclass(frozen=True)
class MiniProgram:
    """A mini-program card; ``payload`` follows Wechaty's MiniProgram payload."""

    payload: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        return {"type": "mini_program", "payload": dict(self.payload)}


# --------------------------------------------------------------------------- views


@dataclass(eq=False)
class _View:
    server: SocketServerCore = field(repr=False)
    bot: str

    async def _exec(self, code: str, args: dict[str, Any], timeout: float = 30.0) -> Any:
        return await self.server.exec_snippet(code, args, bot=self.bot, timeout=timeout)


@dataclass(eq=False)
class Contact(_View):
    """A WeChat contact (a person or an official account) as one bot sees it."""

    id: str
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.payload.get("name") or "")

    async def say(self, something: Sayable) -> str | None:
        """Send text, a :class:`FileBox`, a :class:`UrlLink`, ... to this contact."""
        return await self.server.say(self.id, something, bot=self.bot, room=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Contact) and (other.bot, other.id) == (self.bot, self.id)

    def __hash__(self) -> int:
        return hash(("contact", self.bot, self.id))


@dataclass(eq=False)
class Room(_View):
    """A WeChat group chat as one bot sees it."""

    id: str
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def topic_text(self) -> str:
        return str(self.payload.get("topic") or "")

    async def say(self, something: Sayable, *mentions: Contact | str) -> str | None:
        """Send to the room; with text, ``mentions`` are @-mentioned."""
        ids = [m.id if isinstance(m, Contact) else str(m) for m in mentions]
        return await self.server.say(self.id, something, bot=self.bot, room=True, mentions=ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Room) and (other.bot, other.id) == (self.bot, self.id)

    def __hash__(self) -> int:
        return hash(("room", self.bot, self.id))


_LOAD_FILE = """
const message = bot.Message.load(args.id)
await message.ready()
return await message.toFileBox()
"""


@dataclass(eq=False)
class Message(_View):
    """A received (or sent) message."""

    payload: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.payload.get("id") or "")

    @property
    def text(self) -> str:
        return str(self.payload.get("text") or "")

    @property
    def type(self) -> MessageType:
        try:
            return MessageType(int(self.payload.get("type") or 0))
        except ValueError:
            return MessageType.Unknown

    @property
    def talker(self) -> Contact:
        info = self.payload.get("talker") or {}
        talker_id = self.payload.get("talkerId") or self.payload.get("fromId") or ""
        return Contact(self.server, self.bot, str(talker_id), dict(info))

    @property
    def room(self) -> Room | None:
        room_id = self.payload.get("roomId")
        if not room_id:
            return None
        return Room(self.server, self.bot, str(room_id), dict(self.payload.get("room") or {}))

    @property
    def listener_id(self) -> str | None:
        listener = self.payload.get("listenerId") or self.payload.get("toId")
        return str(listener) if listener else None

    @property
    def conversation_id(self) -> str:
        """Where a reply goes: the room, else the talker."""
        return str(self.payload.get("roomId") or self.talker.id)

    @property
    def is_self(self) -> bool:
        return bool(self.payload.get("self"))

    @property
    def mention_self(self) -> bool:
        return bool(self.payload.get("mentionSelf"))

    @property
    def mention_ids(self) -> list[str]:
        return [str(i) for i in self.payload.get("mentionIdList") or []]

    @property
    def date(self) -> datetime | None:
        timestamp = self.payload.get("timestamp")
        if not isinstance(timestamp, int | float):
            return None
        seconds = timestamp / 1000 if timestamp > 1e11 else timestamp
        return datetime.fromtimestamp(seconds, tz=UTC)

    async def say(self, something: Sayable) -> str | None:
        """Answer in the same conversation (the room, or the talker)."""
        return await self.server.say(
            self.conversation_id, something, bot=self.bot, room=self.room is not None
        )

    reply = say

    async def to_file_box(self) -> FileBox:
        """Download the file, image, audio or video this message carries."""
        return FileBox.from_wire(await self._exec(_LOAD_FILE, {"id": self.id}, timeout=120.0))

    def to_legacy_dict(self) -> dict[str, Any]:
        """The dict the original project's ``_process_message`` received."""
        return {
            "sender": f"wx_{self.bot}",
            "type": "CHAT_INFO",
            "bot": self.bot,
            "id": self.id,
            "payload": self.payload,
        }


_ACCEPT_FRIENDSHIP = """
const friendship = bot.Friendship.load(args.id)
await friendship.ready()
await friendship.accept()
return true
"""


@dataclass(eq=False)
class Friendship(_View):
    """A friend request (or its confirmation)."""

    payload: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.payload.get("id") or "")

    @property
    def hello(self) -> str:
        return str(self.payload.get("hello") or "")

    @property
    def type(self) -> FriendshipType:
        try:
            return FriendshipType(int(self.payload.get("type") or 0))
        except ValueError:
            return FriendshipType.Unknown

    @property
    def contact(self) -> Contact:
        info = self.payload.get("contact") or {}
        return Contact(self.server, self.bot, str(self.payload.get("contactId") or ""), dict(info))

    async def accept(self) -> None:
        await self._exec(_ACCEPT_FRIENDSHIP, {"id": self.id})

    def to_legacy_dict(self) -> dict[str, Any]:
        return {
            "sender": f"wx_{self.bot}",
            "type": "FRIEND_INFO",
            "bot": self.bot,
            "payload": self.payload,
        }


_ACCEPT_ROOM_INVITATION = """
const invitation = bot.RoomInvitation.load(args.id)
await invitation.accept()
return true
"""


@dataclass(eq=False)
class RoomInvitation(_View):
    """An invitation to join a room."""

    payload: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.payload.get("id") or "")

    @property
    def topic(self) -> str:
        return str(self.payload.get("topic") or "")

    @property
    def inviter(self) -> Contact:
        return Contact(self.server, self.bot, str(self.payload.get("inviterId") or ""))

    @property
    def member_count(self) -> int:
        return int(self.payload.get("memberCount") or 0)

    async def accept(self) -> None:
        await self._exec(_ACCEPT_ROOM_INVITATION, {"id": self.id})


@dataclass(eq=False)
class RoomEvent(_View):
    """A room-join, room-leave or room-topic event."""

    name: str
    payload: dict[str, Any]

    @property
    def room(self) -> Room:
        info = {"topic": self.payload.get("topic")}
        return Room(self.server, self.bot, str(self.payload.get("roomId") or ""), info)


Sayable = Union[str, FileBox, UrlLink, MiniProgram, Contact]
Reply = Union[Sayable, dict[str, Any], Iterable[Any], None]

_LEGACY_TYPES = {"text": "TEXT", "file": "FILE", "url": "URLLINK", "urllink": "URLLINK"}


def sayable_to_wire(something: Any) -> dict[str, Any]:
    """Encode one thing to say as plain JSON for the ``say`` snippet."""
    if isinstance(something, str):
        return {"type": "text", "text": something}
    if isinstance(something, FileBox | UrlLink | MiniProgram):
        return something.to_wire()
    if isinstance(something, Contact):
        return {"type": "contact", "id": something.id}
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
