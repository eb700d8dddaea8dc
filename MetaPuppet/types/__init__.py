"""Typed views of Wechaty objects: messages, contacts, rooms, friendships, files.

Each view wraps the plain JSON payload the Node client forwards, plus the bot it came
from, and acts through a :class:`PuppetAPI` only: methods run *constant* snippets (see
:mod:`MetaPuppet.snippets`) with the caller's data in ``args``, never formatted into code.
"""

from __future__ import annotations

from .api import PuppetAPI
from .cards import MiniProgram, UrlLink
from .contact import Contact, ContactSelf, contact_from_wire
from .enums import ContactGender, ContactType, FriendshipType, MessageType
from .events import BOT_EVENT_HOOKS, HOOK_KINDS, ROUTED_EVENTS, RoutedEvent, chat_of
from .filebox import FileBox
from .friendship import Friendship
from .lookup import Contacts, Rooms
from .message import Message, Typing, strip_mentions
from .room import Room, room_from_wire
from .room_event import RoomEvent
from .room_invitation import RoomInvitation
from .sayable import Reply, Sayable, reply_to_sayables, sayable_to_wire
from .view import View, id_of

__all__ = [
    "BOT_EVENT_HOOKS",
    "HOOK_KINDS",
    "ROUTED_EVENTS",
    "Contact",
    "ContactGender",
    "ContactSelf",
    "ContactType",
    "Contacts",
    "FileBox",
    "Friendship",
    "FriendshipType",
    "Message",
    "MessageType",
    "MiniProgram",
    "PuppetAPI",
    "Reply",
    "Room",
    "RoomEvent",
    "RoomInvitation",
    "Rooms",
    "RoutedEvent",
    "Sayable",
    "Typing",
    "UrlLink",
    "View",
    "chat_of",
    "contact_from_wire",
    "id_of",
    "reply_to_sayables",
    "room_from_wire",
    "sayable_to_wire",
    "strip_mentions",
]
