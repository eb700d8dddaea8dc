"""SocketServerCore: the composition root and life cycle of the MetaPuppet server.

The server builds its parts and wires them, one way:

* :mod:`~MetaPuppet.transport`: the Socket.IO server, authentication, the registry of
  connected puppets;
* :class:`~MetaPuppet.client.PuppetClient`: exec, say and control calls into a bot;
* :class:`~MetaPuppet.pipeline.EventPipeline`: events in, deduplicated, ordered, handed
  to the robot;
* :class:`~MetaPuppet.web.WebHub`: web clients, the dashboard and the REST API.

Its public methods delegate to those parts; what is left here is starting and stopping.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from . import protocol, snapshots
from ._files import SaveFailure
from ._loop import LoopThread, on_loop, running_loop
from ._sync import HandlerPool, sync_twin
from .client import PuppetClient
from .cluster import Cluster
from .config import Config, load_config
from .errors import AmbiguousBot, ConfigError
from .ops import Ops, OpsAPI
from .original import OriginalAPI
from .pipeline import EventPipeline, Listener, Remover
from .presence import ClientInfo, Presence
from .protocol import BotEvent, Capabilities
from .transport import (
    WEB_ROOM,
    Authenticator,
    PuppetLink,
    PuppetRegistry,
    SocketTransport,
)
from .transport.auth import is_loopback
from .transport.limits import Limits
from .types import Contacts, ContactSelf, Rooms
from .web import WebHub
from .web.api import install as install_api

__all__ = ["AmbiguousBot", "PuppetLink", "SocketServerCore"]

log = logging.getLogger("MetaPuppet.server")
T = TypeVar("T")


class SocketServerCore(OpsAPI, OriginalAPI):
    """The MetaPuppet server.

    ``robot`` receives the events; ``num_async_threads`` sizes the thread pool for
    synchronous handlers; ``debug_mode`` enables the ``$debug$`` chat command for the
    contacts listed in ``admin_contacts``; ``redis_url`` joins a cluster of server
    processes on that Redis (docs/scaling.md). Use ``await start()`` / ``await stop()`` in
    asyncio programs, or ``run()`` to serve from a background thread::

        server = SweetSocketServer(robot=TestBot())
        server.run()                 # returns at once
        server.wait_for_puppet(30)
        print(server.exec_snippet_sync("return bot.currentUser.name()"))
    """

    def __init__(
        self,
        robot: Any = None,
        server_mode: str = "aiohttp",
        num_async_threads: int = 1,
        debug_mode: bool | None = None,
        *,
        config: Config | str | os.PathLike[str] | None = None,
        token: str | None = None,
        host: str | None = None,
        port: int | None = None,
        connect_grace: float = 10.0,
        stall_timeout: float | None = None,
        restart_stalled_bots: bool = False,
        data_dir: str | os.PathLike[str] | None = None,
        max_concurrent_handlers: int = 256,
        rate_limiter: Any = "default",
        max_queued_events: int = 10_000,
        redis_url: str | None = None,
    ) -> None:
        if server_mode not in ("aiohttp", "sanic"):
            raise ConfigError(f"unknown server_mode {server_mode!r}; MetaPuppet runs on aiohttp")
        if num_async_threads < 1:
            raise ConfigError(f"num_async_threads must be at least 1, got {num_async_threads}")
        if config is None or isinstance(config, str | os.PathLike):
            config = load_config(config)
        self.config = config
        self.host = host or self.config.host
        self.port = port if port is not None else self.config.port
        self.num_async_threads = num_async_threads
        #: the original's argument: MetaPuppet always runs on aiohttp
        self.server_mode = "aiohttp"

        self.authenticator = Authenticator.from_config(self.config.raw, token or self.config.token)
        #: cluster mode (``redis_url``, ``cluster.redis_url``): None for a single process
        self.cluster = Cluster.from_config(self.config.raw, redis_url)
        self.registry = PuppetRegistry(connect_grace)
        #: consulted before every outgoing message: ``await rate_limiter.acquire(bot, chat)``;
        #: "default" follows the config's ``server.rate_limit`` (WeChat-safe limits unless it
        #: says otherwise), None sends at full speed (tests, benchmarks)
        limiter = self.config.rate_limiter() if rate_limiter == "default" else rate_limiter
        self.client = PuppetClient(self.registry, rate_limiter=limiter)
        self.presence = Presence(self._presence_changed)
        self.pool = HandlerPool(num_async_threads)
        self.pipeline = EventPipeline(
            api=self.client,
            host=self,
            pool=self.pool,
            presence=self.presence,
            data_dir=Path(data_dir) if data_dir is not None else None,
            max_concurrent_handlers=max_concurrent_handlers,
            max_queued_events=max_queued_events,
        )
        self.pipeline.debug_mode = self.config.debug_mode if debug_mode is None else debug_mode
        self.pipeline.admin_contacts = set(self.config.admin_contacts)
        self.pipeline.stall_timeout = float(
            stall_timeout
            if stall_timeout is not None
            else self.config.raw["server"].get("stall_timeout_s", 90)
        )
        self.pipeline.restart_stalled_bots = restart_stalled_bots
        self.transport = SocketTransport(
            limits=Limits.from_config(self.config.raw, max_events_in_flight=max_queued_events),
            authenticator=self.authenticator,
            registry=self.registry,
            presence=self.presence,
            handlers=self,
            legacy_clients=bool((self.config.raw.get("web") or {}).get("legacy_clients", False)),
            client_manager=None if self.cluster is None else self.cluster.manager,
        )
        self.pipeline.on_self_messages = self.transport.set_self_messages  # told at start
        #: the Socket.IO server and the aiohttp app (the original's ``self.sio``)
        self.sio = self.transport.sio
        self.app: web.Application = self.transport.app

        # `rooms` is both the room look-up (`await server.rooms.find(topic=...)`) and, as a
        # dict, the original project's Socket.IO room bookkeeping ({sender: room name}).
        self.rooms = Rooms(self.client)
        self.rooms["all_rooms"] = set()
        self.wx_room = "wx"
        #: look-ups: ``await server.contacts.find(name="Alice")``, ``server.rooms.find_all()``
        self.contacts = Contacts(self.client)
        #: dialogs in progress for the dashboard: a callable returning a list (docs/web.md)
        self.dialog_provider: Callable[[], Any] | None = None
        #: the scheduler, proactive messages, plugins and metrics (ops.py)
        self.ops = Ops(self)
        #: web clients: subscriptions, typed actions, the dashboard and the REST API
        self.web = WebHub(self, self.transport)
        install_api(self.web, self.app)
        if self.cluster is not None:
            self.cluster.install(self)
            self.pipeline.collect_replies = False  # a copy deduped elsewhere gets no actions

        self._shutdown_hooks: list[Callable[[], Any]] = []
        #: what the last stop could not save (a read-only or full data directory)
        self.unsaved: list[SaveFailure] = []
        self._previous_signal_handlers: dict[int, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._loop_thread: LoopThread | None = None
        self._user_loops: list[LoopThread] = []

        self.robot = robot
        if robot is not None:
            robot.add_server(self)
        self._init_original()

    # ------------------------------------------------------------------ settings of the parts

    @property
    def robot(self) -> Any:
        """The robot events go to (``None``: listeners only)."""
        return self.pipeline.robot

    @robot.setter
    def robot(self, robot: Any) -> None:
        self.pipeline.robot = robot

    @property
    def token(self) -> str | None:
        """The main token: opens every role. Never log it."""
        return self.authenticator.token

    @token.setter
    def token(self, token: str | None) -> None:
        self.authenticator.token = token

    @property
    def rate_limiter(self) -> Any:
        return self.client.rate_limiter

    @rate_limiter.setter
    def rate_limiter(self, limiter: Any) -> None:
        self.client.rate_limiter = limiter

    @property
    def connect_grace(self) -> float:
        """How long a call waits for a puppet that was connected before to come back."""
        return self.registry.connect_grace

    @connect_grace.setter
    def connect_grace(self, seconds: float) -> None:
        self.registry.connect_grace = seconds

    @property
    def debug_mode(self) -> bool:
        return self.pipeline.debug_mode

    @debug_mode.setter
    def debug_mode(self, on: bool) -> None:
        self.pipeline.debug_mode = on

    @property
    def admin_contacts(self) -> set[str]:
        return self.pipeline.admin_contacts

    @admin_contacts.setter
    def admin_contacts(self, ids: Iterable[str]) -> None:
        self.pipeline.admin_contacts = set(ids)

    @property
    def data_dir(self) -> Path | None:
        """Where seen event ids and contact snapshots are kept (None: nothing is written)."""
        return self.pipeline.data_dir

    @data_dir.setter
    def data_dir(self, folder: str | os.PathLike[str] | None) -> None:
        self.pipeline.data_dir = None if folder is None else Path(folder)

    @property
    def stall_timeout(self) -> float:
        return self.pipeline.stall_timeout

    @stall_timeout.setter
    def stall_timeout(self, seconds: float) -> None:
        self.pipeline.stall_timeout = seconds

    @property
    def restart_stalled_bots(self) -> bool:
        return self.pipeline.restart_stalled_bots

    @restart_stalled_bots.setter
    def restart_stalled_bots(self, on: bool) -> None:
        self.pipeline.restart_stalled_bots = on

    @property
    def auth_free_failures(self) -> int:
        """Failed authentications per address and minute before refusals are slowed down."""
        return self.authenticator.free_failures

    @auth_free_failures.setter
    def auth_free_failures(self, count: int) -> None:
        self.authenticator.free_failures = count

    # ------------------------------------------------------------------ life cycle

    @property
    def server_loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop  # the event loop the server runs on (the original project's name)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        """Start serving on this event loop; returns once the port is open."""
        if self._runner is not None:
            raise RuntimeError("the server is already running")
        host = host or self.host
        port = self.port if port is None else port
        self.authenticator.check_bind(host)
        if self.transport.legacy_clients and not is_loopback(host):
            raise ConfigError(
                f"web.legacy_clients lets clients without a token in; refusing to listen on "
                f"{host}, which is not loopback. Bind 127.0.0.1, or give the clients a token."
            )
        self._loop = self.client.loop = asyncio.get_running_loop()
        if self.data_dir is not None:
            self.client.budgets.path = self.data_dir / "send-budgets.json"
        if self.cluster is not None:
            await self.cluster.start()  # before listening: no Redis, no server (names the URL)
        self.pipeline.start()
        self.transport.open(host)
        # open websockets would hold a graceful shutdown for a minute; clients reconnect
        runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, shutdown_timeout=self.shutdown_timeout
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            self.pipeline.close()
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self._runner = runner
        self.host = host
        self.port = _bound_port(site, port)
        await self.ops.start()
        log.info("MetaPuppet server listening on %s", self.url)

    async def stop(self, handler_deadline: float = 5.0) -> None:
        """Stop gracefully: take no new events, let running handlers finish (up to
        ``handler_deadline`` seconds), run the shutdown hooks (dialog state, snapshots), then
        disconnect every client and close.

        Events that arrive meanwhile are answered "unavailable", so the Node client keeps
        them and sends them again to the next server.
        """
        if self._runner is None:
            return
        self.transport.accepting = False  # new connections and events are turned away
        self.unsaved = []
        await self.pipeline.drain(handler_deadline)
        for hook in list(self._shutdown_hooks):
            try:
                result = hook()
                if inspect.isawaitable(result):
                    await asyncio.wait_for(result, handler_deadline)
            except Exception as exc:
                log.exception("shutdown hook %r failed", hook)
                name = getattr(hook, "__qualname__", repr(hook))
                self.unsaved.append(SaveFailure(f"shutdown hook {name}", None, str(exc)))
        closer = getattr(self.robot, "aclose", None)
        if closer is not None:
            try:
                await closer()
            except Exception:
                log.exception("closing the robot failed")
        await self.ops.stop()
        self.unsaved += self.pipeline.close()
        if self.unsaved:
            log.error("stopped, but could not save: %s", "; ".join(map(str, self.unsaved)))
        for site in list(self._runner.sites):
            await site.stop()
        await self.transport.disconnect_all()
        if self.cluster is not None:
            await self.cluster.stop()
        self.registry.close_all("server stopping")
        await self.transport.shutdown()
        await self._runner.cleanup()
        self._runner = None
        self.pool.restart()
        log.info("MetaPuppet server stopped")

    def on_shutdown(self, hook: Callable[[], Any]) -> Callable[[], Any]:
        """Register ``hook`` (sync or async) to run during a graceful stop, after the last
        handler finished and before clients are disconnected; usable as a decorator."""
        self._shutdown_hooks.append(hook)
        return hook

    def run(self, host: str | None = None, port: int | None = None) -> None:
        """Start the server on a background loop thread and return (the original's style)."""
        if self._loop_thread is None:
            # not a daemon: a script whose main thread ends after run() keeps serving, as
            # the original's did, until Ctrl-C, SIGTERM or shutdown()
            self._loop_thread = LoopThread(
                "metapuppet-server", daemon=False, loop=self.config.event_loop
            )
        self._loop_thread.submit(self.start(host, port)).result(30)
        if threading.current_thread() is threading.main_thread():
            self.install_signal_handlers()

    def install_signal_handlers(self) -> None:
        """On SIGINT/SIGTERM stop gracefully, then chain to the handler installed before
        (SIGINT's default raises KeyboardInterrupt as usual); with none, exit 0.

        :meth:`run` installs them when called from the main thread.
        """
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_signal_handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        log.info("signal %s: stopping gracefully", signal.Signals(signum).name)
        try:
            self.shutdown()
        except Exception:
            log.exception("graceful stop failed")
        previous = self._previous_signal_handlers.get(signum)
        for sig, handler in self._previous_signal_handlers.items():
            signal.signal(sig, handler)
        if not threading.main_thread().is_alive():
            # the script's main thread had ended and the process was only serving; with the
            # server stopped, the interpreter now exits by itself (status 0)
            return
        if callable(previous):
            previous(signum, frame)
        else:
            raise SystemExit(0)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop a server started with :meth:`run` and end its loop thread."""
        if self._loop_thread is None:
            return
        self._loop_thread.submit(self.stop()).result(timeout)
        self._loop_thread.stop()
        self._loop_thread = None
        for user_loop in self._user_loops:
            user_loop.stop()
        self._user_loops.clear()

    # ------------------------------------------------------------------ puppets

    def attach_puppet(self, link: PuppetLink) -> None:
        """Register a puppet link (a real Node client, or a fake one in unit tests)."""
        self.registry.attach(link)

    def detach_puppet(self, link: PuppetLink, reason: str) -> None:
        self.registry.detach(link, reason)

    @property
    def bots(self) -> list[str]:
        """Names of the bots whose puppets are connected now."""
        return self.registry.bots

    def only_bot(self) -> str:
        """The one connected bot's name; raises when none or several are connected."""
        return self.registry.only_bot()

    async def current_user(self, bot: str | None = None) -> ContactSelf:
        """The bot's own account."""
        return await self.client.current_user(bot)

    def list_clients(self, only_online: bool = True) -> list[dict[str, Any]]:
        """Clients with role, bot, address, status (online/stalled/offline), login and last
        heartbeat; ``only_online=False`` includes those that went away."""
        return self.presence.list(only_online)

    def on_puppet_stalled(self, hook: Callable[[str, dict[str, Any]], Any]) -> Callable[..., Any]:
        """Register ``hook(bot, client_info)`` for puppets whose Wechaty went silent; usable
        as a decorator. The robot's ``on_puppet_stalled`` is called too."""
        return self.pipeline.on_stalled(hook)

    async def restart_bot(self, bot: str | None = None, timeout: float = 60.0) -> None:
        """Tell the Node client to stop and start its Wechaty bot again."""
        await self.client.control("restart-bot", bot=bot, timeout=timeout)

    async def async_wait_for_puppet(self, timeout: float = 30.0, bot: str | None = None) -> str:
        """Wait until a puppet (for ``bot``, or any) is connected; return its bot name."""
        if self._loop is not None and running_loop() is not self._loop:
            return await on_loop(self._loop, self.registry.wait_for(bot, timeout))
        return await self.registry.wait_for(bot, timeout)

    wait_for_puppet = sync_twin(async_wait_for_puppet)

    # ------------------------------------------------------------------ exec and sending

    async def exec_snippet(
        self, code: str, args: Any = None, *, bot: str | None = None, timeout: float = 30.0
    ) -> Any:
        """Run a TypeScript snippet on a bot and return its (serialised) result.

        ``code`` is the body of an async function that sees ``bot``, ``args``, ``FileBox``
        and ``log``. Keep it constant and pass data in ``args``::

            await server.exec_snippet("return (await bot.Contact.find({name: args.n}))?.id",
                                      {"n": "Alice"})

        Raises :class:`PuppetNotConnected`, :class:`SnippetError` (with the Node-side name,
        message and stack), :class:`SnippetCompileError` or :class:`SnippetTimeout`.
        """
        return await self.client.exec_snippet(code, args, bot=bot, timeout=timeout)

    exec_snippet_sync = sync_twin(exec_snippet)

    async def echo(self, data: Any, *, bot: str | None = None, timeout: float = 10.0) -> Any:
        """A raw round trip to the Node client (no snippet): the benchmark baseline."""
        return await self.client.echo(data, bot=bot, timeout=timeout)

    async def say(
        self,
        conversation_id: Any,
        something: Any,
        *,
        bot: str | None = None,
        room: bool | None = None,
        mentions: Iterable[Any] = (),
        reply_to: str | None = None,
    ) -> str | None:
        """Send one thing (text, FileBox, UrlLink, ...) to a contact or room; returns its id.

        Raises :class:`NotSupported` or :class:`SendWindowClosed` at once when the bot's
        channel cannot send it now (see :meth:`capabilities`, :meth:`send_budget`).
        """
        return await self.client.say(
            conversation_id, something, bot=bot, room=room, mentions=mentions, reply_to=reply_to
        )

    say_sync = sync_twin(say)

    async def typing(self, conversation_id: Any, on: bool, *, bot: str | None = None) -> bool:
        """Show or stop "typing..." in a chat; False on channels without it."""
        return await self.client.typing(conversation_id, on, bot=bot)

    def capabilities(self, bot: str | None = None) -> Capabilities:
        """What the channel of ``bot`` can do (rooms, friendships, files, a send budget ...)."""
        return self.client.capabilities(bot)

    def send_budget(self, bot: str | None, contact: Any) -> dict[str, Any] | None:
        """What may be sent to ``contact`` now on a channel with a send budget (None: no
        budget): ``open``, ``remaining``, ``closes_at``, ``reason``."""
        return self.client.send_budget(bot, contact)

    async def send_reply(
        self, reply: Any, *, to: str, bot: str | None, room: bool, reply_to: str | None = None
    ) -> None:
        """Send whatever a robot hook returned (str, FileBox, legacy dict, list, ...)."""
        await self.client.send_reply(reply, to=to, bot=bot, room=room, reply_to=reply_to)

    async def call_handler(self, handler: Callable[..., Any], *args: Any) -> Any:
        """Call a user handler: coroutines on the loop, plain functions in the thread pool."""
        return await self.pool.call(handler, *args)

    # ------------------------------------------------------------------ web clients

    async def emit_to_web(
        self, event: str, data: Any = None, to: str | Iterable[str] | None = None
    ) -> None:
        """Push ``event`` to web clients: all (``to=None``), one sid or a list of sids."""
        if self._loop is not None and running_loop() is not self._loop:
            return await on_loop(self._loop, self.web.emit_to_web(event, data, to))
        await self.web.emit_to_web(event, data, to)

    def on_web_message(self, type: str | None = None) -> Callable[[Any], Any]:  # noqa: A002
        """Decorator: handle web clients' ``message`` envelopes of ``type`` (see docs/web.md)."""
        return self.web.on_web_message(type)

    # ------------------------------------------------------------------ events

    def add_event_listener(self, listener: Listener, *, self_messages: bool = True) -> Remover:
        """Call ``listener(event)`` for every bot event (``self_messages``: the bot's own
        too); on the server loop, before the robot, must not block; returns its remover."""
        return self.pipeline.add_listener(listener, self_messages=self_messages)

    async def handle_event(self, event: BotEvent) -> asyncio.Task[Any] | None:
        """Take one bot event as if a puppet had sent it (see :meth:`EventPipeline.feed`)."""
        return await self.pipeline.feed(event)

    async def write_snapshot(self, bot: str | None = None) -> Path:
        """Write the bot's contacts, rooms and room members to ``data_dir`` as JSON."""
        if self.data_dir is None:
            raise ConfigError("write_snapshot needs a data_dir")
        return await snapshots.write_snapshot(self.client, self.data_dir, bot or self.only_bot())

    async def write_snapshots(self) -> list[Path]:
        """A snapshot of every connected bot (a shutdown hook of `metapuppet serve`); one
        that cannot be written is noted in :attr:`unsaved`."""
        return await snapshots.write_snapshots(self.client, self.data_dir, self.bots, self.unsaved)

    # ------------------------------------------------------------------ transport handlers

    async def on_puppet_event(self, info: ClientInfo, data: Any) -> dict[str, Any]:
        """An ``event`` from a puppet (the transport calls it); returns its acknowledgement."""
        return await self.pipeline.receive(info, data)

    async def on_message(self, sid: str, message: dict[str, Any]) -> None:
        """The original ``message`` envelope: registered web handlers first, then the
        original's hooks (:meth:`process_socket_message`, :meth:`process_custom_message`)."""
        if await self.web.dispatch_message(sid, message):
            return
        if message.get("type") == "SOCKET_INFO":
            await self.process_socket_message(sid, message)
        else:
            await self.process_custom_message(sid, message)

    def on_client(self, info: ClientInfo, connected: bool) -> None:
        self.web.client_changed(info, connected)

    def _presence_changed(self, info: ClientInfo, old: str, new: str) -> None:
        if info.role != protocol.ROLE_PUPPET:
            # web clients come and go by the hundred; telling every other one would be n²
            log.debug("web client %s: %s -> %s", info.sid, old, new)
            return
        log.info("bot %r: %s -> %s", info.bot, old, new)
        if self._loop is not None and self._runner is not None:
            self.transport.spawn(self.transport.emit("presence", info.to_dict(), to=WEB_ROOM))


def _bound_port(site: web.TCPSite, asked: int) -> int:
    """The port ``site`` listens on (``asked`` may be 0: any free port)."""
    server = getattr(site, "_server", None)  # aiohttp 3.x internal; asked is the fallback
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1]) if sockets else asked
