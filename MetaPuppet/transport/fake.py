"""FakePuppetLink: a puppet in Python, for fast tests without Node (like httpx's MockTransport).

::

    link = FakePuppetLink("bot", answer=lambda event, data: {"ok": True, "result": 42})
    server.attach_puppet(link)
    assert await server.exec_snippet("return 42") == 42
    assert link.calls[0][0] == "exec"
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..protocol import ACTION_SAY, EV_ACT, Capabilities
from .link import PuppetLink

__all__ = ["FakePuppetLink", "say_fields"]

Answer = Callable[[str, Any], Any]


class FakePuppetLink(PuppetLink):
    """Records every call and answers it with ``answer(event, data)`` (sync or async);
    by default every call succeeds with ``None``. ``capabilities`` stands for what the
    puppet would report (default: a channel that can do everything but typing)."""

    def __init__(
        self,
        bot: str = "fake",
        answer: Answer | None = None,
        *,
        capabilities: Capabilities | None = None,
    ) -> None:
        self.bot = bot
        if capabilities is not None:
            self.capabilities = capabilities
        self.calls: list[tuple[str, Any]] = []
        self.answer: Answer = answer or (lambda event, data: {"ok": True, "result": None})
        self.closed: str | None = None

    async def call(self, event: str, data: Any, timeout: float) -> Any:
        self.calls.append((event, data))
        result = self.answer(event, data)
        if inspect.isawaitable(result):
            result = await result
        return result

    def close(self, reason: str) -> None:
        self.closed = reason

    def said(self) -> list[dict[str, Any]]:
        """What every ``say`` this puppet was asked to do said, oldest first: the fields of
        the typed ``say`` action (``to``, ``kind``, ``sayable``, ``mentions``, and
        ``replyTo`` on a channel with send windows), as the ``say`` snippet got them."""
        return [said for event, data in self.calls if (said := say_fields(event, data))]

    def send_ids(self) -> list[str]:
        """The send id of every typed ``say``, oldest first."""
        return [
            str(data["send_id"])
            for event, data in self.calls
            if event == EV_ACT and isinstance(data, dict) and data.get("action") == ACTION_SAY
        ]


def say_fields(event: str, data: Any) -> dict[str, Any] | None:
    """The fields of a ``say`` in one call to a puppet (a typed action or the ``SAY``
    snippet's ``args``), or None when the call is no ``say``."""
    if not isinstance(data, dict):
        return None
    if event == EV_ACT and data.get("action") == ACTION_SAY:
        return {k: v for k, v in data.items() if k not in _ACTION_ONLY}
    args = data.get("args")
    if event == "exec" and isinstance(args, dict) and "sayable" in args:
        return args
    return None


_ACTION_ONLY = frozenset({"action", "send_id", "timeout_ms"})
