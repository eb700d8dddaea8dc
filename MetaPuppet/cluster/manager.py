"""The Socket.IO client manager of a cluster: python-socketio's own ``AsyncRedisManager``.

Every server process joins the same manager channel, so an emit to a sid (or a room)
reaches that client wherever it is connected, and an emit with a callback (what
``SocketPuppetLink.call`` does) gets its acknowledgement back across processes: the
library publishes the emit, the process holding the sid sends it and publishes the
answer back to the caller's ``host_id``.

The processes also tell each other what happened to their bots (a bot connected here,
left, an event arrived) on the same channel, as emits to a namespace no client can join
(:data:`NOTICES`): the library's pub/sub carries them, this subclass hands them to the
cluster instead of to clients. This is the one reach into python-socketio internals
outside ``transport/`` (``_handle_emit`` and ``callbacks``, checked against 5.18.1).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

import socketio

__all__ = ["NOTICES", "ClusterManager"]

log = logging.getLogger("MetaPuppet.cluster")

#: the namespace of the processes' notices to each other; no client can connect to it (the
#: server accepts only namespaces it has handlers for, and it has none here)
NOTICES: Final = "/metapuppet-cluster"

Notice = Callable[[str, Any, str], None]


class ClusterManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """``AsyncRedisManager`` that also carries the cluster's notices.

    ``on_notice(kind, data, host_id)`` is called (on the listener task: it must not block)
    for every notice another process sends.
    """

    def __init__(self, url: str, channel: str, on_notice: Notice | None = None) -> None:
        # no socket_timeout: the pub/sub connection waits for messages without one
        super().__init__(url, channel=channel, redis_options={"socket_connect_timeout": 3.0})
        self.on_notice = on_notice

    async def notify(self, kind: str, data: Any) -> None:
        """Tell every other process ``kind`` with ``data`` (best effort: python-socketio
        logs and drops a publish Redis does not take)."""
        await self.emit(kind, data, namespace=NOTICES)

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        # python-socketio 5.18.1: called for every emit, the local one and those published
        # by other hosts; ours are taken out here, the rest go to clients as usual
        if message.get("namespace") != NOTICES:
            await super()._handle_emit(message)
            return
        host = message.get("host_id")
        if host == self.host_id or self.on_notice is None:
            return
        data = message.get("data")
        payload = data[0] if isinstance(data, list) and len(data) == 1 else data
        try:
            self.on_notice(str(message.get("event")), payload, str(host))
        except Exception:
            log.exception("handling a %r notice from another process failed", message.get("event"))

    def drop_callback(self, sid: str, callback: Callable[..., Any]) -> None:
        """Forget a call's acknowledgement callback that will never come (a call to a sid on
        another process that timed out): nothing else would ever remove it."""
        pending = self.callbacks.get(sid)
        if not pending:
            return
        for ack_id, registered in list(pending.items()):
            if registered is callback:
                del pending[ack_id]
        if len(pending) <= 1:  # only the id counter is left
            self.callbacks.pop(sid, None)

    def forget(self, sid: str) -> None:
        """Forget every pending callback of a sid on another process that is gone."""
        self.callbacks.pop(sid, None)
