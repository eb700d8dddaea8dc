"""SocketServerCore: the aiohttp + Socket.IO server that Node puppets and web clients join.

The server authenticates every client, keeps a registry of connected puppets by bot name,
runs snippets on them (:meth:`SocketServerCore.exec_snippet`) and hands Wechaty events to
the robot, sending the robot's replies back through the puppet the event came from.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import inspect
import ipaddress
import json
import logging
import os
import random
import re
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from concurrent.futures import Future as ConcurrentFuture
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import socketio
from aiohttp import web

from . import protocol
from ._loop import LoopThread, call_sync, on_loop, running_loop
from .config import MIN_EXPOSED_TOKEN_LENGTH, Config, load_config
from .errors import (
    ConfigError,
    MetaPuppetError,
    ProtocolError,
    PuppetDisconnected,
    PuppetNotConnected,
    SnippetTimeout,
)
from .presence import ClientInfo, Presence
from .protocol import BotEvent
from .web import WebHub
from .wechaty import (
    Contacts,
    ContactSelf,
    Friendship,
    Message,
    RoomEvent,
    RoomInvitation,
    Rooms,
    contact_from_wire,
    reply_to_sayables,
    sayable_to_wire,
)

if TYPE_CHECKING:
    from .robot import RobotBase

log = logging.getLogger("MetaPuppet.server")
T = TypeVar("T")

# How long the server waits for an answer beyond the snippet's own timeout, which the
# Node side enforces; past this margin the puppet itself is not answering.
ANSWER_MARGIN_S = 5.0
SEEN_EVENT_IDS = 50_000
# failed authentications from one address: this many per window are free, then each
# refusal is held back longer, up to the cap
AUTH_WINDOW_S = 60.0
AUTH_FREE_FAILURES = 5
AUTH_MAX_DELAY_S = 5.0
_FUNC_PATH = re.compile(r"^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$")

# Constant snippets. Data arrives in `args`; nothing is ever formatted into them.
SAY_SNIPPET = """
const s = args.sayable
const conversation = args.kind === 'room' ? bot.Room.load(args.to) : bot.Contact.load(args.to)
await conversation.ready()
let thing
switch (s.type) {
  case 'text': thing = s.text; break
  case 'file': thing = FileBox.fromBase64(s.base64, s.name); break
  case 'file_url': thing = FileBox.fromUrl(s.url, { name: s.name }); break
  case 'url': thing = new bot.UrlLink(s.payload); break
  case 'mini_program': thing = new bot.MiniProgram(s.payload); break
  case 'contact': {
    thing = bot.Contact.load(s.id)
    await thing.ready()
    break
  }
  default: throw new Error(`cannot say a sayable of type ${s.type}`)
}
let sent
if (args.kind === 'room' && s.type === 'text' && args.mentions.length > 0) {
  const mentions = []
  for (const id of args.mentions) {
    const contact = bot.Contact.load(id)
    await contact.ready()
    mentions.push(contact)
  }
  sent = await conversation.say(thing, ...mentions)
} else {
  sent = await conversation.say(thing)
}
return sent ? sent.id : null
"""

CALL_FUNCTION_SNIPPET = """
const scope = { bot, FileBox }
const parts = args.path.split('.')
if (!(parts[0] in scope)) throw new Error(`${parts[0]} is not available: start with bot or FileBox`)
let owner = null
let target = scope[parts[0]]
for (const part of parts.slice(1)) {
  if (target === null || target === undefined) throw new Error(`${args.path}: ${part} of nothing`)
  owner = target
  target = target[part]
}
if (typeof target !== 'function') throw new Error(`${args.path} is not a function`)
return await target.apply(owner, args.params)
"""


SNAPSHOT_SNIPPET = """
const contacts = await bot.Contact.findAll()
const rooms = await bot.Room.findAll()
const roomRecords = []
for (const room of rooms) {
  let members = []
  try {
    members = (await room.memberAll()).map((member) => member.id)
  } catch (error) {
    log.warn(`snapshot: members of ${room.id}: ${error}`)
  }
  roomRecords.push({ id: room.id, payload: room.payload ?? null, memberIds: members })
}
return {
  user: bot.isLoggedIn ? bot.currentUser : null,
  contacts: contacts.map((contact) => ({ id: contact.id, payload: contact.payload ?? null })),
  rooms: roomRecords,
}
"""


def sync_twin(
    method: Callable[..., Coroutine[Any, Any, T]],
) -> Callable[..., T]:
    """Make the blocking twin of an ``async_`` method: run it on the server loop, wait."""
    name = method.__name__.removeprefix("async_")

    @functools.wraps(method)
    def twin(self: SocketServerCore, *args: Any, **kwargs: Any) -> T:
        return self._sync(name, lambda: method(self, *args, **kwargs))

    twin.__name__ = name
    twin.__qualname__ = method.__qualname__.replace(method.__name__, name)
    twin.__doc__ = f"Blocking twin of ``{method.__name__}``; not for the server loop."
    return twin


class _Done:
    """An awaitable that is already finished."""

    def __await__(self) -> Any:
        return iter(())


class _SocketIOServer(socketio.AsyncServer):  # type: ignore[misc]
    """AsyncServer whose ``enter_room``/``leave_room`` act at once.

    The original project called ``self.sio.enter_room(sid, room)`` without ``await`` (it was
    synchronous in python-socketio 4). Joining a room is local bookkeeping, so doing it
    immediately keeps that code working, and ``await``-ing the result still works too.
    """

    def enter_room(self, sid: str, room: str, namespace: str | None = None) -> _Done:
        self.manager.basic_enter_room(sid, namespace or "/", room)
        return _Done()

    def leave_room(self, sid: str, room: str, namespace: str | None = None) -> _Done:
        self.manager.basic_leave_room(sid, namespace or "/", room)
        return _Done()

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> Any:
        # a packet that is not Socket.IO at all (or JSON nested past Python's limit) is
        # dropped with one line instead of a traceback; the connection goes on
        try:
            return await super()._handle_eio_message(eio_sid, data)
        except (ValueError, RecursionError, IndexError, KeyError, TypeError) as exc:
            log.warning("dropped a malformed Socket.IO packet (%s: %.80s)", type(exc).__name__, exc)
            return None


class AmbiguousBot(MetaPuppetError, ValueError):
    """Several bots are connected and the call did not say which one to use."""


class PuppetLink(ABC):
    """The seam between the server and one connected puppet.

    :class:`SocketPuppetLink` is a real Node client; tests may register a fake one with
    :meth:`SocketServerCore.attach_puppet`.
    """

    bot: str

    @abstractmethod
    async def call(self, event: str, data: Any, timeout: float) -> Any:
        """Send ``event`` with ``data`` and return the puppet's acknowledgement."""

    def close(self, reason: str) -> None:  # noqa: B027 - optional hook
        """Fail pending calls; the puppet is gone."""


class SocketPuppetLink(PuppetLink):
    """A Node client connected over Socket.IO."""

    def __init__(self, sio: socketio.AsyncServer, sid: str, bot: str) -> None:
        self.sio = sio
        self.sid = sid
        self.bot = bot
        self._pending: set[asyncio.Future[Any]] = set()
        self._closed: str | None = None

    async def call(self, event: str, data: Any, timeout: float) -> Any:
        if self._closed is not None:
            raise PuppetDisconnected(f"bot {self.bot!r} disconnected ({self._closed})")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_ack(*answer: Any) -> None:
            if not future.done():
                future.set_result(answer[0] if answer else None)

        self._pending.add(future)
        try:
            try:
                await self.sio.emit(event, data, to=self.sid, callback=on_ack)
            except TypeError as exc:
                raise ValueError(f"arguments must be JSON-serialisable: {exc}") from None
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise SnippetTimeout(
                f"no answer from bot {self.bot!r} within {timeout:.1f} s", bot=self.bot
            ) from None
        finally:
            self._pending.discard(future)

    def close(self, reason: str) -> None:
        self._closed = reason
        for future in list(self._pending):
            if not future.done():
                future.set_exception(
                    PuppetDisconnected(f"bot {self.bot!r} disconnected during a call ({reason})")
                )
        self._pending.clear()


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SocketServerCore:
    """The MetaPuppet server.

    ``robot`` receives the events; ``num_async_threads`` sizes the thread pool for
    synchronous handlers; ``debug_mode`` enables the ``$debug$`` chat command for the
    contacts listed in ``admin_contacts``. Use ``await start()`` / ``await stop()`` in
    asyncio programs, or ``run()`` to serve from a background thread::

        server = SweetSocketServer(robot=TestBot())
        server.run()                 # returns at once
        server.wait_for_puppet(30)
        print(server.exec_snippet_sync("return bot.currentUser.name()"))
    """

    def __init__(
        self,
        robot: RobotBase | None = None,
        server_mode: str = "aiohttp",
        num_async_threads: int = 1,
        debug_mode: bool | None = None,
        *,
        config: Config | None = None,
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
    ) -> None:
        if server_mode not in ("aiohttp", "sanic"):
            raise ConfigError(f"unknown server_mode {server_mode!r}; MetaPuppet runs on aiohttp")
        if num_async_threads < 1:
            raise ConfigError(f"num_async_threads must be at least 1, got {num_async_threads}")
        self.config = config if config is not None else load_config()
        self._token = token or self.config.token
        # a role-specific token, when configured, opens only that role
        self._puppet_token: str | None = self.config.raw["server"].get("puppet_token")
        self._web_token: str | None = self.config.raw["server"].get("web_token")
        self.host = host or self.config.host
        self.port = port if port is not None else self.config.port
        self.num_async_threads = num_async_threads
        self.debug_mode = self.config.debug_mode if debug_mode is None else debug_mode
        self.admin_contacts = set(self.config.admin_contacts)
        #: how long a call waits for a puppet that was connected before to come back
        self.connect_grace = connect_grace
        #: a puppet with no sign of a working Wechaty for this long is reported stalled
        self.stall_timeout = float(
            stall_timeout
            if stall_timeout is not None
            else self.config.raw["server"].get("stall_timeout_s", 90)
        )
        self.restart_stalled_bots = restart_stalled_bots
        #: where seen event ids and contact snapshots are kept (None: nothing is written)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.server_mode = "aiohttp"
        self.max_concurrent_handlers = max_concurrent_handlers
        #: events accepted but not yet handled; past this, new events wait (never dropped)
        self.max_queued_events = max_queued_events
        #: consulted before every outgoing message: ``await rate_limiter.acquire(bot, chat)``;
        #: "default" follows the config's ``server.rate_limit`` (WeChat-safe limits unless it
        #: says otherwise), None sends at full speed (tests, benchmarks)
        self.rate_limiter = (
            self.config.rate_limiter() if rate_limiter == "default" else rate_limiter
        )

        self.sio = _SocketIOServer(
            async_mode="aiohttp",
            max_http_buffer_size=self.config.max_message_bytes,
            cors_allowed_origins=[],
            logger=False,
            engineio_logger=False,
        )
        self.app = web.Application(client_max_size=self.config.max_message_bytes)
        self.sio.attach(self.app)
        self._register_handlers()

        # `rooms` is both the room look-up (`await server.rooms.find(topic=...)`) and, as a
        # dict, the original project's Socket.IO room bookkeeping ({sender: room name}).
        self.rooms = Rooms(self)
        self.rooms["all_rooms"] = set()
        self.wx_room = "wx"

        self._pool = ThreadPoolExecutor(num_async_threads, thread_name_prefix="metapuppet-handler")
        self._puppets: dict[str, PuppetLink] = {}
        self._clients: dict[str, ClientInfo] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[Any]] = {}
        self._presence = Presence(self._presence_changed)
        self._known_bots: set[str] = set()
        self._auth_failures: OrderedDict[str, list[float]] = OrderedDict()
        #: failed authentications per address and minute before refusals are slowed down
        self.auth_free_failures = AUTH_FREE_FAILURES
        self._stall_hooks: list[Callable[[str, dict[str, Any]], Any]] = []
        self._shutdown_hooks: list[Callable[[], Any]] = []
        self._previous_signal_handlers: dict[int, Any] = {}
        self._listeners: list[Callable[[BotEvent], Any]] = []
        self._chat_tails: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._puppet_waiters: list[asyncio.Future[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._loop_thread: LoopThread | None = None
        self._user_loops: list[LoopThread] = []
        self._handler_slots: asyncio.Semaphore | None = None
        self._queue_slots: asyncio.Semaphore | None = None
        self._accepting = False

        #: look-ups: ``await server.contacts.find(name="Alice")``, ``server.rooms.find_all()``
        self.contacts = Contacts(self)
        #: dialogs in progress for the dashboard: a callable returning a list (docs/web.md)
        self.dialog_provider: Callable[[], Any] | None = None
        #: web clients: subscriptions, typed actions, the dashboard and the REST API
        self.web = WebHub(self)

        self.robot = robot
        if robot is not None:
            robot.add_server(self)

    # ------------------------------------------------------------------ life cycle

    @property
    def server_loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the server runs on (the original project's name)."""
        return self._loop

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _token_opens(self, token: str, role: str) -> bool:
        """Constant-time check of ``token`` against the tokens that open ``role``."""
        candidates = [self._token, self._puppet_token if role == "puppet" else self._web_token]
        given = token.encode()
        matched = False
        for candidate in candidates:
            if candidate:
                matched |= hmac.compare_digest(given, candidate.encode())
        return matched

    def _auth_failed(self, remote: str | None) -> float:
        """Count a failed authentication from ``remote``; how long to hold the refusal."""
        now = time.monotonic()
        key = remote or "?"
        recent = [t for t in self._auth_failures.pop(key, []) if now - t < AUTH_WINDOW_S]
        recent.append(now)
        self._auth_failures[key] = recent
        while len(self._auth_failures) > 10_000:
            self._auth_failures.popitem(last=False)
        excess = len(recent) - self.auth_free_failures
        return 0.0 if excess <= 0 else min(AUTH_MAX_DELAY_S, 0.1 * 2 ** (excess - 1))

    def _check_bind(self, host: str) -> str:
        if not self._token:
            raise ConfigError(
                "no token configured: run `metapuppet init` (writes config.json with a fresh "
                "token) or set METAPUPPET_TOKEN"
            )
        if not _is_loopback(host) and len(self._token) < MIN_EXPOSED_TOKEN_LENGTH:
            raise ConfigError(
                f"refusing to listen on {host}, which is not loopback, with a token shorter than "
                f"{MIN_EXPOSED_TOKEN_LENGTH} characters: anyone who guesses it can drive your "
                "bot. Use `metapuppet init` for a strong token, or bind 127.0.0.1."
            )
        return self._token

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        """Start serving on this event loop; returns once the port is open."""
        if self._runner is not None:
            raise RuntimeError("the server is already running")
        host = host or self.host
        port = self.port if port is None else port
        self._check_bind(host)
        self._loop = asyncio.get_running_loop()
        self._handler_slots = asyncio.Semaphore(self.max_concurrent_handlers)
        self._queue_slots = asyncio.Semaphore(self.max_queued_events)
        self._accepting = True
        # open websockets would hold a graceful shutdown for a minute; clients reconnect
        runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, shutdown_timeout=2.0
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self._runner = runner
        self._load_seen_ids()
        self._spawn(self._watch_stalls(), track=False)
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.host = host
        self.port = sockets[0].getsockname()[1] if sockets else port
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
        self._accepting = False  # new events and new connections are turned away
        pending = [t for t in self._tasks if not t.done() and t is not asyncio.current_task()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=handler_deadline)
            for task in still:
                log.warning("a handler did not finish within %.1f s; cancelled", handler_deadline)
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)
        for hook in list(self._shutdown_hooks):
            try:
                result = hook()
                if inspect.isawaitable(result):
                    await asyncio.wait_for(result, handler_deadline)
            except Exception:
                log.exception("shutdown hook %r failed", hook)
        self._save_seen_ids()
        for site in list(self._runner.sites):
            await site.stop()
        for sid in list(self._clients):
            try:
                await self.sio.disconnect(sid)
            except Exception:  # pragma: no cover - best effort on the way out
                log.debug("disconnect of %s failed", sid, exc_info=True)
        for link in list(self._puppets.values()):
            link.close("server stopping")
        self._puppets.clear()
        for task in list(self._background):
            task.cancel()
        await self.sio.shutdown()
        await self._runner.cleanup()
        self._runner = None
        self._pool.shutdown(wait=False)
        self._pool = ThreadPoolExecutor(
            self.num_async_threads, thread_name_prefix="metapuppet-handler"
        )
        log.info("MetaPuppet server stopped")

    def on_shutdown(self, hook: Callable[[], Any]) -> Callable[[], Any]:
        """Register ``hook`` (sync or async) to run during a graceful stop, after the last
        handler finished and before clients are disconnected; usable as a decorator."""
        self._shutdown_hooks.append(hook)
        return hook

    def run(self, host: str | None = None, port: int | None = None) -> None:
        """Start the server on a background loop thread and return (the original's style)."""
        if self._loop_thread is None:
            self._loop_thread = LoopThread("metapuppet-server")
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

    def _sync(
        self, what: str, make: Callable[[], Coroutine[Any, Any, T]], timeout: float | None = None
    ) -> T:
        if self._loop is None:
            raise RuntimeError(f"{what}(): the server is not running; call server.run() first")
        return call_sync(self._loop, make, what=what, timeout=timeout)

    def run_coroutine_in_random_thread(self, coro: Coroutine[Any, Any, T]) -> ConcurrentFuture[T]:
        """Run ``coro`` on one of ``num_async_threads`` background loops (the original's API)."""
        if not self._user_loops:
            self._user_loops = [
                LoopThread(f"metapuppet-user-{i}") for i in range(self.num_async_threads)
            ]
        return random.choice(self._user_loops).submit(coro)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ puppets

    def attach_puppet(self, link: PuppetLink) -> None:
        """Register a puppet link (a real Node client, or a fake one in unit tests)."""
        old = self._puppets.get(link.bot)
        if old is not None and old is not link:
            log.warning("bot %r connected again; the older connection is replaced", link.bot)
            old.close("replaced by a newer connection")
            old_sid = getattr(old, "sid", None)
            if old_sid is not None:
                self._spawn(self.sio.disconnect(old_sid))
        self._puppets[link.bot] = link
        self._known_bots.add(link.bot)
        waiters, self._puppet_waiters = self._puppet_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def detach_puppet(self, link: PuppetLink, reason: str) -> None:
        if self._puppets.get(link.bot) is link:
            del self._puppets[link.bot]
        link.close(reason)

    @property
    def bots(self) -> list[str]:
        """Names of the bots whose puppets are connected now."""
        return sorted(self._puppets)

    def only_bot(self) -> str:
        """The one connected bot's name; raises when none or several are connected."""
        if len(self._puppets) == 1:
            return next(iter(self._puppets))
        if not self._puppets:
            raise PuppetNotConnected("no puppet is connected: start the Node client")
        raise AmbiguousBot(f"several bots are connected ({', '.join(self.bots)}): pass bot=...")

    async def current_user(self, bot: str | None = None) -> ContactSelf:
        """The bot's own account."""
        wire = await self.exec_snippet("return bot.currentUser", bot=bot)
        user = contact_from_wire(self, bot or self.only_bot(), wire)
        if not isinstance(user, ContactSelf):
            raise MetaPuppetError(f"the bot is not logged in (got {wire!r:.80})")
        return user

    def list_clients(self, only_online: bool = True) -> list[dict[str, Any]]:
        """Clients with role, bot, address, status (online/stalled/offline), login and last
        heartbeat; ``only_online=False`` includes those that went away."""
        return self._presence.list(only_online)

    def _presence_changed(self, info: ClientInfo, old: str, new: str) -> None:
        if info.role != "puppet":
            # web clients come and go by the hundred; telling every other one would be n²
            log.debug("web client %s: %s -> %s", info.sid, old, new)
            return
        log.info("bot %r: %s -> %s", info.bot, old, new)
        if self._loop is not None and self._runner is not None:
            self._spawn(self.sio.emit("presence", info.to_dict(), room="web"), track=False)

    def on_puppet_stalled(self, hook: Callable[[str, dict[str, Any]], Any]) -> Callable[..., Any]:
        """Register ``hook(bot, client_info)`` for puppets whose Wechaty went silent; usable
        as a decorator. The robot's ``on_puppet_stalled`` is called too."""
        self._stall_hooks.append(hook)
        return hook

    async def restart_bot(self, bot: str | None = None, timeout: float = 60.0) -> None:
        """Tell the Node client to stop and start its Wechaty bot again."""
        link = await self._pick_puppet(bot, 0.0)
        answer = await link.call(protocol.EV_CONTROL, {"action": "restart-bot"}, timeout)
        protocol.unwrap_exec_response(answer, bot=link.bot)

    async def _watch_stalls(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, min(self.stall_timeout / 4, 5.0)))
            for info in self._presence.stalled(self.stall_timeout):
                assert info.bot is not None
                log.warning(
                    "bot %r stalled: no sign of a working Wechaty for %.0f s",
                    info.bot,
                    self.stall_timeout,
                )
                self._spawn(self._report_stall(info.bot, info.to_dict()), track=False)

    async def _report_stall(self, bot: str, details: dict[str, Any]) -> None:
        hooks = list(self._stall_hooks)
        robot_hook = getattr(self.robot, "on_puppet_stalled", None)
        if robot_hook is not None:
            hooks.append(robot_hook)
        for hook in hooks:
            try:
                await self.call_handler(hook, bot, details)
            except Exception:
                log.exception("on_puppet_stalled hook %r failed", hook)
        if self.restart_stalled_bots:
            try:
                await self.restart_bot(bot)
                log.info("asked bot %r to restart its Wechaty", bot)
            except MetaPuppetError as exc:
                log.warning("could not restart bot %r: %s", bot, exc)

    def _grace_for(self, bot: str | None) -> float:
        """Wait for a puppet only if it was connected before (it may be reconnecting);
        a bot never seen fails at once."""
        known = bot in self._known_bots if bot is not None else bool(self._known_bots)
        return self.connect_grace if known else 0.0

    async def _pick_puppet(self, bot: str | None, grace: float) -> PuppetLink:
        deadline = time.monotonic() + grace
        while True:
            if bot is not None:
                link = self._puppets.get(bot)
                if link is not None:
                    return link
            elif len(self._puppets) == 1:
                return next(iter(self._puppets.values()))
            elif len(self._puppets) > 1:
                raise AmbiguousBot(
                    f"several bots are connected ({', '.join(self.bots)}): pass bot=..."
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                which = f"for bot {bot!r} " if bot else ""
                connected = f" (connected: {', '.join(self.bots)})" if self._puppets else ""
                raise PuppetNotConnected(
                    f"no puppet {which}is connected{connected}: start the Node client "
                    "with `metapuppet client`"
                )
            await self._puppet_change(remaining)

    async def _puppet_change(self, remaining: float) -> None:
        """Sleep until a puppet connects, or ``remaining`` seconds pass."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._puppet_waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, remaining)
        except TimeoutError:
            pass

    async def async_wait_for_puppet(self, timeout: float = 30.0, bot: str | None = None) -> str:
        """Wait until a puppet (for ``bot``, or any) is connected; return its bot name."""
        if running_loop() is not self._loop:
            assert self._loop is not None
            return await on_loop(self._loop, self.async_wait_for_puppet(timeout, bot))
        deadline = time.monotonic() + timeout
        while True:
            if bot is not None and bot in self._puppets:
                return bot
            if bot is None and self._puppets:
                return self.bots[0]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                which = f"for bot {bot!r} " if bot else ""
                raise PuppetNotConnected(
                    f"no puppet {which}connected within {timeout:.1f} s: is the Node client "
                    "running (`metapuppet client`) with the same token and port?"
                )
            await self._puppet_change(remaining)

    def wait_for_puppet(self, timeout: float = 30.0, bot: str | None = None) -> str:
        """Block until a puppet is connected (sync twin of :meth:`async_wait_for_puppet`)."""
        return self._sync(
            "wait_for_puppet", lambda: self.async_wait_for_puppet(timeout, bot), timeout + 5
        )

    # ------------------------------------------------------------------ exec

    async def exec_snippet(
        self,
        code: str,
        args: Any = None,
        *,
        bot: str | None = None,
        timeout: float = 30.0,
    ) -> Any:
        """Run a TypeScript snippet on a bot and return its (serialised) result.

        ``code`` is the body of an async function that sees ``bot``, ``args``, ``FileBox``
        and ``log``. Keep it constant and pass data in ``args``::

            await server.exec_snippet("return (await bot.Contact.find({name: args.n}))?.id",
                                      {"n": "Alice"})

        Raises :class:`PuppetNotConnected`, :class:`SnippetError` (with the Node-side name,
        message and stack), :class:`SnippetCompileError` or :class:`SnippetTimeout`.
        """
        if self._loop is not None and running_loop() is not self._loop:
            return await on_loop(
                self._loop, self.exec_snippet(code, args, bot=bot, timeout=timeout)
            )
        if not isinstance(code, str) or not code.strip():
            raise ValueError("code must be a non-empty string of TypeScript")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        link = await self._pick_puppet(bot, self._grace_for(bot))
        answer = await link.call(
            protocol.EV_EXEC,
            protocol.exec_request(code, {} if args is None else args, timeout),
            timeout + ANSWER_MARGIN_S,
        )
        return protocol.unwrap_exec_response(answer, bot=link.bot)

    def exec_snippet_sync(
        self, code: str, args: Any = None, *, bot: str | None = None, timeout: float = 30.0
    ) -> Any:
        """Blocking twin of :meth:`exec_snippet`, for plain threads (not the server loop)."""
        return self._sync(
            "exec_snippet",
            lambda: self.exec_snippet(code, args, bot=bot, timeout=timeout),
            timeout + ANSWER_MARGIN_S + 5,
        )

    async def echo(self, data: Any, *, bot: str | None = None, timeout: float = 10.0) -> Any:
        """A raw round trip to the Node client (no snippet): the benchmark baseline."""
        link = await self._pick_puppet(bot, self._grace_for(bot))
        return await link.call(protocol.EV_ECHO, data, timeout)

    # the original project's names --------------------------------------------------

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
        if not isinstance(func_name, str) or not _FUNC_PATH.match(func_name):
            raise ValueError(
                f"func_name must be a dotted name like bot.Contact.findAll: {func_name!r}"
            )
        result = await self.exec_snippet(
            CALL_FUNCTION_SNIPPET, {"path": func_name, "params": list(func_paras)}, bot=bot
        )
        return result if need_return else None

    exec_one_wx_function = sync_twin(async_exec_one_wx_function)

    # ------------------------------------------------------------------ sending

    async def say(
        self,
        conversation_id: str,
        something: Any,
        *,
        bot: str | None = None,
        room: bool | None = None,
        mentions: Iterable[str] = (),
    ) -> str | None:
        """Send one thing (text, FileBox, UrlLink, ...) to a contact or room; returns its id."""
        if room is None:
            room = "@" in conversation_id
        if self.rate_limiter is not None:
            link = await self._pick_puppet(bot, self._grace_for(bot))
            bot = link.bot
            await self.rate_limiter.acquire(bot, conversation_id)
        args = {
            "kind": "room" if room else "contact",
            "to": conversation_id,
            "sayable": sayable_to_wire(something),
            "mentions": list(mentions),
        }
        result = await self.exec_snippet(SAY_SNIPPET, args, bot=bot, timeout=120.0)
        return str(result) if result else None

    async def send_reply(self, reply: Any, *, to: str, bot: str | None, room: bool) -> None:
        """Send whatever a robot hook returned (str, FileBox, legacy dict, list, ...)."""
        for something in reply_to_sayables(reply):
            await self.say(to, something, bot=bot, room=room)

    async def async_send_message_to_client(
        self, message: Any, sid: str | None = None, room_name: str | None = None
    ) -> None:
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
        """Emit the original envelope to a web client (``sid``) or a room; does not wait."""
        if self._loop is None:
            raise RuntimeError("send_message_to_client(): the server is not running")
        return asyncio.run_coroutine_threadsafe(
            self.async_send_message_to_client(message, sid, room_name), self._loop
        )

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

    def add_room(self, sender: str, room_name: str) -> None:
        self.rooms["all_rooms"].add(room_name)
        self.rooms[sender] = room_name

    # ------------------------------------------------------------------ socket handlers

    def _register_handlers(self) -> None:
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on(protocol.EV_EVENT, self._on_event)
        self.sio.on(protocol.EV_EXEC, self._on_exec)
        self.sio.on(protocol.EV_MESSAGE, self._on_message)
        self.sio.on("*", self._on_unknown)

    async def _on_connect(self, sid: str, environ: Any = None, auth: Any = None) -> None:
        if sid in self._clients or not isinstance(environ, dict):
            # a connected client emitting an event named "connect": not a connection
            log.warning("client %s sent a reserved event name (connect); ignored", sid)
            return
        request = environ.get("aiohttp.request")
        remote = getattr(request, "remote", None) or environ.get("REMOTE_ADDR")
        if not self._accepting:
            raise socketio.exceptions.ConnectionRefusedError("the server is shutting down")
        try:
            parsed = protocol.parse_auth(auth)
        except ProtocolError as exc:
            log.warning("refused a client from %s: %s", remote, exc)
            raise socketio.exceptions.ConnectionRefusedError(str(exc)) from None
        grant = self.web.authenticate(parsed.token) if parsed.role == protocol.ROLE_WEB else None
        if grant is None and not self._token_opens(parsed.token, parsed.role):
            delay = self._auth_failed(remote)
            log.warning(
                "refused a %s client from %s: invalid token%s",
                parsed.role,
                remote,
                f" (slowed down {delay:.1f} s after repeated failures)" if delay else "",
            )
            if delay:
                await asyncio.sleep(delay)
            raise socketio.exceptions.ConnectionRefusedError("invalid token")
        if parsed.protocol != protocol.PROTOCOL_VERSION:
            reason = (
                f"protocol version mismatch: the client speaks {parsed.protocol}, "
                f"the server speaks {protocol.PROTOCOL_VERSION}; update the older side"
            )
            log.warning("refused a client from %s: %s", remote, reason)
            raise socketio.exceptions.ConnectionRefusedError(reason)
        info = ClientInfo(sid=sid, role=parsed.role, bot=parsed.bot, remote=remote)
        info.permissions = grant.permissions if grant is not None else frozenset()
        self._clients[sid] = info
        self.web.client_connected(sid, info.role, info.permissions)
        self._presence.connected(info)
        if parsed.role == protocol.ROLE_PUPPET:
            assert parsed.bot is not None
            await self.sio.enter_room(sid, self.wx_room)
            self.attach_puppet(SocketPuppetLink(self.sio, sid, parsed.bot))
            log.info("puppet for bot %r connected from %s", parsed.bot, remote)
        else:
            await self.sio.enter_room(sid, "web")
            log.info("web client %s connected from %s", sid, remote)

    async def _on_disconnect(self, sid: str, *reason: Any) -> None:
        if self.sio.manager.is_connected(sid, "/"):
            # a live client emitting an event named "disconnect"; a real disconnect has
            # already marked the session as leaving
            log.warning("client %s sent a reserved event name (disconnect); ignored", sid)
            return
        info = self._clients.pop(sid, None)
        if info is None:
            return
        self._presence.disconnected(info)
        self.web.client_disconnected(sid)
        if info.role == protocol.ROLE_PUPPET and info.bot is not None:
            link = self._puppets.get(info.bot)
            if isinstance(link, SocketPuppetLink) and link.sid == sid:
                self.detach_puppet(link, "socket closed")
            log.info("puppet for bot %r disconnected", info.bot)
        else:
            log.info("web client %s disconnected", sid)

    async def _on_event(self, sid: str, data: Any = None) -> dict[str, Any]:
        info = self._clients.get(sid)
        if info is None or info.role != protocol.ROLE_PUPPET or info.bot is None:
            return protocol.error_ack("forbidden", "only puppet clients may send bot events")
        try:
            event = protocol.parse_event(data, bot=info.bot)
        except ProtocolError as exc:
            log.warning("dropped a malformed event from bot %r: %s", info.bot, exc)
            return protocol.error_ack("bad_request", str(exc))
        if event.name == "heartbeat":
            self._presence.heartbeat(info, event.payload)
            await self.handle_event(event)
            return protocol.ok()
        if event.name != "error":
            self._presence.alive(info)
        if not self._accepting:
            return protocol.error_ack(
                "unavailable",
                "the server is shutting down; send the event again after reconnecting",
            )
        if event.name in ("login", "logout"):
            self._presence.login(info, event.payload if event.name == "login" else None)
        task = await self.handle_event(event)
        if task is not None:
            # acknowledge once handled: if this process dies first, the client still holds
            # the event and sends it again, and the id check keeps it from running twice
            await asyncio.wait([task])
            if task.cancelled():
                return protocol.error_ack("unavailable", "handling was cut short; send it again")
        return protocol.ok()

    async def _on_exec(self, sid: str, data: Any = None) -> dict[str, Any]:
        log.warning("client %s tried to send exec; refused", sid)
        return protocol.error_ack(
            "forbidden", "exec runs from the server to puppets; clients can never run code"
        )

    async def _on_message(self, sid: str, message: Any = None) -> None:
        if not isinstance(message, dict) or not isinstance(message.get("sender"), str):
            log.debug("ignored a message without a sender from %s", sid)
            return
        try:
            if await self.web.dispatch_message(sid, message):
                return
            if message.get("type") == "SOCKET_INFO":
                await self.process_socket_message(sid, message)
            else:
                await self.process_custom_message(sid, message)
        except Exception:
            log.exception("handling a message from client %s failed", sid)

    async def _on_unknown(self, *args: Any) -> dict[str, Any]:
        # the catch-all gets (event, sid, *data); an event literally named "*" gets (sid, *data)
        event = args[0] if len(args) > 1 else "*"
        log.debug("a client sent unknown event %.80r", event)
        return protocol.error_ack("bad_request", f"unknown event {str(event)[:80]!r}")

    async def process_socket_message(self, sid: str, message: dict[str, Any]) -> None:
        """A ``SOCKET_INFO`` envelope from a web client; ``CONNECTED`` joins a room."""
        sender = message["sender"]
        room_name = self.wx_room if sender.startswith("wx_") else sender
        if message.get("text") == "CONNECTED":
            await self.sio.enter_room(sid, room_name)
            self.add_room(sender=sender, room_name=room_name)

    async def process_custom_message(self, sid: str, message: dict[str, Any]) -> None:
        """Any other envelope from a web client; override to handle it."""

    # ------------------------------------------------------------------ event dispatch

    def add_event_listener(self, listener: Callable[[BotEvent], Any]) -> Callable[[], None]:
        """Call ``listener(event)`` for every bot event (own messages included).

        Listeners run on the server loop before the robot and must not block. Returns a
        function that removes the listener.
        """
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def _spawn(self, coro: Coroutine[Any, Any, Any], *, track: bool = True) -> asyncio.Task[Any]:
        """Start a task; tracked ones (handlers) are waited for by a graceful stop."""
        task = asyncio.get_running_loop().create_task(coro)
        tasks = self._tasks if track else self._background
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    def _seen_path(self) -> Path | None:
        return None if self.data_dir is None else self.data_dir / "seen-event-ids.json"

    def _load_seen_ids(self) -> None:
        path = self._seen_path()
        if path is None or not path.is_file():
            return
        try:
            ids = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("ignored unreadable %s: %s", path, exc)
            return
        for event_id in ids[-SEEN_EVENT_IDS:]:
            if isinstance(event_id, str):
                self._seen[event_id] = None
        log.info("remembered %d handled event ids from %s", len(self._seen), path)

    def _save_seen_ids(self) -> None:
        path = self._seen_path()
        if path is None:
            return
        _write_json(path, list(self._seen))

    async def write_snapshot(self, bot: str | None = None) -> Path:
        """Write the bot's contacts, rooms and room members to ``data_dir`` as JSON."""
        if self.data_dir is None:
            raise ConfigError("write_snapshot needs a data_dir")
        name = bot or self.only_bot()
        snapshot = await self.exec_snippet(SNAPSHOT_SNIPPET, bot=name, timeout=120.0)
        snapshot = {"bot": name, "taken_at": time.time(), **snapshot}
        path = self.data_dir / f"snapshot-{_file_safe(name)}.json"
        _write_json(path, snapshot)
        log.info(
            "wrote %s: %d contacts, %d rooms",
            path,
            len(snapshot.get("contacts", [])),
            len(snapshot.get("rooms", [])),
        )
        return path

    async def write_snapshots(self) -> list[Path]:
        """A snapshot of every connected bot (a shutdown hook of `metapuppet serve`)."""
        written = []
        for name in self.bots:
            try:
                written.append(await self.write_snapshot(name))
            except MetaPuppetError as exc:
                log.warning("no snapshot for bot %r: %s", name, exc)
        return written

    def _remember(self, event_id: str) -> bool:
        """Record an event id; False if it was seen before (a re-sent duplicate)."""
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > SEEN_EVENT_IDS:
            self._seen.popitem(last=False)
        return True

    async def handle_event(self, event: BotEvent) -> asyncio.Task[Any] | None:
        """Take one bot event: notify listeners, then queue it for the robot.

        Events of one chat are handled in arrival order; different chats run concurrently.
        Returns the task handling the event (``None`` when there is nothing to wait for: no
        robot, or a duplicate of an event already handled). A duplicate that arrives while
        the first copy is still being handled gets the first copy's task.
        """
        running = self._inflight.get(event.id)
        if running is not None:
            return running
        if not self._remember(event.id):
            log.debug("dropped duplicate event %s", event.id)
            return None
        for listener in list(self._listeners):
            try:
                result = listener(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("event listener %r failed", listener)
        if self.robot is None:
            return None
        if (
            event.name == "message"
            and event.payload.get("self")
            and not self.robot.handle_self_messages
        ):
            return None  # the bot's own message: listeners saw it; nothing for the robot
        queue_slots = self._queue_slots
        if queue_slots is not None:
            # a full queue holds the event here, so its acknowledgement waits and the Node
            # client keeps it in its outbox: back-pressure, not loss
            await queue_slots.acquire()
        key = (event.bot, _chat_of(event))
        previous = self._chat_tails.get(key)
        task = self._spawn(self._after(previous, self._dispatch(event)))
        self._chat_tails[key] = task
        self._inflight[event.id] = task
        if queue_slots is not None:
            task.add_done_callback(lambda _: queue_slots.release())

        def forget(done: asyncio.Task[Any]) -> None:
            if self._chat_tails.get(key) is done:
                del self._chat_tails[key]
            self._inflight.pop(event.id, None)
            if done.cancelled():
                # cut off by a shutdown deadline: not handled, so a re-sent copy must run
                self._seen.pop(event.id, None)

        task.add_done_callback(forget)
        return task

    @staticmethod
    async def _after(previous: asyncio.Task[None] | None, coro: Awaitable[None]) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        await coro

    async def call_handler(self, handler: Callable[..., Any], *args: Any) -> Any:
        """Call a user handler: coroutines on the loop, plain functions in the thread pool."""
        if inspect.iscoroutinefunction(handler):
            return await handler(*args)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._pool, handler, *args)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _call_robot(self, hook: str, view: Any) -> Any:
        """Hand an event to the robot: its routed handlers and dialogs, else the hook."""
        robot = self.robot
        route_event = getattr(robot, "route_event", None)
        if route_event is not None:
            return await route_event(self, hook, view)
        return await self.call_handler(getattr(robot, hook), view)

    async def _dispatch(self, event: BotEvent) -> None:
        if self._handler_slots is None:
            await self._dispatch_now(event)
            return
        async with self._handler_slots:
            await self._dispatch_now(event)

    async def _dispatch_now(self, event: BotEvent) -> None:
        robot = self.robot
        assert robot is not None
        try:
            if event.name == "message":
                await self._dispatch_message(event)
            elif event.name == "friendship":
                friendship = Friendship(self, event.bot, event.payload)
                reply = await self._call_robot("on_friendship", friendship)
                await self.send_reply(reply, to=friendship.contact.id, bot=event.bot, room=False)
            elif event.name == "room-invite":
                invitation = RoomInvitation(self, event.bot, event.payload)
                await self._call_robot("on_room_invite", invitation)
            elif event.name in ("room-join", "room-leave", "room-topic"):
                room_event = RoomEvent(self, event.bot, event.name, event.payload)
                hook = {
                    "room-join": "on_room_join",
                    "room-leave": "on_room_leave",
                    "room-topic": "on_room_topic",
                }[event.name]
                reply = await self._call_robot(hook, room_event)
                await self.send_reply(reply, to=room_event.room.id, bot=event.bot, room=True)
            else:
                await self.call_handler(robot.on_bot_event, event)
        except Exception as exc:
            log.exception("handling %s event %s of bot %r failed", event.name, event.id, event.bot)
            try:
                await self.call_handler(robot.on_error, exc, event)
            except Exception:
                log.exception("the robot's on_error hook failed too")

    async def _dispatch_message(self, event: BotEvent) -> None:
        robot = self.robot
        assert robot is not None
        message = Message(self, event.bot, event.payload)
        if message.is_self and not robot.handle_self_messages:
            return
        if await self._maybe_debug_command(message):
            return
        reply = await self._call_robot("on_message", message)
        await self.send_reply(
            reply, to=message.conversation_id, bot=event.bot, room=message.room is not None
        )

    async def _maybe_debug_command(self, message: Message) -> bool:
        """The original ``$debug$`` chat command: code from chat, for listed admins only."""
        lines = message.text.split("\n")
        if len(lines) < 2 or lines[0].strip().lower() != "$debug$":
            return False
        talker = message.talker.id
        if not (self.debug_mode and talker in self.admin_contacts):
            log.warning(
                "ignored a $debug$ command from %r: it needs debug_mode and the talker in "
                "admin_contacts; handled as text",
                talker,
            )
            return False
        code = "\n".join(lines[1:])
        try:
            result: Any = await self.exec_snippet(code, bot=message.bot)
            answer = f"$debug$ result: {result!r}"
        except MetaPuppetError as exc:
            answer = f"$debug$ failed: {exc}"
        log.info("$debug$ command from admin %r: %s", talker, answer[:200])
        await message.say(answer[:2000])
        return True


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "bot"


def _write_json(path: Path, data: Any) -> None:
    """Write atomically: a crash leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(temporary, path)


def _chat_of(event: BotEvent) -> str:
    payload = event.payload
    if event.name == "message":
        if payload.get("roomId"):
            return str(payload["roomId"])
        if payload.get("self"):
            return str(payload.get("listenerId") or payload.get("talkerId") or "")
        return str(payload.get("talkerId") or payload.get("fromId") or "")
    if event.name == "friendship":
        return f"friend:{payload.get('contactId')}"
    if event.name.startswith("room-"):
        return str(payload.get("roomId") or payload.get("id") or event.name)
    return f"bot:{event.name}"
