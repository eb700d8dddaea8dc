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

from ..protocol import Capabilities
from .link import PuppetLink

__all__ = ["FakePuppetLink"]

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
        """The arguments of every ``say`` this puppet was asked to do, oldest first."""
        return [
            data["args"]
            for event, data in self.calls
            if event == "exec" and isinstance(data.get("args"), dict) and "sayable" in data["args"]
        ]
