"""The errors a dialog raises, and UnexpectedAnswer, which steers routing on purpose."""

from __future__ import annotations

from typing import Any

from ..dispatch.handlers import FlowControl
from ..errors import MetaPuppetError

__all__ = [
    "DialogError",
    "DialogReplayError",
    "SideEffectFailed",
    "SideEffectInterrupted",
    "Suspended",
    "UnexpectedAnswer",
]


class DialogError(MetaPuppetError):
    """A dialog could not go on."""


class DialogReplayError(DialogError):
    """Replaying a dialog's journal took another path than the first run did."""


class SideEffectFailed(DialogError):
    """A ``d.once`` function raised (then, and on every replay of that step)."""


class SideEffectInterrupted(DialogError):
    """A ``d.once`` function was running when its process stopped: it may or may not
    have finished, and it is never run a second time."""


class UnexpectedAnswer(FlowControl):
    """Raise in a dialog to end it and route the message that was just received as a new
    event (the old wechat-dialog trick's ``UnexpectAnswer``); ``reply`` is sent first::

        if answer not in menu:
            raise UnexpectedAnswer("好的,先不点了")
    """

    def __init__(self, reply: Any = None) -> None:
        super().__init__(reply)
        self.reply = reply


class Suspended(BaseException):
    """Unwinds a dialog function at a new question (user code catching Exception never
    sees it; ``finally`` blocks do run). Raised by ``Dialog.ask``, caught by the manager."""
