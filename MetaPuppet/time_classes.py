"""``Time``: the original project's printable timestamp."""

from __future__ import annotations

import time
from datetime import datetime

__all__ = [
    "Time",
]


class Time:
    """The moment it was made; prints as ``YYYY-mm-dd HH:MM:SS``."""

    def __init__(self, timestamp: float | None = None) -> None:
        self.timestamp = time.time() if timestamp is None else timestamp

    @property
    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp)

    def __str__(self) -> str:
        return self.datetime.strftime("%Y-%m-%d %H:%M:%S")

    def __repr__(self) -> str:
        return f"Time({self})"
