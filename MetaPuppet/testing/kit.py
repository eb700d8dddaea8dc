"""What every kit has: a started server, bot accounts with their Node clients, and the
events the bots see (each counted once: delivery is at least once)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from ..protocol import BotEvent
from ..server import SocketServerCore
from .node import NodeClient, NodeClientError

__all__ = ["Kit", "KitBot"]

SEEN_EVENTS = 50_000


class KitBot:
    """One bot account of a kit: its Node client and what it saw."""

    def __init__(self, wx: Kit[Any], name: str) -> None:
        self.wx = wx
        self.name = name
        self.user_id = ""
        self.node: NodeClient | None = None
        self.events: list[BotEvent] = []
        self.startup_seconds = 0.0

    @property
    def server(self) -> SocketServerCore:
        return self.wx.server

    def observe(self, event: BotEvent) -> None:
        """Note an event of this bot (the kit's listener calls it)."""
        self.events.append(event)

    async def exec(self, code: str, args: Any = None, timeout: float = 30.0) -> Any:
        """Run a snippet on this bot."""
        return await self.server.exec_snippet(code, args, bot=self.name, timeout=timeout)


B = TypeVar("B", bound=KitBot)


class Kit(Generic[B]):
    """The running kit: ``server`` plus one bot per account."""

    def __init__(self, server: SocketServerCore, *, log_level: str = "warn") -> None:
        self.server = server
        self.log_level = log_level
        self.bots: dict[str, B] = {}
        self._remove_listener = server.add_event_listener(self.observe)
        self._logins: dict[str, asyncio.Future[dict[str, Any]]] = {}
        # events are delivered at least once: one whose acknowledgement was lost (a server
        # stopping, say) comes again, possibly to another server; count it once
        self._observed: OrderedDict[str, None] = OrderedDict()

    @contextlib.contextmanager
    def not_recording(self) -> Iterator[None]:
        """Stop noting events meanwhile (benchmarks: the kit would keep every one)."""
        self._remove_listener()
        try:
            yield
        finally:
            self._remove_listener = self.server.add_event_listener(self.observe)

    def observe(self, event: BotEvent) -> None:
        if event.id in self._observed:
            return
        self._observed[event.id] = None
        if len(self._observed) > SEEN_EVENTS:
            self._observed.popitem(last=False)
        bot = self.bots.get(event.bot)
        if bot is not None:
            bot.observe(event)
        if event.name == "login":
            waiter = self._logins.get(event.bot)
            if waiter is not None and not waiter.done():
                waiter.set_result(event.payload)

    def bot(self, name: str | None = None) -> B:
        if name is None:
            return next(iter(self.bots.values()))
        return self.bots[name]

    def replace_server(self, server: SocketServerCore) -> None:
        """Watch ``server`` instead of the current one (after a restart of the server)."""
        self._remove_listener()
        self.server = server
        self._remove_listener = server.add_event_listener(self.observe)

    async def restart_server(self, server: SocketServerCore, timeout: float = 30.0) -> None:
        """Stop the running server and start ``server`` (not started yet) in its place.

        The new server listens on the same address with the same token, so the Node
        clients reconnect by themselves; returns once every bot is connected again::

            await wx.restart_server(SweetSocketServer(robot=MyBot(), config=Config(),
                                                      rate_limiter=None))
        """
        old = self.server
        host, port = old.host, old.port
        await old.stop()
        server.token = old.token
        if server.robot is not None:
            server.robot.add_server(server)
        await server.start(host=host, port=port)
        self.replace_server(server)
        for name in self.bots:
            await server.async_wait_for_puppet(timeout, bot=name)

    async def start_bot(self, bot: B, config: dict[str, Any], timeout: float) -> B:
        """Start ``bot``'s Node client with ``config`` and wait until it logged in."""
        if bot.name in self.bots:
            raise ValueError(f"bot {bot.name!r} is already running")
        self.bots[bot.name] = bot
        bot.node = NodeClient(config, log_level=self.log_level)
        started = time.monotonic()
        await self._login(bot, timeout, first=True)
        bot.startup_seconds = time.monotonic() - started
        return bot

    async def restart_node(
        self, name: str | None = None, *, kill: bool = False, timeout: float = 60.0
    ) -> None:
        """Stop a bot's Node client (SIGTERM, or SIGKILL with ``kill``) and start it again
        with the same config, outbox and data; returns once it logged in again."""
        bot = self.bot(name)
        assert bot.node is not None
        if kill:
            await bot.node.kill()
        else:
            await bot.node.stop(keep_files=True)
        await self._login(bot, timeout, first=False)

    async def during_login(self, bot: B, first: bool) -> None:
        """What the kit does while a bot's Node client logs in (a QR scan, say)."""

    async def _login(self, bot: B, timeout: float, *, first: bool) -> None:
        assert bot.node is not None
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._logins[bot.name] = waiter
        await bot.node.start()
        process = bot.node.process
        assert process is not None
        exited: asyncio.Future[Any] = asyncio.ensure_future(process.wait())
        helper: asyncio.Future[None] = asyncio.ensure_future(self.during_login(bot, first))
        deadline = time.monotonic() + timeout
        pending: set[asyncio.Future[Any]] = {waiter, exited, helper}
        try:
            while waiter in pending and exited in pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                done, pending = await asyncio.wait(
                    pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
                if helper in done and helper.exception() is not None and not waiter.done():
                    await bot.node.stop()
                    raise NodeClientError(
                        f"logging bot {bot.name!r} in failed: {helper.exception()}"
                    ) from helper.exception()
        finally:
            for task in (exited, helper):
                if not task.done():
                    task.cancel()
        if not waiter.done():
            reason = (
                f"exited with code {process.returncode}"
                if process.returncode is not None
                else f"did not log in within {timeout:.0f} s"
            )
            tail = bot.node.log_tail()
            await bot.node.stop()
            if first:
                del self.bots[bot.name]
            raise NodeClientError(
                f"the Node client for bot {bot.name!r} {reason}; its log ends with:\n{tail}"
            )
        bot.user_id = str(waiter.result().get("id") or "")

    async def close(self) -> None:
        self._remove_listener()
        for bot in self.bots.values():
            if bot.node is not None:
                await bot.node.stop()
