"""Messages built to break a careless client (the simulator's ``hostile`` control)."""

from __future__ import annotations

import os
from typing import Any, Protocol

from ._model import HOSTILE_KINDS, BotAccount, InboundMessage, SimulatorError, SimUser

__all__ = ["deliver_hostile"]

JSON = dict[str, Any]


class World(Protocol):
    """What building a hostile message needs of the simulated service."""

    def user(self, user: SimUser | str) -> SimUser: ...

    def account(self, bot_id: str | None = None) -> BotAccount: ...

    def text_item(self, text: str) -> JSON: ...

    def media_item(
        self,
        kind: str,
        data: bytes,
        key_form: str = "auto",
        file_name: str | None = None,
        transcript: str | None = None,
    ) -> JSON: ...

    def deliver(
        self,
        user: SimUser | str,
        items: list[JSON],
        bot_id: str | None = None,
        create_time_ms: int | None = None,
        payload_override: JSON | None = None,
    ) -> InboundMessage: ...


def deliver_hostile(
    world: World, user: SimUser | str, kind: str, bot_id: str | None = None
) -> InboundMessage:
    """A message built to break a careless client; see ``HOSTILE_KINDS``."""
    if kind == "many_items":
        return world.deliver(user, [world.text_item(f"item {i}") for i in range(10_000)], bot_id)
    if kind == "bad_media_key":
        return world.deliver(user, [world.media_item("image", os.urandom(256), "wrong")], bot_id)
    if kind == "garbage_media_key":
        return world.deliver(user, [world.media_item("file", b"x" * 100, "garbage")], bot_id)
    account = world.account(bot_id)
    sender = world.user(user)
    if kind == "wrong_types":
        raw: JSON = {
            "seq": "seven",
            "message_id": "not-a-number",
            "from_user_id": 12345,
            "to_user_id": ["nope"],
            "create_time_ms": "yesterday",
            "message_type": "1",
            "item_list": {"type": 1, "text_item": "oops"},
            "context_token": 42,
        }
    elif kind == "missing_fields":
        raw = {"seq": account.next_seq}
    else:
        raise SimulatorError(f"unknown hostile kind {kind!r}; use one of {HOSTILE_KINDS}")
    return world.deliver(sender, [], bot_id, payload_override=raw)
