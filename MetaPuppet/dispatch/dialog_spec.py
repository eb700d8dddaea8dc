"""DialogSpec: what a router registers for a dialog (run by :mod:`MetaPuppet.dialog`).

A leaf: routers build specs, the dialog manager runs them, and neither imports the other's
machinery through it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["DEFAULT_CANCEL_MESSAGE", "DEFAULT_CANCEL_WORDS", "DEFAULT_TIMEOUT", "DialogSpec"]

#: Seconds a dialog waits for an answer before it ends (the old wechat-dialog trick's value).
DEFAULT_TIMEOUT: Final = 60.0
DEFAULT_CANCEL_WORDS: Final = ("取消", "cancel")
DEFAULT_CANCEL_MESSAGE: Final = "已取消"


@dataclass(frozen=True, eq=False)
class DialogSpec:
    """A registered dialog: its function (``async def f(d)``) and settings."""

    name: str
    func: Callable[[Any], Awaitable[Any]]
    version: int | str = 1
    timeout: float | None = DEFAULT_TIMEOUT
    timeout_message: Any = None
    cancel_words: frozenset[str] = frozenset(DEFAULT_CANCEL_WORDS)
    cancel_message: Any = DEFAULT_CANCEL_MESSAGE
    error_message: Any = None
