"""The base of every view: the payload a puppet forwarded, the bot, and the API behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .api import PuppetAPI

__all__ = ["View", "id_of"]


@dataclass(eq=False)
class View:
    """What every view holds: the :class:`PuppetAPI` it acts through and its bot's name."""

    api: PuppetAPI = field(repr=False)
    bot: str

    async def _exec(self, code: str, args: dict[str, Any], timeout: float = 30.0) -> Any:
        return await self.api.exec_snippet(code, args, bot=self.bot, timeout=timeout)


def id_of(thing: Any) -> str:
    """The id of a Contact or Room (or anything with a string ``id``), or an id itself."""
    if isinstance(thing, str) and thing:
        return thing
    thing_id = getattr(thing, "id", None)
    if isinstance(thing_id, str) and thing_id:
        return thing_id
    raise TypeError(f"expected a Contact, a Room or an id, got {thing!r}")
