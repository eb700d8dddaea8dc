"""PuppetLink: the seam between the server and one connected puppet."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from ..protocol import Capabilities

__all__ = ["PuppetLink"]


class PuppetLink(ABC):
    """One connected puppet, as the rest of the server sees it.

    The real one is a Node client over Socket.IO (``transport.sio``); tests register a
    :class:`~MetaPuppet.transport.FakePuppetLink` with ``server.attach_puppet``.
    """

    bot: str
    #: what the bot's channel can do, as its puppet reported it
    capabilities: Capabilities = Capabilities()
    #: where the puppet connected from, and when (``time.time()``), when known
    remote: str | None = None
    connected_at: float = 0.0

    @abstractmethod
    async def call(self, event: str, data: Any, timeout: float) -> Any:
        """Send ``event`` with ``data`` and return the puppet's acknowledgement."""

    def close(self, reason: str) -> None:  # noqa: B027 - optional hook
        """Fail pending calls; the puppet is gone."""
