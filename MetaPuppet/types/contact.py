"""Contact and ContactSelf: a WeChat account as one bot sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import snippets
from .api import PuppetAPI
from .enums import ContactGender, ContactType
from .view import View

__all__ = ["Contact", "ContactSelf", "contact_from_wire"]


@dataclass(eq=False)
class Contact(View):
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
        wire = await self._exec(snippets.CONTACT_RELOAD, {"id": self.id})
        self.payload = dict(wire.get("payload") or {})
        return self

    async def alias(self, new: str | None = None) -> str | None:
        """Without an argument, the alias (remark name) you gave this contact; with one, set it."""
        if new is None:
            result = await self._exec(snippets.CONTACT_ALIAS_GET, {"id": self.id})
            return None if result is None else str(result)
        await self._exec(snippets.CONTACT_ALIAS_SET, {"id": self.id, "alias": str(new)})
        return str(new)

    async def say(self, something: Any) -> str | None:
        """Send text, a :class:`FileBox`, a :class:`UrlLink`, ... to this contact."""
        return await self.api.say(self.id, something, bot=self.bot, room=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Contact) and (other.bot, other.id) == (self.bot, self.id)

    def __hash__(self) -> int:
        return hash(("contact", self.bot, self.id))


@dataclass(eq=False)
class ContactSelf(Contact):
    """The bot's own account."""

    async def signature(self, new: str) -> None:
        """Change the account's signature."""
        await self._exec(snippets.SELF_SIGNATURE, {"signature": str(new)})

    async def set_name(self, new: str) -> None:
        """Change the account's nickname (``name`` stays the property it is on Contact)."""
        await self._exec(snippets.SELF_NAME, {"name": str(new)})
        self.payload["name"] = str(new)


def contact_from_wire(api: PuppetAPI, bot: str, wire: Any) -> Contact | None:
    """A serialised Wechaty contact (``{type, id, payload}``) as a :class:`Contact`."""
    if not isinstance(wire, dict) or not wire.get("id"):
        return None
    kind = ContactSelf if wire.get("type") == "ContactSelf" else Contact
    return kind(api, bot, str(wire["id"]), dict(wire.get("payload") or {}))
