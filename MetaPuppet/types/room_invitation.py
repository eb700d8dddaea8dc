"""RoomInvitation: an invitation to join a room."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import snippets
from .contact import Contact
from .view import View

__all__ = ["RoomInvitation"]


@dataclass(eq=False)
class RoomInvitation(View):
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
        return Contact(self.api, self.bot, str(self.payload.get("inviterId") or ""))

    @property
    def member_count(self) -> int:
        return int(self.payload.get("memberCount") or 0)

    async def accept(self) -> None:
        await self._exec(snippets.ROOM_INVITATION_ACCEPT, {"id": self.id})
