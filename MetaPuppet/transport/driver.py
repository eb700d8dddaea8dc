"""Hooks into Engine.IO's aiohttp websocket driver, on this server's Engine.IO only.

Engine.IO keeps its websocket wrapper private to each connection's handler. A subclass,
installed on one server's Engine.IO instance (a copy of its driver table, not the shared
module), tells :class:`DriverHooks` when a websocket opens (right after the handshake,
before its first frame is read) and closes, and asks before each read whether the
connection may be read now (back-pressure: a puppet whose events fill the queue is not
read until there is room).

Checked against python-engineio 4.15.1 (``AsyncServer._async["websocket"]``, the
wrapper's ``handler``, ``_sock`` and ``wait()``) and aiohttp 3.14.5.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["DriverHooks", "install"]


class DriverHooks(Protocol):
    def opened(self, eio_sid: str, wrapper: Any, request: Any) -> None:
        """A websocket of ``eio_sid`` is open (``request``: its aiohttp request)."""
        ...

    def closed(self, eio_sid: str, wrapper: Any) -> None:
        """That websocket's handler ended."""
        ...

    async def readable(self, eio_sid: str) -> None:
        """Returns when the next frame of ``eio_sid`` may be read."""
        ...


def install(eio: Any, hooks: DriverHooks) -> bool:
    """Wrap the websocket driver of ``eio`` (an Engine.IO AsyncServer on aiohttp); False
    when its internals are not the expected ones (then nothing is hooked)."""
    drivers = getattr(eio, "_async", None)  # python-engineio 4.x internal
    mode = getattr(eio, "async_mode", None)
    if not isinstance(drivers, dict) or mode != "aiohttp":
        return False
    base = drivers.get("websocket")
    if not isinstance(base, type):
        return False

    class HookedWebSocket(base):  # type: ignore[misc, valid-type]
        async def __call__(self, environ: Any) -> Any:
            handler: Any = getattr(self, "handler", None)
            sid = getattr(getattr(handler, "__self__", None), "sid", None)
            if not isinstance(sid, str) or handler is None:
                return await super().__call__(environ)
            self.metapuppet_sid = sid

            async def started(ws: Any) -> Any:
                # called by Engine.IO right after the websocket handshake
                hooks.opened(sid, self, environ.get("aiohttp.request"))
                return await handler(ws)

            self.handler = started
            try:
                return await super().__call__(environ)
            finally:
                hooks.closed(sid, self)

        async def wait(self) -> Any:
            sid = getattr(self, "metapuppet_sid", None)
            if sid is not None:
                await hooks.readable(sid)
            return await super().wait()

    eio._async = {**drivers, "websocket": HookedWebSocket}  # noqa: SLF001 - see above
    return True
