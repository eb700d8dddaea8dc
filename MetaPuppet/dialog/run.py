"""DialogRun: the state one step of a dialog works on, shared by ``d`` and its manager."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Final

from ..dispatch.dialog_spec import DialogSpec
from ..dispatch.host import DispatchHost
from ..storage import StorageKey

__all__ = ["MAX_JOURNAL", "DialogRun", "fingerprint"]

#: Longer dialogs replay too much on every step; split them or keep data in your own store.
MAX_JOURNAL: Final = 500


@dataclass(eq=False)
class DialogRun:
    """One run of a dialog function over its stored state.

    ``state`` is what the store keeps (trigger, journal, pending question ...); ``host``
    sends the dialog's messages and runs its side effects.
    """

    spec: DialogSpec
    key: StorageKey
    state: dict[str, Any]
    host: DispatchHost

    @property
    def journal(self) -> list[dict[str, Any]]:
        journal: list[dict[str, Any]] = self.state["journal"]
        return journal

    @property
    def is_room(self) -> bool:
        return bool(self.state["trigger"].get("roomId"))


def fingerprint(something: Any) -> str:
    """A short, stable digest of a question, a sent thing or a function name."""
    if something is None:
        text = ""
    elif isinstance(something, str):
        text = something
    else:
        text = f"{type(something).__name__}:{getattr(something, 'name', '')}"
    return f"{zlib.crc32(text.encode('utf-8', 'surrogatepass')):08x}"
