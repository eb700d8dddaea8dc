"""RobotBase: subclass it for reply logic. TestBot: the original's reversing robot."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .jobs import JobSet
from .protocol import BotEvent
from .routable import Routable
from .types import (
    BOT_EVENT_HOOKS,
    FileBox,
    Friendship,
    FriendshipType,
    Message,
    RoomEvent,
    RoomInvitation,
    strip_mentions,
)

if TYPE_CHECKING:
    from .server import SocketServerCore

__all__ = ["ASSETS", "RobotBase", "TestBot"]

log = logging.getLogger("MetaPuppet.robot")


class RobotBase(Routable):
    """Reply logic for one or more bots.

    Override the hooks you need; what a hook returns is sent back where the event came
    from (``str``, :class:`~MetaPuppet.FileBox`, :class:`~MetaPuppet.UrlLink`, the original
    ``{'wx_msg_type': 'TEXT', 'text': ...}`` dicts, or a list of those). Hooks may be
    ``async def`` (run on the server loop) or plain ``def`` (run in a thread pool)::

        class Echo(RobotBase):
            async def on_message(self, msg):
                return f"you said {msg.text}"

    The original hooks still work: ``_process_message(message)`` receives the original
    dict shape (``message['payload']['text']``, ``roomId``, ``fromId``) and
    ``_process_friend_invitation(message)`` greets a new friend.

    Routed handlers and dialogs (:mod:`MetaPuppet.dispatch`, :mod:`MetaPuppet.dialog`) sit in
    front of the hooks; an event that no handler takes falls through to its hook::

        bot = Echo(dialog_store=SQLiteStorage("data/dialogs.db"))

        @bot.command("help")
        async def help_(msg):
            return "send 开始 to start"

        @bot.dialog(trigger="开始")
        async def intro(d):
            name = await d.ask("你叫什么名字?")
            await d.say(f"你好, {name}")
    """

    #: Hand the bot's own messages to the hooks too (off: a bot never answers itself).
    handle_self_messages: bool = False
    #: Accept every friend request before ``on_friendship`` greets (the original did).
    auto_accept_friends: bool = True

    def __init__(self, **kwargs: Any) -> None:
        self.name: str = kwargs.pop("name", type(self).__name__)
        self.server: SocketServerCore | None = None
        for key, value in kwargs.items():
            setattr(self, key, value)

    def add_server(self, server: SocketServerCore) -> None:
        self.server = server
        if getattr(server, "dialog_provider", False) is None:  # the dashboard lists dialogs
            server.dialog_provider = self.dialogs_in_progress

    def get_name(self) -> str:
        return self.name

    @property
    def jobs(self) -> JobSet:
        """This robot's scheduled jobs: ``@bot.every("1d", at="08:30")``, ``@bot.cron(...)``,
        ``bot.schedule_once(when, func, *args)`` (see :mod:`MetaPuppet.jobs`)."""
        jobs: JobSet | None = self.__dict__.get("_jobs")
        if jobs is None:
            jobs = self.__dict__["_jobs"] = JobSet()
        return jobs

    def every(self, interval: Any, **options: Any) -> Any:
        """Decorator: run a function every ``interval`` (``"30s"``, ``"1d"``; ``at="08:30"``)."""
        return self.jobs.every(interval, **options)

    def cron(self, expression: str, **options: Any) -> Any:
        """Decorator: run a function on a crontab schedule (``"0 9 * * 1-5"``: 9:00 Mon-Fri)."""
        return self.jobs.cron(expression, **options)

    def schedule_once(self, when: Any, func: Any, *args: Any, **options: Any) -> Any:
        """Run ``func(ctx, *args)`` once at ``when`` (a datetime, ISO text, seconds)."""
        return self.jobs.schedule_once(when, func, *args, **options)

    # ---------------------------------------------------------------- typed hooks

    async def on_message(self, message: Message) -> Any:
        """A message from a contact or a room; by default calls ``_process_message``."""
        return await self.process_message(message.to_legacy_dict())

    async def on_friendship(self, friendship: Friendship) -> Any:
        """A friend request: accepted when ``auto_accept_friends``, then greeted."""
        if friendship.type != FriendshipType.Receive:
            return None
        if self.auto_accept_friends:
            await friendship.accept()
        return await self.process_friend_invitation(friendship.to_legacy_dict())

    async def on_room_invite(self, invitation: RoomInvitation) -> Any:
        """An invitation to a room; call ``await invitation.accept()`` to join."""
        return None

    async def on_room_join(self, event: RoomEvent) -> Any:
        return None

    async def on_room_leave(self, event: RoomEvent) -> Any:
        return None

    async def on_room_topic(self, event: RoomEvent) -> Any:
        return None

    async def on_bot_event(self, event: BotEvent) -> Any:
        """login, logout, scan, ready, error and heartbeat; dispatches to the hooks below."""
        name = BOT_EVENT_HOOKS.get(event.name)
        if name is None:
            return None
        return await getattr(self, name)(event.bot, event.payload)

    async def on_login(self, bot: str, user: dict[str, Any]) -> None:
        log.info("bot %r logged in as %s", bot, user.get("name"))

    async def on_logout(self, bot: str, user: dict[str, Any]) -> None:
        log.info("bot %r logged out", bot)

    async def on_scan(self, bot: str, scan: dict[str, Any]) -> None:
        log.info("bot %r waits for a QR scan (status %s)", bot, scan.get("status"))

    async def on_ready(self, bot: str, payload: dict[str, Any]) -> None:
        return None

    async def on_puppet_error(self, bot: str, error: dict[str, Any]) -> None:
        log.debug("bot %r reported an error: %s", bot, error.get("message"))

    async def on_heartbeat(self, bot: str, payload: dict[str, Any]) -> None:
        return None

    async def on_error(self, error: BaseException, event: BotEvent) -> None:
        """A hook raised while handling ``event``; the server already logged it."""
        return None

    # ---------------------------------------------------------------- original hooks

    async def process_message(self, message: dict[str, Any], verbose: bool = False) -> Any:
        return await self._process_message(message)

    async def _process_message(self, message: dict[str, Any], verbose: bool = False) -> Any:
        return None

    async def process_friend_invitation(
        self, message: dict[str, Any], verbose: bool = False
    ) -> Any:
        return await self._process_friend_invitation(message)

    async def _process_friend_invitation(
        self, message: dict[str, Any], verbose: bool = False
    ) -> Any:
        return None


ASSETS = Path(__file__).parent / "assets"


class TestBot(RobotBase):
    """Answers a message with its text reversed, as the original's TestBot did.

    In rooms it answers only when mentioned. ``$debug file$`` (first line) answers with an
    image; new friends are greeted with ``Hello Human!``.
    """

    __test__ = False  # not a pytest test class

    async def _process_message(self, message: dict[str, Any], verbose: bool = False) -> Any:
        payload = message.get("payload") or {}
        text = str(payload.get("text") or "")
        if payload.get("roomId") and not payload.get("mentionSelf"):
            return None
        lines = text.split("\n")
        header = lines[0].strip().lower()
        if header == "$debug file$" and len(lines) > 1:
            return FileBox.from_file(ASSETS / "metapuppet.png")
        if header == "$debug text$" and len(lines) > 1:
            text = "\n".join(lines[1:])
        if payload.get("roomId"):
            text = strip_mentions(text)
        reversed_text = text[::-1]
        return reversed_text or None

    async def _process_friend_invitation(
        self, message: dict[str, Any], verbose: bool = False
    ) -> Any:
        return {"wx_msg_type": "TEXT", "text": "Hello Human!"}
