"""Cards a bot can send: link cards and mini-program cards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MiniProgram", "UrlLink"]


@dataclass(frozen=True)
class UrlLink:
    """A link card."""

    url: str
    title: str = ""
    description: str = ""
    thumbnail_url: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": "url",
            "payload": {
                "url": self.url,
                "title": self.title,
                "description": self.description,
                "thumbnailUrl": self.thumbnail_url,
            },
        }


@dataclass(frozen=True)
class MiniProgram:
    """A mini-program card; ``payload`` follows Wechaty's MiniProgram payload."""

    payload: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        return {"type": "mini_program", "payload": dict(self.payload)}
