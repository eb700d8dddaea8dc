"""Clocks for the simulator: send windows and QR expiry read an injectable clock, not the wall.

Long-poll holds always use real time (a test must not wait for an injected hour); only the
rules that depend on "how long ago" (the 24-hour send window, QR code lifetime, message
timestamps) read the clock, so a test can move it forward instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "OffsetClock"]


class Clock(Protocol):
    """Seconds since the epoch, like :func:`time.time`."""

    def __call__(self) -> float: ...


class ManualClock:
    """A clock that moves only when told to: ``advance(3600)`` is an hour later at once."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else float(start)

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock only moves forward, got {seconds} seconds")
        self._now += seconds

    def set(self, now: float) -> None:
        self._now = float(now)


class OffsetClock:
    """Wall time plus an offset that ``advance`` grows: the standalone simulator's clock."""

    def __init__(self) -> None:
        self._offset = 0.0

    def __call__(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock only moves forward, got {seconds} seconds")
        self._offset += seconds
