"""Direct-write fan-out: one frame to many Socket.IO clients, encoded once.

``sio.emit(to=sids)`` creates one task per recipient and runs them all in one go; with
hundreds of web clients that starves everything else on the loop (the puppets' events
included) for the whole fan-out. Instead the packet is encoded once, and when it is safe
(see :meth:`DirectFanout.writable_now`) written straight to each client's websocket: the
same prebuilt websocket frame for every connection without compression, aiohttp's
``send_frame`` for those with it. That costs a fraction of going through Engine.IO's
per-client queue and writer task; a client for which it is not safe gets the packet
through its Engine.IO queue as before. The loop gets a turn every :data:`FANOUT_CHUNK`
clients, so the puppets' own events keep flowing (``bench/fanout.py``).

**A byte budget per client.** A client whose frames are not written at once (a slow
reader) gets them through its Engine.IO queue; when what waits for it there and in its
socket's buffer would pass ``web.max_buffered_bytes`` (8 MiB), it is dropped with a log
line naming the reason, instead of the server holding an ever-growing backlog for it.

This module reaches into python-socketio / python-engineio / aiohttp internals; each
reach is marked and was checked against python-socketio 5.18.1, python-engineio 4.15.1 and
aiohttp 3.14.5. Anything unexpected falls back to the queued path.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable
from typing import Any, Final

import socketio
from aiohttp import WSMsgType

__all__ = ["DIRECT_MAX_BYTES", "FANOUT_CHUNK", "MAX_QUEUED_PACKETS", "DirectFanout", "text_frame"]

log = logging.getLogger("MetaPuppet.web")

FANOUT_CHUNK: Final = 20
# larger frames go through Engine.IO (compressing one may wait for an executor)
DIRECT_MAX_BYTES: Final = 16 * 1024
# a client with more packets than this waiting is too slow, whatever their size
MAX_QUEUED_PACKETS: Final = 10_000


def text_frame(payload: bytes) -> bytes:
    """An unmasked, uncompressed, final websocket text frame (RFC 6455 5.2), as a server
    sends it: the same bytes for every connection without permessage-deflate."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


class DirectFanout:
    """Sends one frame to many clients of ``sio``, directly where that is safe.

    ``websockets`` maps Engine.IO sids to their open websocket wrappers (kept by the
    transport's driver hooks, see :mod:`.driver`); ``cut(eio_sid)`` ends a connection at
    once (a client over its byte budget).
    """

    def __init__(
        self,
        sio: socketio.AsyncServer,
        websockets: dict[str, Any],
        *,
        max_buffered_bytes: int = 8 * 1024 * 1024,
        cut: Callable[[str], None] | None = None,
    ) -> None:
        self.sio = sio
        self.websockets = websockets
        self.max_buffered_bytes = max_buffered_bytes
        self.cut = cut
        self.direct_frames = 0
        self.queued_frames = 0
        #: clients dropped for reading too slowly
        self.dropped_slow = 0

    def backlog(self, eio_sid: str) -> int:
        """Bytes (characters of text frames) waiting to be written to ``eio_sid``: in its
        Engine.IO queue and in its socket's write buffer."""
        socket = self.sio.eio.sockets.get(eio_sid)
        if socket is None:
            return 0
        queue = socket.queue
        waiting = 0
        if queue.qsize():
            if queue.qsize() > MAX_QUEUED_PACKETS:
                return self.max_buffered_bytes + 1
            for pkt in getattr(queue, "_queue", ()):  # asyncio.Queue internal (a deque)
                data = getattr(pkt, "data", None)
                if isinstance(data, str | bytes):
                    waiting += len(data)
        wrapper = self.websockets.get(eio_sid)
        ws = getattr(wrapper, "_sock", None)  # engineio's aiohttp websocket wrapper
        transport = getattr(getattr(ws, "_writer", None), "transport", None)  # aiohttp
        if transport is not None:
            waiting += transport.get_write_buffer_size()
        return waiting

    def _too_slow(self, sid: str, eio_sid: str, waiting: int) -> None:
        self.dropped_slow += 1
        log.warning(
            "dropped web client %s: it reads too slowly (%d bytes waiting for it, more than "
            "web.max_buffered_bytes = %d)",
            sid,
            waiting,
            self.max_buffered_bytes,
        )
        if self.cut is not None:
            self.cut(eio_sid)

    def writable_now(self, eio_sid: str, ping_deadline: float) -> Any:
        """The aiohttp websocket of ``eio_sid`` when a frame written to it now keeps every
        Engine.IO invariant, else None (the frame then goes through Engine.IO's queue).

        Safe means: the connection is an established websocket (not upgrading, closing or
        past its ping timeout); Engine.IO's writer task is idle, waiting on an empty queue
        (so nothing sent earlier through Engine.IO (an ack, ``presence``, ``emit_to_web``)
        is still on its way and could be overtaken); and the transport takes the frame
        without waiting (nothing buffered: a slow reader's frames queue in Engine.IO, in
        its own writer task, and never hold up the fan-out to the others).
        ``ping_deadline``: a pong older than this (``time.time()`` based) is overdue.
        """
        wrapper = self.websockets.get(eio_sid)
        if wrapper is None:
            return None
        socket = self.sio.eio.sockets.get(eio_sid)
        if (
            socket is None
            or not socket.upgraded
            or socket.upgrading
            or socket.closing
            or socket.closed
        ):
            return None
        last_ping = socket.last_ping
        if last_ping and last_ping < ping_deadline:
            return None  # Engine.IO's send() closes it
        queue = socket.queue
        if queue.qsize():
            return None
        # the writer task waits in queue.get(): its waiter is in asyncio.Queue's _getters
        # until a packet wakes it; from then until the packet is written, the writer holds it
        getters = getattr(queue, "_getters", None)
        if not getters:
            return None
        for getter in getters:
            if getter.done():
                return None
        ws = wrapper._sock  # noqa: SLF001 - engineio's aiohttp websocket wrapper
        writer = getattr(ws, "_writer", None)  # aiohttp WebSocketResponse internal
        if writer is None or ws.closed or ws._closing or writer._closing:  # noqa: SLF001
            return None
        transport = writer.transport
        paused = writer.protocol._paused  # noqa: SLF001 - aiohttp flow control
        if transport.is_closing() or transport.get_write_buffer_size() or paused:
            return None
        return ws

    async def send_to_many(self, event: str, data: Any, sids: list[str]) -> None:
        """Send one Socket.IO event to many clients, encoded once, yielding to the loop
        every :data:`FANOUT_CHUNK` clients."""
        packet = self._encode(event, data)
        if packet is None:
            await self.sio.emit(event, data, to=sids)
            return
        encoded = packet.encode()
        payload = encoded.encode("utf-8") if isinstance(encoded, str) else None
        direct = payload is not None and len(payload) <= DIRECT_MAX_BYTES
        frame = text_frame(payload) if payload is not None and direct else b""
        manager, eio = self.sio.manager, self.sio.eio
        ping_deadline = time.time() - eio.ping_timeout
        written = queued = 0
        size = len(payload) if payload is not None else 0
        for index, sid in enumerate(sids):
            eio_sid = manager.eio_sid_from_sid(sid, "/")
            if eio_sid is not None:
                ws = self.writable_now(eio_sid, ping_deadline) if direct else None
                sent = False
                if ws is not None:
                    try:
                        writer = ws._writer  # noqa: SLF001 - checked in writable_now
                        if writer.compress:  # permessage-deflate: aiohttp compresses
                            await ws.send_frame(payload, WSMsgType.TEXT)
                        else:
                            writer.transport.write(frame)
                        sent = True
                        written += 1
                    except Exception:  # the connection is going away: let Engine.IO see
                        log.debug("direct write to %s failed", sid, exc_info=True)
                if not sent:
                    waiting = self.backlog(eio_sid)
                    if waiting + size > self.max_buffered_bytes:
                        self._too_slow(sid, eio_sid, waiting)
                    else:
                        await eio.send_packet(eio_sid, packet)
                        queued += 1
            if index % FANOUT_CHUNK == FANOUT_CHUNK - 1:
                await asyncio.sleep(0)
        self.direct_frames += written
        self.queued_frames += queued

    def _encode(self, event: str, data: Any) -> Any:
        """The Engine.IO packet of a Socket.IO event, or None to fall back to ``emit``."""
        try:
            from engineio import packet as eio_packet
            from socketio import packet as sio_packet

            encoded = self.sio.packet_class(
                sio_packet.EVENT, namespace="/", data=[event, data]
            ).encode()
        except Exception:  # pragma: no cover - a python-socketio without these internals
            log.debug("falling back to emit for web fan-out", exc_info=True)
            return None
        if not isinstance(encoded, str):  # binary attachments: let python-socketio do it
            return None
        return eio_packet.Packet(eio_packet.MESSAGE, encoded)
