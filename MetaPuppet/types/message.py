"""Message: a received (or sent) message, and the text helpers around mentions."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .. import snippets
from .api import PuppetAPI
from .cards import UrlLink
from .contact import Contact
from .enums import MessageType
from .filebox import FileBox
from .room import Room
from .view import View, id_of

__all__ = ["Message", "Typing", "strip_mentions"]


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


class Typing:
    """``await`` it to start the typing indicator; ``async with`` it to show it meanwhile."""

    def __init__(self, api: PuppetAPI, bot: str, conversation_id: str) -> None:
        self.api = api
        self.bot = bot
        self.conversation_id = conversation_id

    async def start(self) -> bool:
        return await self.api.typing(self.conversation_id, True, bot=self.bot)

    async def stop(self) -> bool:
        return await self.api.typing(self.conversation_id, False, bot=self.bot)

    def __await__(self) -> Generator[Any, None, bool]:
        return self.start().__await__()

    async def __aenter__(self) -> Typing:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


@dataclass(eq=False)
class Message(View):
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
    def talker_id(self) -> str:
        return str(self.payload.get("talkerId") or self.payload.get("fromId") or "")

    @property
    def talker(self) -> Contact:
        info = self.payload.get("talker") or {}
        return Contact(self.api, self.bot, self.talker_id, dict(info))

    @property
    def listener(self) -> Contact | None:
        listener_id = self.listener_id
        return None if listener_id is None else Contact(self.api, self.bot, listener_id)

    @property
    def room_id(self) -> str | None:
        room_id = self.payload.get("roomId")
        return str(room_id) if room_id else None

    @property
    def room(self) -> Room | None:
        room_id = self.room_id
        if room_id is None:
            return None
        return Room(self.api, self.bot, room_id, dict(self.payload.get("room") or {}))

    @property
    def listener_id(self) -> str | None:
        listener = self.payload.get("listenerId") or self.payload.get("toId")
        return str(listener) if listener else None

    @property
    def conversation_id(self) -> str:
        """Where a reply goes: the room, else the talker."""
        return self.room_id or self.talker_id

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
        return [Contact(self.api, self.bot, i) for i in self.mention_ids]

    @property
    def mention_text(self) -> str:
        """The text without the leading @-mentions."""
        text = self.payload.get("mentionText")
        if isinstance(text, str):
            return text
        return strip_mentions(self.text) if self.room_id else self.text

    @property
    def date(self) -> datetime | None:
        timestamp = self.payload.get("timestamp")
        if not isinstance(timestamp, int | float):
            return None
        seconds = timestamp / 1000 if timestamp > 1e11 else timestamp
        return datetime.fromtimestamp(seconds, tz=UTC)

    async def say(self, something: Any) -> str | None:
        """Answer in the same conversation (the room, or the talker).

        On a channel with send windows (iLink) the answer uses this message's window.
        """
        return await self.api.say(
            self.conversation_id,
            something,
            bot=self.bot,
            room=self.room_id is not None,
            reply_to=None if self.is_self else self.id,
        )

    reply = say

    def typing(self) -> Typing:
        """Show "typing..." in this chat while the bot works on an answer::

            async with msg.typing():
                answer = await ask_the_llm(msg.text)
            await msg.say(answer)

        ``await msg.typing()`` just starts it. A no-op on channels without typing.
        """
        return Typing(self.api, self.bot, self.conversation_id)

    async def forward(self, to: Contact | Room) -> str | None:
        """Forward this message to a contact or a room."""
        args = {"id": self.id, "to": id_of(to), "room": isinstance(to, Room)}
        result = await self._exec(snippets.MESSAGE_FORWARD, args)
        return None if result is None else str(result)

    async def recall(self) -> bool:
        """Take back a message the bot sent (WeChat allows it for two minutes)."""
        return bool(await self._exec(snippets.MESSAGE_RECALL, {"id": self.id}))

    async def to_file_box(self) -> FileBox:
        """Download the file, image, audio or video this message carries."""
        wire = await self._exec(snippets.MESSAGE_FILE, {"id": self.id}, timeout=120.0)
        return FileBox.from_wire(wire)

    async def to_url_link(self) -> UrlLink:
        payload = await self._exec(snippets.MESSAGE_URL_LINK, {"id": self.id})
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
