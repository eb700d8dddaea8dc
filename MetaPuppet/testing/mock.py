"""The kit on the mock puppet: contacts and rooms that live in the Node process.

Mocked contacts and rooms live in ``wechaty-puppet-mock``; the kit drives them through the
``mock`` helper the Node client exposes to snippets in mock mode, and watches the bot's own
outgoing messages (which the mock echoes back as ``self`` messages) to collect replies per
conversation.
"""

from __future__ import annotations

import asyncio
import base64
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..protocol import BotEvent
from ..types import FileBox, Message
from .kit import Kit, KitBot

__all__ = ["DEFAULT_USER_NAME", "MockBot", "MockContact", "MockRoom", "MockWechat", "SentMessage"]

DEFAULT_USER_NAME = "MetaPuppet Bot"


class SentMessage(Message):
    """A message the bot sent (seen through the mock's echo of the bot's own messages)."""

    async def file(self) -> FileBox:
        """The file this message carried (an image, an attachment, ...)."""
        return await self.to_file_box()


class _Conversation:
    bot: MockBot
    id: str

    async def next_reply(self, timeout: float = 5.0) -> SentMessage:
        """The next message the bot sent to this conversation; waits up to ``timeout``."""
        queue = self.bot.replies_to(self.id)
        try:
            return await asyncio.wait_for(queue.get(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"the bot sent nothing to {self!r} within {timeout:.1f} s"
            ) from None

    def pending_replies(self) -> list[SentMessage]:
        """Replies received and not yet taken, without waiting."""
        queue = self.bot.replies_to(self.id)
        taken = []
        while not queue.empty():
            taken.append(queue.get_nowait())
        return taken


@dataclass(eq=False)
class MockContact(_Conversation):
    """A contact in the mock WeChat, able to talk to the bot."""

    bot: MockBot = field(repr=False)
    id: str
    name: str

    async def say(
        self,
        text: str,
        *,
        room: MockRoom | None = None,
        mention_bot: bool = False,
        mentions: Iterable[MockContact] = (),
    ) -> str | None:
        """Send text to the bot, or to ``room`` (optionally @-mentioning the bot)."""
        mention_ids = [c.id for c in mentions]
        if room is not None and mention_bot:
            mention_ids.insert(0, self.bot.user_id)
            text = f"@{self.bot.user_name}\u2005{text}"
        return await self.bot.mock_say(self.id, {"text": text}, room, mention_ids)

    async def send_file(
        self, name: str, data: bytes, *, room: MockRoom | None = None
    ) -> str | None:
        """Send a file (an image, a document, ...) to the bot or to ``room``."""
        content = {"file": {"name": name, "base64": base64.b64encode(data).decode("ascii")}}
        return await self.bot.mock_say(self.id, content, room, [])

    async def send_friend_request(self, hello: str = "") -> str:
        """Ask the bot to be friends; returns the friendship id."""
        return str(
            await self.bot.exec(
                "return mock.friendshipRequest(args.contactId, args.hello)",
                {"contactId": self.id, "hello": hello},
            )
        )

    def __repr__(self) -> str:
        return f"MockContact({self.name!r}, id={self.id!r})"


@dataclass(eq=False)
class MockRoom(_Conversation):
    """A room in the mock WeChat; the bot is a member."""

    bot: MockBot = field(repr=False)
    id: str
    topic: str
    members: list[MockContact] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"MockRoom({self.topic!r}, id={self.id!r})"


class MockBot(KitBot):
    """One bot account: a Node client on the mock puppet, logged in."""

    def __init__(self, wx: MockWechat, name: str, user_name: str) -> None:
        super().__init__(wx, name)
        self.user_name = user_name
        self._replies: dict[str, asyncio.Queue[SentMessage]] = defaultdict(asyncio.Queue)

    def replies_to(self, conversation_id: str) -> asyncio.Queue[SentMessage]:
        return self._replies[conversation_id]

    def observe(self, event: BotEvent) -> None:
        """Note an event of this bot; the bot's own messages are its replies."""
        super().observe(event)
        if event.name == "message" and event.payload.get("self"):
            target = event.payload.get("roomId") or event.payload.get("listenerId")
            if target:
                sent = SentMessage(self.server, self.name, event.payload)
                self._replies[str(target)].put_nowait(sent)

    async def contact(self, name: str, **payload: Any) -> MockContact:
        contact_id = await self.exec(
            "return mock.contact(args.name, args.payload)", {"name": name, "payload": payload}
        )
        return MockContact(self, str(contact_id), name)

    async def room(self, topic: str, members: Iterable[MockContact] = ()) -> MockRoom:
        people = list(members)
        room_id = await self.exec(
            "return mock.room(args.topic, args.memberIds)",
            {"topic": topic, "memberIds": [m.id for m in people]},
        )
        return MockRoom(self, str(room_id), topic, people)

    async def mock_say(
        self, from_id: str, content: dict[str, Any], room: MockRoom | None, mentions: list[str]
    ) -> str | None:
        result = await self.exec(
            "return mock.say(args.fromId, args.content, args.toId, args.mentionIds)",
            {
                "fromId": from_id,
                "content": content,
                "toId": room.id if room is not None else None,
                "mentionIds": mentions,
            },
        )
        return None if result is None else str(result)

    async def puppet_calls(self, method: str | None = None) -> list[dict[str, Any]]:
        """Puppet calls the mock ignores (alias, signature, ...), as the bot made them."""
        calls = await self.exec("return mock.calls")
        return [c for c in calls if method is None or c.get("method") == method]

    def server_message(self, message_id: str) -> Message:
        """A view of message ``message_id`` on this bot (to recall or forward it, ...)."""
        return Message(self.server, self.name, {"id": message_id})

    async def friendship_accepted(self, friendship_id: str) -> bool:
        return bool(await self.exec("return mock.accepted(args.id)", {"id": friendship_id}))


class MockWechat(Kit[MockBot]):
    """The running kit on the mock puppet: ``server`` plus one :class:`MockBot` per account."""

    async def add_bot(
        self,
        name: str,
        *,
        user_name: str = DEFAULT_USER_NAME,
        timeout: float = 60.0,
        client_options: dict[str, Any] | None = None,
    ) -> MockBot:
        """Start another Node client on the mock puppet, logged in as ``user_name``."""
        config = {
            "server": {"token": self.server.token},
            "client": {"url": self.server.url, "bot": name, **(client_options or {})},
            "puppet": {"name": "wechaty-puppet-mock"},
            "mock": {"user_name": user_name},
        }
        return await self.start_bot(MockBot(self, name, user_name), config, timeout)

    async def contact(self, name: str, **payload: Any) -> MockContact:
        """Create a contact (a friend of the first bot)."""
        return await self.bot().contact(name, **payload)

    async def room(self, topic: str, members: Iterable[MockContact] = ()) -> MockRoom:
        """Create a room of the first bot with ``members``."""
        return await self.bot().room(topic, members)
