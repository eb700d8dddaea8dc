"""Look-ups: ``await server.contacts.find(name="Alice")``, ``server.rooms.find_all()``."""

from __future__ import annotations

import re
from typing import Any

from .. import snippets
from .api import PuppetAPI
from .contact import Contact, contact_from_wire
from .room import Room, room_from_wire

__all__ = ["Contacts", "Rooms"]


def _query_value(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, re.Pattern):
        flags = "i" if value.flags & re.IGNORECASE else ""
        return {"source": value.pattern, "flags": flags}
    raise TypeError(f"a look-up takes a str or a compiled regex, got {type(value).__name__}")


class Contacts:
    """Look up contacts: ``await server.contacts.find(name="Alice")``."""

    def __init__(self, api: PuppetAPI) -> None:
        self.api = api

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
            args: dict[str, Any] = {"id": id, "rooms": False}
            wire = await self.api.exec_snippet(snippets.LOAD, args, bot=bot)
        else:
            query = {"name": _query_value(name), "alias": _query_value(alias)}
            args = {"query": query, "all": False, "rooms": False}
            wire = await self.api.exec_snippet(snippets.FIND, args, bot=bot)
        return contact_from_wire(self.api, self._bot(bot), wire)

    async def find_all(
        self,
        *,
        name: str | re.Pattern[str] | None = None,
        alias: str | re.Pattern[str] | None = None,
        bot: str | None = None,
    ) -> list[Contact]:
        query = {"name": _query_value(name), "alias": _query_value(alias)}
        args = {"query": query, "all": True, "rooms": False}
        wires = await self.api.exec_snippet(snippets.FIND, args, bot=bot)
        found = (contact_from_wire(self.api, self._bot(bot), w) for w in wires or [])
        return [c for c in found if c is not None]

    def _bot(self, bot: str | None) -> str:
        return bot if bot is not None else self.api.only_bot()


class Rooms(dict[str, Any]):
    """Look up rooms: ``await server.rooms.find(topic="Team")``.

    It is also a dict: the original project kept its Socket.IO room bookkeeping in
    ``server.rooms`` (``{'all_rooms': set(), sender: room_name}``), and that keeps working.
    """

    def __init__(self, api: PuppetAPI) -> None:
        super().__init__()
        self.api = api

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
            wire = await self.api.exec_snippet(snippets.LOAD, {"id": id, "rooms": True}, bot=bot)
        else:
            args = {"query": {"topic": _query_value(topic)}, "all": False, "rooms": True}
            wire = await self.api.exec_snippet(snippets.FIND, args, bot=bot)
        return room_from_wire(self.api, self._bot(bot), wire)

    async def find_all(
        self, *, topic: str | re.Pattern[str] | None = None, bot: str | None = None
    ) -> list[Room]:
        args = {"query": {"topic": _query_value(topic)}, "all": True, "rooms": True}
        wires = await self.api.exec_snippet(snippets.FIND, args, bot=bot)
        found = (room_from_wire(self.api, self._bot(bot), w) for w in wires or [])
        return [r for r in found if r is not None]

    def _bot(self, bot: str | None) -> str:
        return bot if bot is not None else self.api.only_bot()
