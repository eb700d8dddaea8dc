"""ClusterIntake: the transport's handlers in cluster mode.

It stands between :class:`~MetaPuppet.transport.SocketTransport` and the server
(``transport.handlers``) and adds, for each puppet event, the shared dedupe of
:mod:`.seen`: claim the id, hand the event to the pipeline, record it as handled before the
acknowledgement goes out. Events keep their arrival order into the pipeline (per chat order
holds) although the claims run concurrently: each event of a connection waits for the one
before it to be handed on.

An event the Node client sends for the first time (``attempt: 1``; older clients do not
say, and their events are all checked) cannot have been seen by another process: it is
handed on at once, its claim goes out in the next pipeline without being waited for, and
it is recorded as handled before its acknowledgement, as every event is. So a fresh event's
reply waits for no Redis round trip; only copies sent again (after a reconnect or a
fail-over) are checked before they run.

While Redis is lost, events are answered ``unavailable`` (the Node client keeps them) and so
is everything that connection sends after, until it reconnects: when Redis is back, such
connections are closed, and their clients reconnect and send what they kept, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from .. import protocol
from ..errors import ClusterUnavailable
from ..presence import ClientInfo
from ..transport.sio import TransportHandlers
from .seen import SeenIds

__all__ = ["ClusterIntake"]

log = logging.getLogger("MetaPuppet.cluster")


class ClusterIntake:
    """Wraps the server's :class:`TransportHandlers` (see the module docstring)."""

    def __init__(
        self,
        inner: TransportHandlers,
        seen: SeenIds,
        *,
        on_client: Callable[[ClientInfo, bool], None] | None = None,
        shared: Callable[[dict[str, Any]], bool] = lambda data: True,
    ) -> None:
        self.inner = inner
        self.seen = seen
        #: whether an event needs the shared dedupe (the robot may run for it)
        self.shared = shared
        self.on_client_hook = on_client
        #: puppet connections whose events were turned away while Redis was lost
        self.deferred: set[str] = set()
        self._gates: dict[str, asyncio.Future[None]] = {}
        #: fresh events whose claim found one already there (see ``_claimed``)
        self.late_claims = 0

    async def on_puppet_event(self, info: ClientInfo, data: Any) -> dict[str, Any]:
        event_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(event_id, str) or not event_id or data.get("name") == "heartbeat":
            return await self.inner.on_puppet_event(info, data)
        sid = info.sid
        shared = self.shared(data)
        before = self._gates.get(sid)
        gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._gates[sid] = gate
        handling: asyncio.Future[dict[str, Any]] | None = None
        claiming: Coroutine[Any, Any, bool] | None = None
        refusal: str | None = None
        first = False
        try:
            if sid in self.deferred:
                refusal = "an earlier event of this connection waits for the cluster's Redis"
            elif not shared:
                first = True  # nothing runs for it: this process's own dedupe suffices
            elif data.get("attempt") == 1:
                try:
                    self.seen.check()  # Redis known lost: it waits in the outbox, in order
                except ClusterUnavailable as exc:
                    self.deferred.add(sid)
                    refusal = str(exc)
                else:
                    claiming, first = self.seen.claim_fresh(event_id), True
            else:
                try:
                    first = await self.seen.claim(event_id)
                except ClusterUnavailable as exc:
                    self.deferred.add(sid)
                    refusal = str(exc)
            if before is not None and not before.done():
                await asyncio.wait([before])  # the previous event went on first
            if refusal is None and first:
                handling = asyncio.ensure_future(self.inner.on_puppet_event(info, data))
        finally:
            if handling is None and claiming is not None:
                claiming.close()  # cut short before it was handed on
                claiming = None
            if not gate.done():
                gate.set_result(None)
            if self._gates.get(sid) is gate:
                del self._gates[sid]
        if refusal is not None:
            return protocol.error_ack("unavailable", f"{refusal}; send it again after reconnecting")
        if handling is None:
            return protocol.ok()  # handled already, here or by another process
        try:
            ack = await handling
        except BaseException:
            if claiming is not None:
                claiming.close()  # its claim goes out and holds for the lease
            raise
        if not shared:
            return ack
        if isinstance(ack, dict) and ack.get("ok"):
            try:
                await self.seen.done(event_id)
            except ClusterUnavailable as exc:
                # it was handled; a copy sent again later may run again
                log.warning("event %s was handled but could not be recorded: %s", event_id, exc)
        else:
            with contextlib.suppress(ClusterUnavailable):
                await self.seen.release(event_id)
        if claiming is not None:  # after done/release: a claim not sent yet is not needed
            await self._claimed(event_id, claiming)
        return ack

    async def _claimed(self, event_id: str, claiming: Coroutine[Any, Any, bool]) -> None:
        """The answer to a fresh event's claim (sent while it ran)."""
        try:
            if not await claiming:
                # only a copy that overtook the first one (e.g. a stalled connection
                # delivering late) gets here; the handler's sends carry the event's send ids
                self.late_claims += 1
                log.warning(
                    "event %s was sent for the first time but another copy was claimed "
                    "before; it ran here as well",
                    event_id,
                )
        except ClusterUnavailable as exc:
            log.warning("event %s ran, but its claim could not be recorded: %s", event_id, exc)

    async def on_message(self, sid: str, message: dict[str, Any]) -> None:
        await self.inner.on_message(sid, message)

    def on_client(self, info: ClientInfo, connected: bool) -> None:
        if not connected:
            self.deferred.discard(info.sid)
        self.inner.on_client(info, connected)
        if self.on_client_hook is not None:
            self.on_client_hook(info, connected)
