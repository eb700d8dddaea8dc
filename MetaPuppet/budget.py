"""Send budgets: how many messages a bot may still send a contact, and until when.

Channels with a budget (iLink) accept a bot's message only after the user wrote, a limited
number per user message, within a window after it (:class:`~MetaPuppet.protocol.SendBudget`).
The model here is per user message: each message from the user opens a *window* (it
brings a fresh ``context_token`` on the Node side) with its own allowance, measured from
the time the user sent it, so a bot that catches up after downtime does not answer
messages whose window already closed. A reply to a message uses that message's window; any
other send uses the newest one.

The windows are kept in ``send-budgets.json`` in the data directory (0600), so a restart
neither forgets what was sent nor reopens a closed window.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ._files import SaveFailure, write_json
from .errors import SendWindowClosed
from .protocol import SendBudget

__all__ = ["MAX_TOTAL_WINDOWS", "MAX_WINDOWS", "SendBudgets", "Window", "judge"]

log = logging.getLogger("MetaPuppet.budget")

#: windows remembered per contact (the newest): a reply to an older message uses the newest
MAX_WINDOWS: Final = 256
#: windows remembered in all; the least recently active contacts are forgotten first
MAX_TOTAL_WINDOWS: Final = 100_000
#: changes reach the file at most this often (and at a stop); a crash in between can lose
#: the last count, and then the channel's own refusal (ret -2) closes the window
SAVE_DELAY_S: Final = 1.0
FILE_FORMAT: Final = 1


@dataclass
class Window:
    """The allowance one user message opened."""

    message_id: str
    opened_at: float
    sent: int = 0
    #: why the channel itself refused a send in this window (it stays closed)
    refused: str | None = None

    def to_wire(self) -> list[Any]:
        return [self.message_id, self.opened_at, self.sent, self.refused]

    @classmethod
    def from_wire(cls, wire: Any) -> Window:
        message_id, opened_at, sent, refused = wire
        return cls(str(message_id), float(opened_at), int(sent), refused)


def judge(
    bot: str, contact: str, rules: SendBudget, window: Window | None, now: float
) -> SendWindowClosed | None:
    """Why ``rules`` do not allow a send through ``window`` at ``now`` (None: they do)."""
    if window is None:
        if rules.user_first:
            return SendWindowClosed(
                bot, contact, "the user has not written to the bot yet", closed_at=None
            )
        return None
    closes = window.opened_at + rules.window_s
    if window.refused is not None:
        return SendWindowClosed(bot, contact, window.refused, closed_at=window.opened_at)
    if now >= closes:
        return SendWindowClosed(
            bot,
            contact,
            f"the window of {_duration(rules.window_s)} after the user's message closed at "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(closes))}",
            closed_at=closes,
        )
    if window.sent >= rules.per_user_message:
        return SendWindowClosed(
            bot,
            contact,
            f"{window.sent} messages were sent since the user's message, the most the "
            f"channel allows ({rules.per_user_message})",
            closed_at=now,
        )
    return None


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 60:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


class SendBudgets:
    """The windows of every (bot, contact) on channels with a budget.

    ``clock`` gives seconds since the epoch (injectable for tests); ``path`` is where the
    windows are kept (None: memory only).
    """

    def __init__(self, path: Path | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._windows: OrderedDict[tuple[str, str], list[Window]] = OrderedDict()
        self._count = 0
        self._loaded = False
        self._save_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ the user writes

    def user_wrote(self, bot: str, contact: str, message_id: str, sent_at: float) -> None:
        """A message from ``contact`` arrived: it opens a window from ``sent_at``."""
        self._load()
        key = (bot, contact)
        windows = self._windows.pop(key, [])
        self._windows[key] = windows  # the most recently active contact comes last
        if any(w.message_id == message_id for w in windows):
            return  # the same message again: nothing new
        windows.append(Window(message_id, sent_at))
        windows.sort(key=lambda w: w.opened_at)
        self._count += 1
        if len(windows) > MAX_WINDOWS:
            self._count -= len(windows) - MAX_WINDOWS
            del windows[:-MAX_WINDOWS]
        while self._count > MAX_TOTAL_WINDOWS and len(self._windows) > 1:
            _, forgotten = self._windows.popitem(last=False)
            self._count -= len(forgotten)
        self._save()

    # ------------------------------------------------------------------ the bot sends

    def check(
        self, bot: str, contact: str, rules: SendBudget, reply_to: str | None = None
    ) -> Window | None:
        """The window a send now would use; raises :class:`SendWindowClosed` (nothing sent)
        when the rules do not allow it. None: the rules do not need a window."""
        self._load()
        window = self._window(bot, contact, reply_to)
        closed = judge(bot, contact, rules, window, self.clock())
        if closed is not None:
            raise closed
        return window

    async def reserve(
        self, bot: str, contact: str, rules: SendBudget, reply_to: str | None = None
    ) -> Window | None:
        """:meth:`check`, and count the send at once (two sends at the same time cannot
        both take the last one); :meth:`release` gives it back if it did not go out."""
        window = self.check(bot, contact, rules, reply_to)
        self.spent(bot, contact, window)
        return window

    async def release(self, bot: str, contact: str, window: Window | None) -> None:
        """A send :meth:`reserve` counted did not go out."""
        if window is not None and window.sent > 0:
            window.sent -= 1
            self._save()

    async def refuse(self, bot: str, contact: str, window: Window | None, reason: str) -> None:
        """The channel refused a send :meth:`reserve` counted: the window is closed."""
        await self.release(bot, contact, window)
        self.refused(bot, contact, window, reason)

    def spent(self, bot: str, contact: str, window: Window | None) -> None:
        """A send through ``window`` was accepted by the channel."""
        if window is not None:
            window.sent += 1
            self._save()

    def refused(self, bot: str, contact: str, window: Window | None, reason: str) -> None:
        """The channel refused a send through ``window``: it is closed until the user writes."""
        if window is not None:
            window.refused = reason
            self._save()

    def status(self, bot: str, contact: str, rules: SendBudget) -> dict[str, Any]:
        """What may be sent to ``contact`` now (``server.send_budget``, the dashboard)."""
        self._load()
        window = self._window(bot, contact, None)
        status: dict[str, Any] = {"contact": contact, "rules": rules.to_wire()}
        if window is None:
            status.update(open=not rules.user_first, remaining=None, closes_at=None)
            status["reason"] = None if not rules.user_first else "the user has not written yet"
            return status
        closes = window.opened_at + rules.window_s
        remaining = max(0, rules.per_user_message - window.sent)
        try:
            self.check(bot, contact, rules)
            reason = None
        except SendWindowClosed as closed:
            reason = closed.reason
        status.update(
            open=reason is None,
            remaining=0 if reason is not None else remaining,
            closes_at=closes,
            opened_by=window.message_id,
            opened_at=window.opened_at,
            sent=window.sent,
            reason=reason,
        )
        return status

    def _window(self, bot: str, contact: str, reply_to: str | None) -> Window | None:
        windows = self._windows.get((bot, contact))
        if not windows:
            return None
        if reply_to is not None:
            for window in windows:
                if window.message_id == reply_to:
                    return window
        return windows[-1]

    # ------------------------------------------------------------------ the file

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self.path is None or not self.path.is_file():
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            for entry in data["windows"]:
                bot, contact, windows = entry
                loaded = [Window.from_wire(w) for w in windows][-MAX_WINDOWS:]
                self._windows[(str(bot), str(contact))] = loaded
                self._count += len(loaded)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("could not read the send budgets in %s (%s); starting afresh", self.path, exc)
            self._windows.clear()
            self._count = 0

    def _save(self) -> None:
        """Write the windows soon (at most every :data:`SAVE_DELAY_S`), or now without a loop."""
        if self.path is None or self._save_timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._save_timer = loop.call_later(SAVE_DELAY_S, self.flush)

    def flush(self) -> SaveFailure | None:
        """Write the windows to the file now (a stop calls it); returns what failed, if it did."""
        if self._save_timer is not None:
            self._save_timer.cancel()
            self._save_timer = None
        if self.path is None or not self._loaded:
            return None
        windows = [
            [bot, contact, [w.to_wire() for w in items]]
            for (bot, contact), items in self._windows.items()
        ]
        try:
            write_json(self.path, {"format": FILE_FORMAT, "windows": windows})
        except OSError as exc:
            log.error("could not save the send budgets to %s: %s", self.path, exc)
            return SaveFailure("the send budgets", self.path, str(exc))
        return None
