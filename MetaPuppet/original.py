"""The original project's names on the server, kept working for its users' scripts.

MetaPuppetForPython's ``SocketServerCore`` exposed these to subclasses and scripts; they are
thin layers over the new API (see ``docs/api.md``, "Coming from the original").
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Coroutine, Iterable
from concurrent.futures import Future as ConcurrentFuture
from typing import Any, TypeVar

import socketio

from . import protocol
from ._loop import LoopThread
from ._sync import sync_twin
from .client import PuppetClient
from .types import Rooms

__all__ = ["OriginalAPI"]

T = TypeVar("T")


class OriginalAPI:
    """The original's methods, mixed into :class:`~MetaPuppet.SocketServerCore`."""

    client: PuppetClient
    sio: socketio.AsyncServer
    rooms: Rooms
    wx_room: str
    num_async_threads: int
    _user_loops: list[LoopThread]

    @property
    def server_loop(self) -> asyncio.AbstractEventLoop | None:
        raise NotImplementedError

    async def exec_snippet(
        self, code: str, args: Any = None, *, bot: str | None = None, timeout: float = 30.0
    ) -> Any:
        raise NotImplementedError

    async def async_exec_wx_function(
        self, ts_code: str, need_return: bool = False, *, bot: str | None = None
    ) -> Any:
        """Run ``ts_code`` as the body of an async function (the original's API)."""
        result = await self.exec_snippet(ts_code, bot=bot)
        return result if need_return else None

    exec_wx_function = sync_twin(async_exec_wx_function)

    async def async_exec_one_wx_function(
        self,
        func_name: str,
        func_paras: Iterable[Any] = (),
        need_return: bool = False,
        *,
        bot: str | None = None,
    ) -> Any:
        """Call one function, e.g. ``bot.Contact.findAll``, with ``func_paras`` as arguments.

        ``func_name`` must be a dotted name starting at ``bot`` or ``FileBox``; it is resolved
        on the Node side, and the parameters travel as data.
        """
        result = await self.client.call_function(func_name, func_paras, bot=bot)
        return result if need_return else None

    exec_one_wx_function = sync_twin(async_exec_one_wx_function)

    async def async_send_message_to_client(
        self, message: Any, sid: str | None = None, room_name: str | None = None
    ) -> None:
        """Emit the original ``message`` envelope to a web client (``sid``) or a room."""
        if sid is None and room_name is None:
            raise ValueError("sid and room_name cannot both be None")
        envelope: dict[str, Any] = {"sender": "server", "status": "NORMAL"}
        if isinstance(message, str):
            envelope["text"] = message
        elif isinstance(message, dict):
            envelope.update(message)
        else:
            envelope["status"] = "ERROR"
        await self.sio.emit(protocol.EV_MESSAGE, envelope, to=sid or room_name)

    def send_message_to_client(
        self, message: Any, sid: str | None = None, room_name: str | None = None
    ) -> ConcurrentFuture[None]:
        """Emit the original envelope to a web client (``sid``) or a room.

        Unlike the other blocking twins this does not wait: it returns a
        :class:`concurrent.futures.Future`, so the original's handlers, which call it from
        the server loop, keep working. Call ``.result()`` on it from a thread to wait.
        """
        loop = self.server_loop
        if loop is None:
            raise RuntimeError("send_message_to_client(): the server is not running")
        return asyncio.run_coroutine_threadsafe(
            self.async_send_message_to_client(message, sid, room_name), loop
        )

    def add_room(self, sender: str, room_name: str) -> None:
        self.rooms["all_rooms"].add(room_name)
        self.rooms[sender] = room_name

    async def process_socket_message(self, sid: str, message: dict[str, Any]) -> None:
        """A ``SOCKET_INFO`` envelope from a web client; ``CONNECTED`` joins a room."""
        sender = message["sender"]
        room_name = self.wx_room if sender.startswith("wx_") else sender
        if message.get("text") == "CONNECTED":
            await self.sio.enter_room(sid, room_name)
            self.add_room(sender=sender, room_name=room_name)

    async def process_custom_message(self, sid: str, message: dict[str, Any]) -> None:
        """Any other envelope from a web client; override to handle it."""

    def run_coroutine_in_random_thread(self, coro: Coroutine[Any, Any, T]) -> ConcurrentFuture[T]:
        """Run ``coro`` on one of ``num_async_threads`` background loops (the original's API)."""
        if not self._user_loops:
            self._user_loops = [
                LoopThread(f"metapuppet-user-{i}") for i in range(self.num_async_threads)
            ]
        return random.choice(self._user_loops).submit(coro)  # type: ignore[no-any-return]
