"""RemotePuppetLink: a bot whose Node client is connected to another server process.

It sits in this process's :class:`~MetaPuppet.transport.PuppetRegistry` like a local link,
so ``exec_snippet``, ``say`` and ``control`` pick it the same way and keep their
semantics: the call is an emit with a callback to the sid on the other process, which
python-socketio's ``AsyncRedisManager`` carries there and back; the same timeout
(:class:`~MetaPuppet.errors.SnippetTimeout`), and :class:`~MetaPuppet.errors.PuppetDisconnected`
at once when the bot leaves that process or the process is found gone.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from typing import Any

import socketio

from ..protocol import Capabilities
from ..transport.sio import SocketPuppetLink
from .manager import ClusterManager
from .state import SharedState

__all__ = ["RemotePuppetLink"]

#: the acknowledgement callbacks the current call registered (to forget them if it fails)
_CALLBACKS: contextvars.ContextVar[list[Callable[..., None]] | None] = contextvars.ContextVar(
    "metapuppet_remote_callbacks", default=None
)


class RemotePuppetLink(SocketPuppetLink):
    """A puppet connected to the process ``host`` as ``sid``."""

    def __init__(
        self,
        sio: socketio.AsyncServer,
        manager: ClusterManager,
        state: SharedState,
        *,
        host: str,
        sid: str,
        bot: str,
        capabilities: Capabilities | None,
        remote: str | None,
        connected_at: float | None,
    ) -> None:
        super().__init__(sio, sid, bot, capabilities, remote=remote)
        self.host = host
        self.manager = manager
        self.state = state
        self.connected_at = connected_at or time.time()
        #: when this process learnt of it (time.monotonic())
        self.attached_at = time.monotonic()

    async def call(self, event: str, data: Any, timeout: float) -> Any:
        # Redis is the way there: without it the call cannot even be sent
        self.state.check(f"a call to bot {self.bot!r} (connected to another server process)")
        registered: list[Callable[..., None]] = []
        token = _CALLBACKS.set(registered)
        try:
            return await super().call(event, data, timeout)
        except BaseException:
            # unanswered (a timeout, the bot or its process gone): python-socketio would keep
            # the callback of a sid on another process forever
            for callback in registered:
                self.manager.drop_callback(self.sid, callback)
            raise
        finally:
            _CALLBACKS.reset(token)

    async def _send(
        self, event: str, data: Any, on_ack: Callable[..., None], timeout: float
    ) -> None:
        registered = _CALLBACKS.get()
        if registered is not None:
            registered.append(on_ack)
        # through the manager's queue: the process holding the sid sends it
        await asyncio.wait_for(self.sio.emit(event, data, to=self.sid, callback=on_ack), timeout)

    def close(self, reason: str) -> None:
        super().close(reason)
        self.manager.forget(self.sid)
