"""One table from Wechaty event names to views and robot hooks, and one chat key.

The pipeline, the routers, the dialogs and the robot all read these; nothing else decides
which hook an event goes to, where its reply goes, or which chat it belongs to.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..protocol import BotEvent
from .api import PuppetAPI
from .friendship import Friendship
from .message import Message
from .room_event import RoomEvent
from .room_invitation import RoomInvitation

__all__ = [
    "BOT_EVENT_HOOKS",
    "HOOK_KINDS",
    "ROUTED_EVENTS",
    "RoutedEvent",
    "chat_of",
]


@dataclass(frozen=True, slots=True)
class RoutedEvent:
    """An event kind that robots, routers and dialogs handle through a view."""

    name: str
    #: the robot hook that gets it when no routed handler takes it
    hook: str
    view: Callable[[PuppetAPI, BotEvent], Any]
    #: where a reply to it goes: (conversation id, is a room), or None (no reply)
    reply_to: Callable[[Any], tuple[str, bool] | None]


ROUTED_EVENTS: Final[Mapping[str, RoutedEvent]] = {
    kind.name: kind
    for kind in (
        RoutedEvent(
            "message",
            "on_message",
            lambda api, e: Message(api, e.bot, e.payload),
            lambda m: (m.conversation_id, m.room_id is not None),
        ),
        RoutedEvent(
            "friendship",
            "on_friendship",
            lambda api, e: Friendship(api, e.bot, e.payload),
            lambda f: (f.contact_id, False),
        ),
        RoutedEvent(
            "room-invite",
            "on_room_invite",
            lambda api, e: RoomInvitation(api, e.bot, e.payload),
            lambda _: None,
        ),
        *(
            RoutedEvent(
                name,
                f"on_{name.replace('-', '_')}",
                lambda api, e: RoomEvent(api, e.bot, e.name, e.payload),
                lambda r: (r.room_id, True),
            )
            for name in ("room-join", "room-leave", "room-topic")
        ),
    )
}

#: robot hook -> the event kind it handles (what routed handlers register for)
HOOK_KINDS: Final[Mapping[str, str]] = {kind.hook: kind.name for kind in ROUTED_EVENTS.values()}

#: bot-wide events and the robot hook each goes to (through ``on_bot_event``)
BOT_EVENT_HOOKS: Final[Mapping[str, str]] = {
    "login": "on_login",
    "logout": "on_logout",
    "scan": "on_scan",
    "ready": "on_ready",
    "error": "on_puppet_error",
    "heartbeat": "on_heartbeat",
}


def chat_of(name: str, payload: Mapping[str, Any]) -> str | None:
    """The contact or room an event belongs to; None for bot-wide events.

    A message's chat is its room, else the other person: the talker, or for the bot's own
    message the listener it wrote to. A friend request belongs to the new friend's chat,
    room events to their room.
    """
    if name == "message":
        room = payload.get("roomId")
        if room:
            return str(room)
        if payload.get("self"):
            other = payload.get("listenerId") or payload.get("toId") or payload.get("talkerId")
            return str(other or "")
        return str(payload.get("talkerId") or payload.get("fromId") or "")
    if name == "friendship":
        return str(payload.get("contactId") or "")
    if name in ("room-join", "room-leave", "room-topic"):
        return str(payload.get("roomId") or "")
    return None
