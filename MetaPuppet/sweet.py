"""SweetSocketServer: typed actions on top of :class:`SocketServerCore`.

Every action is async first (``async_send_wx_msg``) with a blocking twin of the original
name (``send_wx_msg``) for plain threads. Each action runs a constant snippet; the data
travels in ``args``.
"""

from __future__ import annotations

import json
from typing import Any

from ._sync import sync_twin
from .server import SocketServerCore
from .snippets import (
    ACCEPT_FRIENDSHIP_JSON,
    CONTACT_ALIAS_SET,
    MESSAGE_TYPES,
    ROOM_ALIAS,
    ROOM_MEMBER_ALL,
    SELF_SIGNATURE,
)
from .types import FileBox, UrlLink

__all__ = ["CHAT_TYPES", "SweetSocketServer"]

CHAT_TYPES = {
    "contact": False,
    "friend": False,
    "friend_chat": False,
    "room": True,
    "group": True,
    "group_chat": True,
}


def _is_room(chat_type: str) -> bool:
    try:
        return CHAT_TYPES[chat_type.lower()]
    except (KeyError, AttributeError):
        raise ValueError(
            f"unknown chat_type {chat_type!r}: use one of {', '.join(CHAT_TYPES)}"
        ) from None


class SweetSocketServer(SocketServerCore):
    """The server with the original project's convenience actions."""

    async def async_send_wx_msg(
        self, msg: Any, username: str, chat_type: str, *, bot: str | None = None
    ) -> None:
        """Send a reply-shaped ``msg`` (str, legacy dict, FileBox, list, ...)."""
        await self.send_reply(msg, to=username, bot=bot, room=_is_room(chat_type))

    async def async_send_wx_msg_text(
        self, text: str, username: str, chat_type: str, *, bot: str | None = None
    ) -> str | None:
        return await self.say(username, str(text), bot=bot, room=_is_room(chat_type))

    async def async_send_wx_msg_file(
        self,
        file_path: str,
        file_type: Any = None,
        username: str = "",
        chat_type: str = "contact",
        *,
        bot: str | None = None,
    ) -> str | None:
        """Send a local file (read here, so the Node client may run elsewhere)."""
        return await self.say(
            username, FileBox.from_file(file_path), bot=bot, room=_is_room(chat_type)
        )

    async def async_send_wx_msg_url(
        self,
        description: str,
        thumbnailUrl: str,  # noqa: N803 - the original's parameter name
        title: str,
        url: str,
        username: str,
        chat_type: str,
        *,
        bot: str | None = None,
    ) -> str | None:
        link = UrlLink(url=url, title=title, description=description, thumbnail_url=thumbnailUrl)
        return await self.say(username, link, bot=bot, room=_is_room(chat_type))

    async def async_accept_friend_invitation(
        self, invitation_json: Any, *, bot: str | None = None
    ) -> None:
        """Accept a friend request given its payload (a dict or its JSON text)."""
        payload = (
            json.loads(invitation_json) if isinstance(invitation_json, str) else invitation_json
        )
        if not isinstance(payload, dict):
            raise ValueError("invitation_json must be a friendship payload (dict or JSON text)")
        await self.exec_snippet(ACCEPT_FRIENDSHIP_JSON, {"payload": payload}, bot=bot)

    async def async_get_group_alias(
        self, user_id: str, room_id: str, *, bot: str | None = None
    ) -> str | None:
        result = await self.exec_snippet(ROOM_ALIAS, {"id": room_id, "contactId": user_id}, bot=bot)
        return None if result is None else str(result)

    async def async_set_alias(
        self, username: str, remarkname: str, *, bot: str | None = None
    ) -> bool:
        return bool(
            await self.exec_snippet(
                CONTACT_ALIAS_SET, {"id": username, "alias": remarkname}, bot=bot
            )
        )

    async def async_get_all_message_types(self, *, bot: str | None = None) -> dict[str, Any]:
        result = await self.exec_snippet(MESSAGE_TYPES, bot=bot)
        return dict(result or {})

    async def async_get_room_members(
        self, room_id: str, *, bot: str | None = None
    ) -> list[dict[str, Any]]:
        members = await self.exec_snippet(ROOM_MEMBER_ALL, {"id": room_id, "name": None}, bot=bot)
        return list(members or [])

    async def async_change_self_signature(self, signature: str, *, bot: str | None = None) -> bool:
        return bool(await self.exec_snippet(SELF_SIGNATURE, {"signature": signature}, bot=bot))

    send_wx_msg = sync_twin(async_send_wx_msg)
    send_wx_msg_text = sync_twin(async_send_wx_msg_text)
    send_wx_msg_file = sync_twin(async_send_wx_msg_file)
    send_wx_msg_url = sync_twin(async_send_wx_msg_url)
    accept_friend_invitation = sync_twin(async_accept_friend_invitation)
    get_group_alias = sync_twin(async_get_group_alias)
    set_alias = sync_twin(async_set_alias)
    get_all_message_types = sync_twin(async_get_all_message_types)
    get_room_members = sync_twin(async_get_room_members)
    change_self_signature = sync_twin(async_change_self_signature)
