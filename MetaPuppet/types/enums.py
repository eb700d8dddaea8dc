"""Wechaty's enumerations, with Wechaty's numbering."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ContactGender", "ContactType", "FriendshipType", "MessageType"]


class MessageType(IntEnum):
    """Wechaty's message types, with Wechaty's numbering."""

    Unknown = 0
    Attachment = 1
    Audio = 2
    Contact = 3
    ChatHistory = 4
    Emoticon = 5
    Image = 6
    Text = 7
    Location = 8
    MiniProgram = 9
    GroupNote = 10
    Transfer = 11
    RedEnvelope = 12
    Recalled = 13
    Url = 14
    Video = 15
    Post = 16


class FriendshipType(IntEnum):
    Unknown = 0
    Confirm = 1
    Receive = 2
    Verify = 3


class ContactGender(IntEnum):
    Unknown = 0
    Male = 1
    Female = 2


class ContactType(IntEnum):
    Unknown = 0
    Individual = 1
    Official = 2
    Corporation = 3
