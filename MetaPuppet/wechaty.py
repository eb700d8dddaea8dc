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
from typing import TYPE_CHECKING, Any

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
    data: bytes = field(repr=False, default=b"")
    mime_type: str | None = None
    url: str | None = None

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
    def from_url(cls, url: str, name: str | None = None) -> FileBox:
        """A file the Node client downloads itself when it sends it."""
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"FileBox.from_url needs an http(s) URL, got {url!r}")
        guessed = name or url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "file"
        return cls(name=guessed, mime_type=mimetypes.guess_type(guessed)[0], url=url)

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
        if self.url is not None and not self.data:
            raise ValueError(f"{self.name} is a URL FileBox; its bytes are not here to save")
        folder = Path(directory).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        target = (folder / self.safe_name).resolve()
        if target.parent != folder:  # defence in depth; safe_name already has no separators
            raise ValueError(f"refusing to write {self.name!r} outside {folder}")
        target.write_bytes(self.data)
        return target

    def to_wire(self) -> dict[str, Any]:
        if self.url is not None:
            return {"type": "file_url", "url": self.url, "name": self.name}
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


class ContactGender(IntEnum):
    Unknown = 0
    Male = 1
    Female = 2


class ContactType(IntEnum):
    Unknown = 0
    Individual = 1
    Official = 2
    Corporation = 3


@dataclass(eq=False)
class _View:
    server: SocketServerCore = field(repr=False)
    bot: str

    async def _exec(self, code: str, args: dict[str, Any], timeout: float = 30.0) -> Any:
        return await self.server.exec_snippet(code, args, bot=self.bot, timeout=timeout)

    def _contact(self, wire: Any) -> Contact | None:
        return contact_from_wire(self.server, self.bot, wire)


_CONTACT = "const contact = bot.Contact.load(args.id)\nawait contact.ready()\n"
_ROOM = "const room = bot.Room.load(args.id)\nawait room.ready()\n"
_MEMBER = "const member = bot.Contact.load(args.contactId)\nawait member.ready()\n"

CONTACT_RELOAD = _CONTACT + "await contact.sync()\nreturn contact"
CONTACT_ALIAS_GET = _CONTACT + "return (await contact.alias()) ?? null"
CONTACT_ALIAS_SET = _CONTACT + "await contact.alias(args.alias)\nreturn true"
SELF_SIGNATURE = "await bot.currentUser.signature(args.signature)\nreturn true"
SELF_NAME = "await bot.currentUser.name(args.name)\nreturn true"
ROOM_RELOAD = _ROOM + "await room.sync()\nreturn room"
ROOM_TOPIC_GET = _ROOM + "return await room.topic()"
ROOM_TOPIC_SET = _ROOM + "await room.topic(args.topic)\nreturn true"
ROOM_MEMBER_ALL = (
    _ROOM + "return args.name == null ? await room.memberAll() : await room.memberAll(args.name)"
)
ROOM_MEMBER = _ROOM + "return (await room.member(args.name)) ?? null"
ROOM_HAS = _ROOM + _MEMBER + "return await room.has(member)"
ROOM_ADD = _ROOM + _MEMBER + "await room.add(member)\nreturn true"
ROOM_REMOVE = _ROOM + _MEMBER + "await room.remove(member)\nreturn true"
ROOM_QUIT = _ROOM + "await room.quit()\nreturn true"
ROOM_ALIAS = _ROOM + _MEMBER + "return (await room.alias(member)) ?? null"
ROOM_OWNER = _ROOM + "return room.owner() ?? null"
ROOM_ANNOUNCE_GET = _ROOM + "return (await room.announce()) ?? ''"
ROOM_ANNOUNCE_SET = _ROOM + "await room.announce(args.text)\nreturn true"
_MESSAGE = "const message = bot.Message.load(args.id)\nawait message.ready()\n"
MESSAGE_FILE = _MESSAGE + "return await message.toFileBox()"
MESSAGE_URL_LINK = _MESSAGE + "const link = await message.toUrlLink()\nreturn link.payload"
MESSAGE_RECALL = _MESSAGE + "return await message.recall()"
MESSAGE_FORWARD = (
    _MESSAGE
    + "const to = args.room ? bot.Room.load(args.to) : bot.Contact.load(args.to)\n"
    + "await to.ready()\n"
    + "const sent = await message.forward(to)\n"
    + "return sent ? sent.id ?? null : null"
)


def contact_from_wire(server: SocketServerCore, bot: str, wire: Any) -> Contact | None:
    """A serialised Wechaty contact (``{type, id, payload}``) as a :class:`Contact`."""
    if not isinstance(wire, dict) or not wire.get("id"):
        return None
    kind = ContactSelf if wire.get("type") == "ContactSelf" else Contact
    return kind(server, bot, str(wire["id"]), dict(wire.get("payload") or {}))


def room_from_wire(server: SocketServerCore, bot: str, wire: Any) -> Room | None:
    if not isinstance(wire, dict) or not wire.get("id"):
        return None
    return Room(server, bot, str(wire["id"]), dict(wire.get("payload") or {}))


@dataclass(eq=False)
class Contact(_View):
    """A WeChat contact (a person or an official account) as one bot sees it.

    ``payload`` holds what is known so far; ``await contact.reload()`` fetches it all.
    """

    id: str
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.payload.get("name") or "")

    @property
    def is_friend(self) -> bool | None:
        friend = self.payload.get("friend")
        return None if friend is None else bool(friend)

    @property
    def gender(self) -> ContactGender:
        try:
            return ContactGender(int(self.payload.get("gender") or 0))
        except ValueError:
            return ContactGender.Unknown

    @property
    def type(self) -> ContactType:
        try:
            return ContactType(int(self.payload.get("type") or 0))
        except ValueError:
            return ContactType.Unknown

    async def reload(self) -> Contact:
        """Fetch the full payload from the puppet; returns ``self``."""
        wire = await self._exec(CONTACT_RELOAD, {"id": self.id})
        self.payload = dict(wire.get("payload") or {})
        return self

    async def alias(self, new: str | None = None) -> str | None:
        """Without an argument, the alias (remark name) you gave this contact; with one, set it."""
        if new is None:
            result = await self._exec(CONTACT_ALIAS_GET, {"id": self.id})
            return None if result is None else str(result)
        await self._exec(CONTACT_ALIAS_SET, {"id": self.id, "alias": str(new)})
        return str(new)

    async def say(self, something: Sayable) -> str | None:
        """Send text, a :class:`FileBox`, a :class:`UrlLink`, ... to this contact."""
        return await self.server.say(self.id, something, bot=self.bot, room=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Contact) and (other.bot, other.id) == (self.bot, self.id)

    def __hash__(self) -> int:
        return hash(("contact", self.bot, self.id))


@dataclass(eq=False)
class ContactSelf(Contact):
    """The bot's own account."""

    async def signature(self, new: str) -> None:
        """Change the account's signature."""
        await self._exec(SELF_SIGNATURE, {"signature": str(new)})

    async def set_name(self, new: str) -> None:
        """Change the account's nickname (``name`` stays the property it is on Contact)."""
        await self._exec(SELF_NAME, {"name": str(new)})
        self.payload["name"] = str(new)


@dataclass(eq=False)
class Room(_View):
    """A WeChat group chat as one bot sees it."""

    id: str
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def topic_text(self) -> str:
        """The topic as last seen in a payload (``await room.topic()`` asks the puppet)."""
        return str(self.payload.get("topic") or "")

    @property
    def member_ids(self) -> list[str]:
        return [str(i) for i in self.payload.get("memberIdList") or []]

    async def reload(self) -> Room:
        wire = await self._exec(ROOM_RELOAD, {"id": self.id})
        self.payload = dict(wire.get("payload") or {})
        return self

    async def topic(self, new: str | None = None) -> str:
        """Without an argument, the room's topic; with one, change it."""
        if new is None:
            topic = str(await self._exec(ROOM_TOPIC_GET, {"id": self.id}) or "")
        else:
            await self._exec(ROOM_TOPIC_SET, {"id": self.id, "topic": str(new)})
            topic = str(new)
        self.payload["topic"] = topic
        return topic

    async def member_all(self, name: str | None = None) -> list[Contact]:
        """Every member, or those whose name, alias or room alias is ``name``."""
        wires = await self._exec(ROOM_MEMBER_ALL, {"id": self.id, "name": name})
        return [c for c in (self._contact(w) for w in wires or []) if c is not None]

    async def member(self, name: str) -> Contact | None:
        return self._contact(await self._exec(ROOM_MEMBER, {"id": self.id, "name": name}))

    async def has(self, contact: Contact | str) -> bool:
        return bool(await self._exec(ROOM_HAS, {"id": self.id, "contactId": _id_of(contact)}))

    async def add(self, contact: Contact | str) -> None:
        await self._exec(ROOM_ADD, {"id": self.id, "contactId": _id_of(contact)})

    async def remove(self, contact: Contact | str) -> None:
        await self._exec(ROOM_REMOVE, {"id": self.id, "contactId": _id_of(contact)})

    async def quit(self) -> None:
        await self._exec(ROOM_QUIT, {"id": self.id})

    async def alias(self, member: Contact | str) -> str | None:
        """The name ``member`` goes by in this room, if they set one."""
        result = await self._exec(ROOM_ALIAS, {"id": self.id, "contactId": _id_of(member)})
        return None if result is None else str(result)

    async def owner(self) -> Contact | None:
        return self._contact(await self._exec(ROOM_OWNER, {"id": self.id}))

    async def announce(self, text: str | None = None) -> str:
        """Without an argument, the room announcement; with one, post it."""
        if text is None:
            return str(await self._exec(ROOM_ANNOUNCE_GET, {"id": self.id}) or "")
        await self._exec(ROOM_ANNOUNCE_SET, {"id": self.id, "text": str(text)})
        return str(text)

    async def say(self, something: Sayable, *mentions: Contact | str) -> str | None:
        """Send to the room; with text, ``mentions`` are @-mentioned."""
        ids = [_id_of(m) for m in mentions]
        return await self.server.say(self.id, something, bot=self.bot, room=True, mentions=ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Room) and (other.bot, other.id) == (self.bot, self.id)

    def __hash__(self) -> int:
        return hash(("room", self.bot, self.id))


def _id_of(thing: Any) -> str:
    """The id of a Contact or Room (or anything with a string ``id``), or an id itself."""
    if isinstance(thing, str) and thing:
        return thing
    thing_id = getattr(thing, "id", None)
    if isinstance(thing_id, str) and thing_id:
        return thing_id
    raise TypeError(f"expected a Contact, a Room or an id, got {thing!r}")


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
    def listener(self) -> Contact | None:
        listener_id = self.listener_id
        return None if listener_id is None else Contact(self.server, self.bot, listener_id)

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
    def mention_list(self) -> list[Contact]:
        """The contacts this message @-mentions."""
        return [Contact(self.server, self.bot, i) for i in self.mention_ids]

    @property
    def mention_text(self) -> str:
        """The text without the leading @-mentions."""
        text = self.payload.get("mentionText")
        if isinstance(text, str):
            return text
        return strip_mentions(self.text) if self.payload.get("roomId") else self.text

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

    async def forward(self, to: Contact | Room) -> str | None:
        """Forward this message to a contact or a room."""
        result = await self._exec(
            MESSAGE_FORWARD, {"id": self.id, "to": _id_of(to), "room": isinstance(to, Room)}
        )
        return None if result is None else str(result)

    async def recall(self) -> bool:
        """Take back a message the bot sent (WeChat allows it for two minutes)."""
        return bool(await self._exec(MESSAGE_RECALL, {"id": self.id}))

    async def to_file_box(self) -> FileBox:
        """Download the file, image, audio or video this message carries."""
        return FileBox.from_wire(await self._exec(MESSAGE_FILE, {"id": self.id}, timeout=120.0))

    async def to_url_link(self) -> UrlLink:
        payload = await self._exec(MESSAGE_URL_LINK, {"id": self.id})
        return UrlLink(
            url=str(payload.get("url") or ""),
            title=str(payload.get("title") or ""),
            description=str(payload.get("description") or ""),
            thumbnail_url=str(payload.get("thumbnailUrl") or ""),
        )

    def to_legacy_dict(self) -> dict[str, Any]:
        """The dict the original project's ``_process_message`` received."""
        return {
            "sender": f"wx_{self.bot}",
            "type": "CHAT_INFO",
            "bot": self.bot,
            "id": self.id,
            "payload": self.payload,
        }


FRIENDSHIP_ACCEPT = """
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
        await self._exec(FRIENDSHIP_ACCEPT, {"id": self.id})

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

    def _contacts(self, key: str) -> list[Contact]:
        return [Contact(self.server, self.bot, str(i)) for i in self.payload.get(key) or []]

    @property
    def invitees(self) -> list[Contact]:
        return self._contacts("inviteeIdList")

    @property
    def leavers(self) -> list[Contact]:
        return self._contacts("leaverIdList")


# --------------------------------------------------------------------------- look-ups

_FIND = """
const query = {}
for (const key of ['name', 'alias', 'topic']) {
  const value = args.query[key]
  if (value === undefined || value === null) continue
  query[key] = typeof value === 'object' ? new RegExp(value.source, value.flags) : value
}
const kind = args.rooms ? bot.Room : bot.Contact
// an empty query object matches nothing in Wechaty; no query means everyone
const filter = Object.keys(query).length > 0 ? query : undefined
return args.all ? await kind.findAll(filter) : (await kind.find(filter ?? {})) ?? null
"""

_LOAD = """
const thing = args.rooms ? bot.Room.load(args.id) : bot.Contact.load(args.id)
try {
  await thing.ready()
} catch (error) {
  return null
}
return thing
"""


def _query_value(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, re.Pattern):
        flags = "i" if value.flags & re.IGNORECASE else ""
        return {"source": value.pattern, "flags": flags}
    raise TypeError(f"a look-up takes a str or a compiled regex, got {type(value).__name__}")


class Contacts:
    """Look up contacts: ``await server.contacts.find(name="Alice")``."""

    def __init__(self, server: SocketServerCore) -> None:
        self.server = server

    async def find(
        self,
        *,
        name: str | re.Pattern[str] | None = None,
        alias: str | re.Pattern[str] | None = None,
        id: str | None = None,  # noqa: A002 - Wechaty's own word
        bot: str | None = None,
    ) -> Contact | None:
        """The first contact matching ``name``, ``alias`` (str or regex) or ``id``."""
        if id is not None:
            wire = await self.server.exec_snippet(_LOAD, {"id": id, "rooms": False}, bot=bot)
        else:
            query = {"name": _query_value(name), "alias": _query_value(alias)}
            wire = await self.server.exec_snippet(
                _FIND, {"query": query, "all": False, "rooms": False}, bot=bot
            )
        return contact_from_wire(self.server, self._bot(bot), wire)

    async def find_all(
        self,
        *,
        name: str | re.Pattern[str] | None = None,
        alias: str | re.Pattern[str] | None = None,
        bot: str | None = None,
    ) -> list[Contact]:
        query = {"name": _query_value(name), "alias": _query_value(alias)}
        wires = await self.server.exec_snippet(
            _FIND, {"query": query, "all": True, "rooms": False}, bot=bot
        )
        found = (contact_from_wire(self.server, self._bot(bot), w) for w in wires or [])
        return [c for c in found if c is not None]

    def _bot(self, bot: str | None) -> str:
        return bot if bot is not None else self.server.only_bot()


class Rooms(dict[str, Any]):
    """Look up rooms: ``await server.rooms.find(topic="Team")``.

    It is also a dict: the original project kept its Socket.IO room bookkeeping in
    ``server.rooms`` (``{'all_rooms': set(), sender: room_name}``), and that keeps working.
    """

    def __init__(self, server: SocketServerCore) -> None:
        super().__init__()
        self.server = server

    def __eq__(self, other: object) -> bool:
        return self is other

    __hash__ = object.__hash__  # type: ignore[assignment]

    async def find(
        self,
        *,
        topic: str | re.Pattern[str] | None = None,
        id: str | None = None,  # noqa: A002
        bot: str | None = None,
    ) -> Room | None:
        if id is not None:
            wire = await self.server.exec_snippet(_LOAD, {"id": id, "rooms": True}, bot=bot)
        else:
            wire = await self.server.exec_snippet(
                _FIND,
                {"query": {"topic": _query_value(topic)}, "all": False, "rooms": True},
                bot=bot,
            )
        return room_from_wire(self.server, self._bot(bot), wire)

    async def find_all(
        self, *, topic: str | re.Pattern[str] | None = None, bot: str | None = None
    ) -> list[Room]:
        wires = await self.server.exec_snippet(
            _FIND, {"query": {"topic": _query_value(topic)}, "all": True, "rooms": True}, bot=bot
        )
        found = (room_from_wire(self.server, self._bot(bot), w) for w in wires or [])
        return [r for r in found if r is not None]

    def _bot(self, bot: str | None) -> str:
        return bot if bot is not None else self.server.only_bot()


def strip_mentions(text: str) -> str:
    """Drop leading ``@name`` mentions; WeChat ends each with U+2005 (or a plain space)."""
    text = text.strip()
    while text.startswith("@"):
        end = text.find("\u2005")
        if end == -1:
            end = text.find(" ")
        if end == -1:
            return ""
        text = text[end + 1 :].lstrip()
    return text


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
