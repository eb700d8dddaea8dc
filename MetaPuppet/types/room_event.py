"""RoomEvent: someone joined or left a room, or its topic changed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .contact import Contact
from .room import Room
from .view import View

__all__ = ["RoomEvent"]


@dataclass(eq=False)
class RoomEvent(View):
    """A room-join, room-leave or room-topic event."""

    name: str
    payload: dict[str, Any]

    @property
    def room_id(self) -> str:
        return str(self.payload.get("roomId") or "")

    @property
    def room(self) -> Room:
        return Room(self.api, self.bot, self.room_id, {"topic": self.payload.get("topic")})

    def _contacts(self, key: str) -> list[Contact]:
        return [Contact(self.api, self.bot, str(i)) for i in self.payload.get(key) or []]

    @property
    def invitees(self) -> list[Contact]:
        return self._contacts("inviteeIdList")

    @property
    def leavers(self) -> list[Contact]:
        return self._contacts("leaverIdList")
