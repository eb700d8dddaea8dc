"""Filters: the predicates routed handlers are chosen by.

A filter takes the event's view and returns False/None (no match), True, or a dict of
extra handler arguments (``match``, ``args``, ``command``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from ..types import Message, MessageType, strip_mentions

__all__ = [
    "Filter",
    "command_filter",
    "contact_filter",
    "contains_filter",
    "custom_filter",
    "message_filters",
    "message_room",
    "message_talker",
    "message_text",
    "regex_filter",
    "room_filter",
    "strings",
    "text_filter",
]

Filter = Callable[[Any], Any]


# --------------------------------------------------------------------------- text helpers


def message_text(message: Message) -> str:
    """The text filters and dialogs see: trimmed, and in a room that mentions the bot,
    without the leading ``@mentions``."""
    text = message.text.strip()
    if message.room_id and message.mention_self:
        text = strip_mentions(text)
    return text


def strings(value: str | Iterable[str], what: str) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset({value})
    values = frozenset(value)
    if not values or not all(isinstance(v, str) for v in values):
        raise TypeError(f"{what} takes a string or strings, got {value!r}")
    return values


# --------------------------------------------------------------------------- filters


def text_filter(values: frozenset[str]) -> Filter:
    return lambda message: message_text(message) in values


def regex_filter(pattern: str | re.Pattern[str], text_of: Callable[[Any], str]) -> Filter:
    compiled = re.compile(pattern) if isinstance(pattern, str) else pattern

    def match(event: Any) -> dict[str, Any] | None:
        found = compiled.search(text_of(event))
        return {"match": found} if found else None

    return match


def contains_filter(values: frozenset[str], text_of: Callable[[Any], str]) -> Filter:
    return lambda event: any(v in text_of(event) for v in values)


def room_filter(
    room: bool | str | Iterable[str], room_of: Callable[[Any], tuple[str, str]]
) -> Filter:
    if isinstance(room, bool):
        wanted = room
        return lambda event: bool(room_of(event)[0]) == wanted
    names = strings(room, "room=")
    return lambda event: not names.isdisjoint(room_of(event))


def contact_filter(
    contact: str | Iterable[str], contact_of: Callable[[Any], tuple[str, str]]
) -> Filter:
    names = strings(contact, "contact=")
    return lambda event: not names.isdisjoint(contact_of(event))


def message_room(message: Message) -> tuple[str, str]:
    room = message.payload.get("room") or {}
    return message.room_id or "", str(room.get("topic") or "")


def message_talker(message: Message) -> tuple[str, str]:
    talker = message.talker
    return talker.id, talker.name


def command_filter(names: frozenset[str], prefixes: tuple[str, ...]) -> Filter:
    folded = frozenset(n.casefold() for n in names)

    def match(message: Message) -> dict[str, Any] | None:
        text = message_text(message)
        for prefix in prefixes:
            body = text[len(prefix) :]
            if not text.startswith(prefix) or not body or body[0].isspace():
                continue
            head, *rest = body.split(maxsplit=1)
            if head.casefold() in folded:
                return {"command": head, "args": rest[0].strip() if rest else ""}
        return None

    return match


def custom_filter(check: Callable[[Any], Any]) -> Filter:
    if not callable(check):
        raise TypeError(f"filter= takes a callable, got {check!r}")
    return check


def message_filters(
    *,
    text: str | Iterable[str] | None,
    regex: str | re.Pattern[str] | None,
    contains: str | Iterable[str] | None,
    room: bool | str | Iterable[str] | None,
    contact: str | Iterable[str] | None,
    type: MessageType | int | Iterable[MessageType | int] | None,  # noqa: A002 - the issue's name
    mention_self: bool | None,
    filter: Callable[[Any], Any] | None,  # noqa: A002
) -> list[Filter]:
    filters: list[Filter] = []
    if text is not None:
        filters.append(text_filter(strings(text, "text=")))
    if regex is not None:
        filters.append(regex_filter(regex, message_text))
    if contains is not None:
        filters.append(contains_filter(strings(contains, "contains="), message_text))
    if room is not None:
        filters.append(room_filter(room, message_room))
    if contact is not None:
        filters.append(contact_filter(contact, message_talker))
    if type is not None:
        kinds = frozenset(MessageType(t) for t in ([type] if isinstance(type, int) else list(type)))
        filters.append(lambda message: message.type in kinds)
    if mention_self is not None:
        wanted = bool(mention_self)
        filters.append(lambda message: message.mention_self == wanted)
    if filter is not None:
        filters.append(custom_filter(filter))
    return filters
