"""The event pipeline: every bot event from a puppet to the robot, in one place.

``receive(client, data)`` is the single way in (the model is aiogram's
``feed_update(bot, update)``): validate the envelope, note the puppet's liveness, drop
duplicates by id, tell the listeners, then queue the event for the robot. Events of one
chat (:func:`~MetaPuppet.types.chat_of`) are handled in arrival order, different chats
concurrently; past ``max_queued_events`` the acknowledgement waits, so the Node client
keeps the event in its outbox (back-pressure, never loss). Each event goes to the robot
hook the one table (:data:`~MetaPuppet.types.ROUTED_EVENTS`) names, and the reply goes
where that table says.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Final

from . import protocol
from ._files import SaveFailure, write_json
from ._sync import HandlerPool
from .client import PuppetClient
from .dispatch.host import DispatchHost
from .errors import MetaPuppetError, ProtocolError
from .presence import ClientInfo, Presence
from .protocol import BotEvent
from .types import ROUTED_EVENTS, Message, chat_of

__all__ = ["SEEN_EVENT_IDS", "EventPipeline"]

log = logging.getLogger("MetaPuppet.server")

SEEN_EVENT_IDS: Final = 50_000

Listener = Callable[[BotEvent], Any]
StallHook = Callable[[str, dict[str, Any]], Any]


class EventPipeline:
    """Takes bot events from the transport and hands them to ``robot``.

    ``api`` is what the views handed to the robot act through (and what replies are sent
    with); ``host`` is what routed handlers and dialogs see as the server.
    """

    def __init__(
        self,
        *,
        api: PuppetClient,
        host: DispatchHost,
        pool: HandlerPool,
        presence: Presence,
        data_dir: Path | None = None,
        max_concurrent_handlers: int = 256,
        max_queued_events: int = 10_000,
    ) -> None:
        self.api = api
        self.host = host
        self.pool = pool
        self.presence = presence
        self.robot: Any = None
        #: where handled event ids are kept across restarts (None: nothing is written)
        self.data_dir = data_dir
        self.max_concurrent_handlers = max_concurrent_handlers
        #: events accepted but not yet handled; past this, new events wait (never dropped)
        self.max_queued_events = max_queued_events
        #: the ``$debug$`` chat command runs for ``admin_contacts`` when this is on
        self.debug_mode = False
        self.admin_contacts: set[str] = set()
        #: a puppet with no sign of a working Wechaty for this long is reported stalled
        self.stall_timeout = 90.0
        self.restart_stalled_bots = False
        #: told how long each event took (``observer.handled(event, seconds, error)``)
        self.observer: Any = None
        #: called with each event once the robot handled it (and sent its reply)
        self.after_handled: list[Callable[[BotEvent], None]] = []
        #: False while stopping: new events are answered "unavailable"
        self.accepting = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._listeners: list[Listener] = []
        self._stall_hooks: list[StallHook] = []
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[Any]] = {}
        self._chat_tails: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._handler_slots: asyncio.Semaphore | None = None
        self._queue_slots: asyncio.Semaphore | None = None

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Begin taking events (on the server loop)."""
        self._handler_slots = asyncio.Semaphore(self.max_concurrent_handlers)
        self._queue_slots = asyncio.Semaphore(self.max_queued_events)
        self.accepting = True
        self._load_seen_ids()
        self._spawn(self._watch_stalls(), track=False)

    async def drain(self, deadline: float) -> None:
        """Take no new events; let running handlers finish, cancelling those that take
        longer than ``deadline`` seconds."""
        self.accepting = False
        current = asyncio.current_task()
        pending = [t for t in self.tasks if not t.done() and t is not current]
        if not pending:
            return
        _, still = await asyncio.wait(pending, timeout=deadline)
        for task in still:
            log.warning("a handler did not finish within %.1f s; cancelled", deadline)
            task.cancel()
        if still:
            await asyncio.wait(still, timeout=1.0)

    def close(self) -> list[SaveFailure]:
        """Save what must survive a restart and end the background tasks.

        Never raises for a file it cannot write (a read-only or full data directory): it
        returns what could not be saved, so the stop still completes.
        """
        failures: list[SaveFailure] = []
        path = self._seen_path()
        try:
            self._save_seen_ids()
        except OSError as exc:
            log.error("could not save the handled event ids to %s: %s", path, exc)
            failures.append(SaveFailure("the handled event ids", path, str(exc)))
        budgets = self.api.budgets.flush()
        if budgets is not None:
            failures.append(budgets)
        for task in list(self._background):
            task.cancel()
        return failures

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(event)`` for every bot event; returns its remover."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def on_stalled(self, hook: StallHook) -> StallHook:
        self._stall_hooks.append(hook)
        return hook

    # ------------------------------------------------------------------ events in

    async def receive(self, info: ClientInfo, data: Any) -> dict[str, Any]:
        """An ``event`` envelope from the puppet ``info``; returns its acknowledgement.

        The acknowledgement waits until the event was handled: if this process dies first,
        the client still holds the event and sends it again, and the id check keeps it
        from running twice.
        """
        assert info.bot is not None
        try:
            event = protocol.parse_event(data, bot=info.bot)
        except ProtocolError as exc:
            log.warning("dropped a malformed event from bot %r: %s", info.bot, exc)
            return protocol.error_ack("bad_request", str(exc))
        if event.name == "heartbeat":
            self.presence.heartbeat(info, event.payload)
            await self.feed(event)
            return protocol.ok()
        if event.name != "error":
            self.presence.alive(info)
        if not self.accepting:
            return protocol.error_ack(
                "unavailable",
                "the server is shutting down; send the event again after reconnecting",
            )
        if event.name in ("login", "logout"):
            self.presence.login(info, event.payload if event.name == "login" else None)
        task = await self.feed(event)
        if task is not None:
            await asyncio.wait([task])
            if task.cancelled():
                return protocol.error_ack("unavailable", "handling was cut short; send it again")
        return protocol.ok()

    async def feed(self, event: BotEvent) -> asyncio.Task[Any] | None:
        """Take one bot event: notify listeners, then queue it for the robot.

        Returns the task handling the event (``None`` when there is nothing to wait for: no
        robot, the bot's own message, or a duplicate of an event already handled). A
        duplicate that arrives while the first copy is still being handled gets the first
        copy's task.
        """
        running = self._inflight.get(event.id)
        if running is not None:
            return running
        if not self._remember(event.id):
            log.debug("dropped duplicate event %s", event.id)
            return None
        self.api.note_event(event)
        for listener in list(self._listeners):
            try:
                result = listener(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("event listener %r failed", listener)
        robot = self.robot
        if robot is None:
            return None
        if event.name == "message" and event.payload.get("self"):
            if not getattr(robot, "handle_self_messages", False):
                return None  # the bot's own message: listeners saw it; nothing for the robot
        queue_slots = self._queue_slots
        if queue_slots is not None:
            # a full queue holds the event here, so its acknowledgement waits and the Node
            # client keeps it in its outbox: back-pressure, not loss
            await queue_slots.acquire()
        key = (event.bot, chat_of(event.name, event.payload) or f"bot:{event.name}")
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

    async def _dispatch(self, event: BotEvent) -> None:
        started = time.perf_counter()
        if self._handler_slots is None:
            error = await self._handle(event)
        else:
            async with self._handler_slots:
                started = time.perf_counter()
                error = await self._handle(event)
        if self.observer is not None:
            self.observer.handled(event, time.perf_counter() - started, error)
        for hook in self.after_handled:
            hook(event)

    async def _handle(self, event: BotEvent) -> Exception | None:
        robot = self.robot
        try:
            kind = ROUTED_EVENTS.get(event.name)
            if kind is None:
                await self.pool.call(robot.on_bot_event, event)
                return None
            view = kind.view(self.api, event)
            if isinstance(view, Message) and await self._maybe_debug_command(view):
                return None
            route_event = getattr(robot, "route_event", None)
            if route_event is not None:
                reply = await route_event(self.host, kind.hook, view)
            else:
                reply = await self.pool.call(getattr(robot, kind.hook), view)
            target = kind.reply_to(view)
            if target is not None:
                answers = view.id if isinstance(view, Message) else None
                await self.api.send_reply(
                    reply, to=target[0], bot=event.bot, room=target[1], reply_to=answers
                )
        except Exception as exc:
            log.exception("handling %s event %s of bot %r failed", event.name, event.id, event.bot)
            try:
                await self.pool.call(robot.on_error, exc, event)
            except Exception:
                log.exception("the robot's on_error hook failed too")
            return exc
        return None

    async def _maybe_debug_command(self, message: Message) -> bool:
        """The original ``$debug$`` chat command: code from chat, for listed admins only."""
        lines = message.text.split("\n")
        if len(lines) < 2 or lines[0].strip().lower() != "$debug$":
            return False
        talker = message.talker_id
        if not (self.debug_mode and talker in self.admin_contacts):
            log.warning(
                "ignored a $debug$ command from %r: it needs debug_mode and the talker in "
                "admin_contacts; handled as text",
                talker,
            )
            return False
        code = "\n".join(lines[1:])
        try:
            result: Any = await self.api.exec_snippet(code, bot=message.bot)
            answer = f"$debug$ result: {result!r}"
        except MetaPuppetError as exc:
            answer = f"$debug$ failed: {exc}"
        log.info("$debug$ command from admin %r: %s", talker, answer[:200])
        await message.say(answer[:2000])
        return True

    # ------------------------------------------------------------------ stalls

    async def _watch_stalls(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, min(self.stall_timeout / 4, 5.0)))
            for info in self.presence.stalled(self.stall_timeout):
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
                await self.pool.call(hook, bot, details)
            except Exception:
                log.exception("on_puppet_stalled hook %r failed", hook)
        if self.restart_stalled_bots:
            try:
                await self.api.control("restart-bot", bot=bot, timeout=60.0)
                log.info("asked bot %r to restart its Wechaty", bot)
            except MetaPuppetError as exc:
                log.warning("could not restart bot %r: %s", bot, exc)

    # ------------------------------------------------------------------ seen ids

    def _remember(self, event_id: str) -> bool:
        """Record an event id; False if it was seen before (a re-sent duplicate)."""
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > SEEN_EVENT_IDS:
            self._seen.popitem(last=False)
        return True

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
        if path is not None:
            write_json(path, list(self._seen))

    def _spawn(self, coro: Coroutine[Any, Any, Any], *, track: bool = True) -> asyncio.Task[Any]:
        """Start a task; tracked ones (handlers) are waited for by :meth:`drain`."""
        task = asyncio.get_running_loop().create_task(coro)
        tasks = self.tasks if track else self._background
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task
