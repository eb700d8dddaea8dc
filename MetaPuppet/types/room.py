"""Room: a WeChat group chat as one bot sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import snippets
from .api import PuppetAPI
from .contact import Contact, contact_from_wire
from .view import View, id_of

__all__ = ["Room", "room_from_wire"]


@dataclass(eq=False)
class Room(View):
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

    def _contact(self, wire: Any) -> Contact | None:
        return contact_from_wire(self.api, self.bot, wire)

    async def reload(self) -> Room:
        wire = await self._exec(snippets.ROOM_RELOAD, {"id": self.id})
        self.payload = dict(wire.get("payload") or {})
        return self

    async def topic(self, new: str | None = None) -> str:
        """Without an argument, the room's topic; with one, change it."""
        if new is None:
            topic = str(await self._exec(snippets.ROOM_TOPIC_GET, {"id": self.id}) or "")
        else:
            await self._exec(snippets.ROOM_TOPIC_SET, {"id": self.id, "topic": str(new)})
            topic = str(new)
        self.payload["topic"] = topic
        return topic

    async def member_all(self, name: str | None = None) -> list[Contact]:
        """Every member, or those whose name, alias or room alias is ``name``."""
        wires = await self._exec(snippets.ROOM_MEMBER_ALL, {"id": self.id, "name": name})
        return [c for c in (self._contact(w) for w in wires or []) if c is not None]

    async def member(self, name: str) -> Contact | None:
        return self._contact(await self._exec(snippets.ROOM_MEMBER, {"id": self.id, "name": name}))

    async def has(self, contact: Contact | str) -> bool:
        args = {"id": self.id, "contactId": id_of(contact)}
        return bool(await self._exec(snippets.ROOM_HAS, args))

    async def add(self, contact: Contact | str) -> None:
        await self._exec(snippets.ROOM_ADD, {"id": self.id, "contactId": id_of(contact)})

    async def remove(self, contact: Contact | str) -> None:
        await self._exec(snippets.ROOM_REMOVE, {"id": self.id, "contactId": id_of(contact)})

    async def quit(self) -> None:
        await self._exec(snippets.ROOM_QUIT, {"id": self.id})

    async def alias(self, member: Contact | str) -> str | None:
        """The name ``member`` goes by in this room, if they set one."""
        args = {"id": self.id, "contactId": id_of(member)}
        result = await self._exec(snippets.ROOM_ALIAS, args)
        return None if result is None else str(result)

    async def owner(self) -> Contact | None:
        return self._contact(await self._exec(snippets.ROOM_OWNER, {"id": self.id}))

    async def announce(self, text: str | None = None) -> str:
        """Without an argument, the room announcement; with one, post it."""
        if text is None:
            return str(await self._exec(snippets.ROOM_ANNOUNCE_GET, {"id": self.id}) or "")
        await self._exec(snippets.ROOM_ANNOUNCE_SET, {"id": self.id, "text": str(text)})
        return str(text)

    async def say(self, something: Any, *mentions: Contact | str) -> str | None:
        """Send to the room; with text, ``mentions`` are @-mentioned."""
        ids = [id_of(m) for m in mentions]
        return await self.api.say(self.id, something, bot=self.bot, room=True, mentions=ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Room) and (other.bot, other.id) == (self.bot, self.id)

    def __hash__(self) -> int:
        return hash(("room", self.bot, self.id))


def room_from_wire(api: PuppetAPI, bot: str, wire: Any) -> Room | None:
    """A serialised Wechaty room (``{type, id, payload}``) as a :class:`Room`."""
    if not isinstance(wire, dict) or not wire.get("id"):
        return None
    return Room(api, bot, str(wire["id"]), dict(wire.get("payload") or {}))
