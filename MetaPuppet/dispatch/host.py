"""DispatchHost: what routers, middleware and dialogs may ask of the server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["DispatchHost"]


class DispatchHost(Protocol):
    """Run user code, send a reply, and tell which bots are connected.

    The server is the host in production (``invocation.server``); a test may pass anything
    with these three members.
    """

    async def call_handler(self, handler: Callable[..., Any], *args: Any) -> Any: ...

    async def send_reply(self, reply: Any, *, to: str, bot: str | None, room: bool) -> None: ...

    @property
    def bots(self) -> list[str]: ...
