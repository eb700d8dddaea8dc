"""Which bot events a web client wants: by bot, event name, room and contact.

A filter is four sets; an empty set means "any". An event matches when it matches every
non-empty set (AND across kinds, OR within one kind)::

    EventFilter.parse({"events": ["message"], "rooms": "R1@chatroom"})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..protocol import BOT_EVENTS, MAX_ID_LENGTH, BotEvent
from .errors import WebError

__all__ = [
    "FILTER_KEYS",
    "MAX_FILTER_VALUES",
    "EventFilter",
    "contacts_of",
    "room_of",
]

FILTER_KEYS: Final = ("bots", "events", "rooms", "contacts")
MAX_FILTER_VALUES: Final = 200


@dataclass(frozen=True, slots=True)
class EventFilter:
    bots: frozenset[str] = frozenset()
    events: frozenset[str] = frozenset()
    rooms: frozenset[str] = frozenset()
    contacts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, data: Any) -> EventFilter:
        """Validate a filter sent by a client; raises :class:`WebError` (invalid_request)."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise WebError(
                "invalid_request", 'the filter must be an object like {"events": ["message"]}'
            )
        unknown = sorted(set(data) - set(FILTER_KEYS))
        if unknown:
            raise WebError(
                "invalid_request",
                f"unknown filter key {unknown[0]!r}: use {', '.join(FILTER_KEYS)}",
            )
        values = {key: _strings(data.get(key), key) for key in FILTER_KEYS}
        bad = sorted(values["events"] - BOT_EVENTS)
        if bad:
            raise WebError(
                "invalid_request",
                f"unknown event name {bad[0]!r}: use {', '.join(sorted(BOT_EVENTS))}",
            )
        return cls(**values)

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> EventFilter:
        """The filter of a REST query: ``?bot=a&event=message,scan&room=...&contact=...``."""
        data = {
            plural: query[single].split(",")
            for single, plural in (
                ("bot", "bots"),
                ("event", "events"),
                ("room", "rooms"),
                ("contact", "contacts"),
            )
            if single in query
        }
        return cls.parse(data)

    @property
    def is_everything(self) -> bool:
        return not (self.bots or self.events or self.rooms or self.contacts)

    def matches(self, event: BotEvent) -> bool:
        if self.bots and event.bot not in self.bots:
            return False
        if self.events and event.name not in self.events:
            return False
        if self.rooms and room_of(event) not in self.rooms:
            return False
        if self.contacts and self.contacts.isdisjoint(contacts_of(event)):
            return False
        return True

    def to_dict(self) -> dict[str, list[str]]:
        return {key: sorted(getattr(self, key)) for key in FILTER_KEYS}


def _strings(value: Any, key: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise WebError("invalid_request", f"filter {key!r} must be a string or a list of strings")
    if len(value) > MAX_FILTER_VALUES:
        raise WebError(
            "invalid_request", f"filter {key!r} holds more than {MAX_FILTER_VALUES} values"
        )
    for item in value:
        if not isinstance(item, str) or not item or len(item) > MAX_ID_LENGTH:
            raise WebError(
                "invalid_request",
                f"filter {key!r} must hold non-empty strings of at most {MAX_ID_LENGTH} characters",
            )
    return frozenset(value)


def room_of(event: BotEvent) -> str | None:
    """The room an event happened in, if any."""
    room = event.payload.get("roomId")
    return room if isinstance(room, str) and room else None


_CONTACT_FIELDS: Final = (
    "talkerId",
    "listenerId",
    "contactId",
    "inviterId",
    "removerId",
    "changerId",
)
_CONTACT_LISTS: Final = ("inviteeIdList", "leaverIdList")


def contacts_of(event: BotEvent) -> set[str]:
    """The contacts an event involves: who spoke or was spoken to, who asked, joined, left."""
    payload = event.payload
    found = {payload[f] for f in _CONTACT_FIELDS if isinstance(payload.get(f), str) and payload[f]}
    for field in _CONTACT_LISTS:
        items = payload.get(field)
        if isinstance(items, list):
            found.update(i for i in items if isinstance(i, str))
    return found
