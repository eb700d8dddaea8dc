"""Friendship: a friend request, or its confirmation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import snippets
from .contact import Contact
from .enums import FriendshipType
from .view import View

__all__ = ["Friendship"]


@dataclass(eq=False)
class Friendship(View):
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
    def contact_id(self) -> str:
        return str(self.payload.get("contactId") or "")

    @property
    def contact(self) -> Contact:
        info = self.payload.get("contact") or {}
        return Contact(self.api, self.bot, self.contact_id, dict(info))

    async def accept(self) -> None:
        await self._exec(snippets.FRIENDSHIP_ACCEPT, {"id": self.id})

    def to_legacy_dict(self) -> dict[str, Any]:
        return {
            "sender": f"wx_{self.bot}",
            "type": "FRIEND_INFO",
            "bot": self.bot,
            "payload": self.payload,
        }
