"""PuppetAPI: the one thing a view (Message, Contact, Room ...) talks to.

Views never know the server class. Whatever implements these methods can stand
behind them: the server's puppet client in production, :class:`~MetaPuppet.SocketServerCore`
itself (it delegates), or a test double over :class:`~MetaPuppet.transport.FakePuppetLink`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

__all__ = ["PuppetAPI"]


class PuppetAPI(Protocol):
    """Run snippets on a bot, send things (and show typing), and name the only bot."""

    async def exec_snippet(
        self, code: str, args: Any = None, *, bot: str | None = None, timeout: float = 30.0
    ) -> Any: ...

    async def say(
        self,
        conversation_id: Any,
        something: Any,
        *,
        bot: str | None = None,
        room: bool | None = None,
        mentions: Iterable[Any] = (),
        reply_to: str | None = None,
    ) -> str | None: ...

    async def typing(self, conversation_id: Any, on: bool, *, bot: str | None = None) -> bool: ...

    def only_bot(self) -> str: ...
