"""The original project's names on the server, kept working for its users' scripts.

MetaPuppetForPython's ``SocketServerCore`` exposed these to subclasses and scripts; they are
thin layers over the new API (see ``docs/api.md``, "Coming from the original").
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Coroutine, Iterable
from concurrent.futures import Future as ConcurrentFuture
from typing import Any, Final, TypeVar

import socketio

from . import protocol
from ._loop import LoopThread
from ._sync import sync_twin
from .client import PuppetClient
from .snippets import ACCEPT_FRIENDSHIP_JSON
from .types import Rooms

__all__ = ["ALL_CHAT_TYPE", "ALL_MSG_TYPE", "OriginalAPI"]

T = TypeVar("T")


#: the original's message kinds of a reply dict's ``wx_msg_type``
ALL_MSG_TYPE: Final = {"text": "TEXT", "file": "FILE", "url": "URLLINK", "urllink": "URLLINK"}
#: the original's chat kinds, by the Wechaty class that loads them
ALL_CHAT_TYPE: Final = {
    "contact": "Contact",
    "room": "Room",
    "friend_chat": "Contact",
    "friend": "Contact",
    "group_chat": "Room",
    "group": "Room",
}


class OriginalAPI:
    """The original's attributes and methods, mixed into :class:`~MetaPuppet.SocketServerCore`.

    ``all_msg_type``, ``all_chat_type``, ``rooms``, ``wx_room``, ``sio``, ``app``,
    ``server_loop``, ``server_thread``, ``async_loops``, ``async_threads``, ``robot``,
    ``server_mode``, ``num_async_threads`` and ``debug_mode`` are there as before; the
    ``create_*`` hooks run during construction for subclasses that override them.
    """

    client: PuppetClient
    sio: socketio.AsyncServer
    rooms: Rooms
    wx_room: str
    num_async_threads: int
    robot: Any
    _user_loops: list[LoopThread]
    _loop_thread: LoopThread | None

    def _init_original(self) -> None:
        self.all_msg_type: dict[str, str] = dict(ALL_MSG_TYPE)
        self.all_chat_type: dict[str, str] = dict(ALL_CHAT_TYPE)
        self.create_app()
        self.create_response_functions()

    @property
    def server_loop(self) -> asyncio.AbstractEventLoop | None:
        raise NotImplementedError

    async def exec_snippet(
        self, code: str, args: Any = None, *, bot: str | None = None, timeout: float = 30.0
    ) -> Any:
        raise NotImplementedError

    async def send_reply(
        self, reply: Any, *, to: str, bot: str | None, room: bool, reply_to: str | None = None
    ) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ construction hooks

    def create_app(self) -> None:
        """Called while the server is built (the app and ``sio`` exist already)."""

    def create_response_functions(self) -> None:
        """Called while the server is built: add your own ``@self.sio.on(...)`` handlers."""

    def create_async_threads(self) -> None:
        """Start the ``num_async_threads`` loops of :meth:`run_coroutine_in_random_thread`
        now (otherwise they start on first use)."""
        if not self._user_loops:
            self._user_loops = [
                LoopThread(f"metapuppet-user-{i}") for i in range(self.num_async_threads)
            ]

    @property
    def async_loops(self) -> list[asyncio.AbstractEventLoop]:
        self.create_async_threads()
        return [thread.loop for thread in self._user_loops]

    @property
    def async_threads(self) -> list[threading.Thread]:
        self.create_async_threads()
        return [thread.thread for thread in self._user_loops]

    @property
    def server_thread(self) -> threading.Thread | None:
        """The thread :meth:`run` serves from (None before ``run()``)."""
        return None if self._loop_thread is None else self._loop_thread.thread

    # ------------------------------------------------------------------ the original's handlers

    async def process_wx_chat_message(
        self, sid: str | None, message: dict[str, Any], verbose: bool = False
    ) -> None:
        """Hand a chat message in the original's dict shape to the robot and send its reply
        (events reach the robot through the pipeline; this is for code that called it)."""
        payload = message.get("payload") or {}
        room_id, from_id = payload.get("roomId"), payload.get("fromId") or payload.get("talkerId")
        target, room = (room_id, True) if room_id else (from_id, False)
        if not isinstance(target, str) or not target or self.robot is None:
            return
        reply = await self.robot.process_message(message, verbose=verbose)
        await self.send_reply(reply, to=target, bot=message.get("bot"), room=room)

    async def process_wx_friend_message(
        self, sid: str | None, message: dict[str, Any], verbose: bool = False
    ) -> None:
        """Accept a friend request in the original's dict shape, greet with the robot's reply."""
        payload = message.get("payload") or {}
        if not payload or self.robot is None:
            return
        await self.exec_snippet(ACCEPT_FRIENDSHIP_JSON, {"payload": payload})
        reply = await self.robot.process_friend_invitation(message, verbose=verbose)
        contact = str(payload.get("contactId") or "")
        await self.send_reply(reply, to=contact, bot=message.get("bot"), room=False)

    async def process_wx_cmd_message(
        self, sid: str | None, message: dict[str, Any], verbose: bool = False
    ) -> None:
        """The original's command results; results now come back with each call."""

    async def async_send_wx_cmd(
        self,
        ts_code: str,
        sid: str | None = None,
        need_return: bool = False,
        life_time: float = 3600,
        exec_time: float = 300,
    ) -> Any:
        """Run ``ts_code`` on the bot (as the body of an async function: ``return`` gives
        the result), waiting at most ``exec_time`` seconds."""
        result = await self.exec_snippet(ts_code, timeout=exec_time)
        return result if need_return else None

    send_wx_cmd = sync_twin(async_send_wx_cmd)

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
        self.create_async_threads()
        return random.choice(self._user_loops).submit(coro)  # type: ignore[no-any-return]
