"""The event pipeline: every bot event from a puppet to the robot, in one place.

``receive(client, data)`` is the single way in (the model is aiogram's
``feed_update(bot, update)``): validate the envelope, note the puppet's liveness, drop
duplicates by id, tell the listeners, then queue the event for the robot. Events of one
chat (:func:`~MetaPuppet.types.chat_of`) are handled in arrival order, different chats
concurrently; past ``max_queued_events`` the acknowledgement waits, so the Node client
keeps the event in its outbox (back-pressure, never loss). Each event goes to the robot
hook the one table (:data:`~MetaPuppet.types.ROUTED_EVENTS`) names, and the reply goes
where that table says.

Each handling runs in a :class:`~MetaPuppet.sends.Handling` (send ids that are the same
when it runs again). For an event from a Node client the reply travels in the event's
acknowledgement as typed actions, recorded in the :class:`~MetaPuppet.seen.SeenStore`
before the acknowledgement goes, so a copy sent again after a crash gets the same answer
instead of running again. A handling cut short because its bot's connection went away is
not recorded: the client sends the event again once it is back, and it runs again (its
sends that were made are answered from the Node client's send records).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Final

from . import protocol, sends
from ._files import SaveFailure
from ._sync import HandlerPool
from .client import PuppetClient
from .dispatch.host import DispatchHost
from .errors import MetaPuppetError, ProtocolError, PuppetNotConnected
from .presence import ClientInfo, Presence
from .protocol import BotEvent
from .seen import MAX_IDS, FileSeenStore, MemorySeenStore, SeenStore
from .types import ROUTED_EVENTS, Message, chat_of

__all__ = ["SEEN_EVENT_IDS", "EventPipeline", "Listener", "Remover"]

log = logging.getLogger("MetaPuppet.server")

SEEN_EVENT_IDS: Final = MAX_IDS
#: how often a re-sent event that joined a handling cut short by a disconnect runs again
_RETRIES: Final = 3

Listener = Callable[[BotEvent], Any]
#: removes what was added (an event listener)
Remover = Callable[[], None]
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
        self._robot: Any = None
        #: where handled event ids are kept across restarts (None: nothing is written)
        self.data_dir = data_dir
        #: the handled events; None: a file store in ``data_dir`` (or memory) at start
        self.seen_store: SeenStore | None = None
        self.seen: SeenStore = MemorySeenStore()
        #: whether replies travel in the event's acknowledgement (off in cluster mode: a
        #: copy another process dedupes is answered without them, so they go directly)
        self.collect_replies = True
        #: told when the wish for the bot's own messages changes (the transport tells the
        #: Node clients, which forward them only while someone wants them)
        self.on_self_messages: Callable[[bool], None] | None = None
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
        self._self_listeners: list[Listener] = []
        self._self_interests: set[str] = set()
        self._wants_self = False
        self._stall_hooks: list[StallHook] = []
        self._inflight: dict[str, asyncio.Task[sends.Handling | None]] = {}
        self._chat_tails: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._handler_slots: asyncio.Semaphore | None = None
        self._queue_slots: asyncio.Semaphore | None = None

    # ------------------------------------------------------------------ life cycle

    @property
    def robot(self) -> Any:
        return self._robot

    @robot.setter
    def robot(self, robot: Any) -> None:
        self._robot = robot
        self._self_interest_changed()

    def start(self) -> None:
        """Begin taking events (on the server loop)."""
        self._handler_slots = asyncio.Semaphore(self.max_concurrent_handlers)
        self._queue_slots = asyncio.Semaphore(self.max_queued_events)
        self.accepting = True
        if self.seen_store is not None:
            self.seen = self.seen_store
        elif self.data_dir is not None:
            self.seen = FileSeenStore(self.data_dir)
        else:
            self.seen = MemorySeenStore()
        self.seen.open()
        self._wants_self = self.wants_self_messages()
        if self.on_self_messages is not None:
            self.on_self_messages(self._wants_self)  # before any client connects
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
        seen = self.seen.close()
        if seen is not None:
            failures.append(seen)
        budgets = self.api.budgets.flush()
        if budgets is not None:
            failures.append(budgets)
        for task in list(self._background):
            task.cancel()
        return failures

    def add_listener(self, listener: Listener, *, self_messages: bool = True) -> Callable[[], None]:
        """Call ``listener(event)`` for every bot event; returns its remover.

        With ``self_messages`` (the default) the listener also wants the bot's own
        messages, so the Node clients forward them while it is registered; pass False for
        a listener that ignores them, and they are not even sent.
        """
        self._listeners.append(listener)
        if self_messages:
            self._self_listeners.append(listener)
            self._self_interest_changed()

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)
            if listener in self._self_listeners:
                self._self_listeners.remove(listener)
                self._self_interest_changed()

        return remove

    def want_self_messages(self, who: str, on: bool) -> None:
        """Say whether ``who`` (the web hub, say) wants the bot's own messages."""
        if on:
            self._self_interests.add(who)
        else:
            self._self_interests.discard(who)
        self._self_interest_changed()

    def wants_self_messages(self) -> bool:
        """Whether anything wants the bot's own messages: a listener registered for them,
        a web subscription or stream that could match one, or a robot with
        ``handle_self_messages``. Without any, the Node clients do not forward them."""
        return bool(
            self._self_listeners
            or self._self_interests
            or getattr(self._robot, "handle_self_messages", False)
        )

    def _self_interest_changed(self) -> None:
        wants = self.wants_self_messages()
        if wants != self._wants_self:
            self._wants_self = wants
            if self.on_self_messages is not None:
                self.on_self_messages(wants)

    def on_stalled(self, hook: StallHook) -> StallHook:
        self._stall_hooks.append(hook)
        return hook

    # ------------------------------------------------------------------ events in

    async def receive(self, info: ClientInfo, data: Any) -> dict[str, Any]:
        """An ``event`` envelope from the puppet ``info``; returns its acknowledgement.

        The acknowledgement waits until the event was handled and recorded, and carries the
        reply's typed actions: if this process dies first, the client still holds the event
        and sends it again, and the record answers the copy the same way.
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
        for _ in range(_RETRIES):
            task, recorded = await self._take(event, info)
            if task is None:
                return protocol.event_ack(recorded)
            await asyncio.wait([task])
            if task.cancelled():
                return protocol.error_ack("unavailable", "handling was cut short; send it again")
            handling = task.result()
            if handling is None or not handling.retry:
                return protocol.event_ack(handling.actions if handling is not None else None)
            if info.disconnected_at is not None:
                break  # this copy's connection is gone too; the client sends it again
        return protocol.error_ack(
            "unavailable", "the bot disconnected while the event was handled; send it again"
        )

    async def feed(self, event: BotEvent) -> asyncio.Task[Any] | None:
        """Take one bot event: notify listeners, then queue it for the robot.

        Returns the task handling the event (``None`` when there is nothing to wait for: no
        robot, the bot's own message, or a duplicate of an event already handled). A
        duplicate that arrives while the first copy is still being handled gets the first
        copy's task. Replies are sent at once (:meth:`receive` collects them into the
        acknowledgement instead).
        """
        task, _ = await self._take(event, None)
        return task

    async def _take(
        self, event: BotEvent, source: ClientInfo | None
    ) -> tuple[asyncio.Task[sends.Handling | None] | None, list[dict[str, Any]] | None]:
        """Queue ``event`` for the robot: its task, or (None, the recorded actions)."""
        running = self._inflight.get(event.id)
        if running is not None:
            return running, None
        if event.name != "heartbeat":
            recorded = await self.seen.lookup(event.id)
            if recorded is not None:
                log.debug("dropped duplicate event %s", event.id)
                return None, recorded
        self.api.note_event(event)
        for listener in list(self._listeners):
            try:
                result = listener(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("event listener %r failed", listener)
        robot = self._robot
        if (
            event.name == "heartbeat"
            or robot is None
            or (
                event.name == "message"
                and event.payload.get("self")
                and not getattr(robot, "handle_self_messages", False)
            )
        ):
            # the bot's own message, or no robot: listeners saw it; nothing for the robot
            if event.name != "heartbeat":
                await self.seen.record(event.id, None)
            return None, None
        queue_slots = self._queue_slots
        if queue_slots is not None:
            # a full queue holds the event here, so its acknowledgement waits and the Node
            # client keeps it in its outbox: back-pressure, not loss
            await queue_slots.acquire()
        key = (event.bot, chat_of(event.name, event.payload) or f"bot:{event.name}")
        previous = self._chat_tails.get(key)
        task = self._spawn(self._after(previous, self._dispatch(event, source)))
        self._chat_tails[key] = task
        self._inflight[event.id] = task
        if queue_slots is not None:
            task.add_done_callback(lambda _: queue_slots.release())

        def forget(done: asyncio.Task[Any]) -> None:
            if self._chat_tails.get(key) is done:
                del self._chat_tails[key]
            self._inflight.pop(event.id, None)

        task.add_done_callback(forget)
        return task, None

    @staticmethod
    async def _after(
        previous: asyncio.Task[Any] | None, coro: Awaitable[sends.Handling | None]
    ) -> sends.Handling | None:
        if previous is not None:
            await asyncio.wait([previous])
        return await coro

    async def _dispatch(self, event: BotEvent, source: ClientInfo | None) -> sends.Handling:
        # a task of its own: the handling is this task's (and its children's) context
        collect = source is not None and self.collect_replies
        handling = sends.open_handling(event.id, event.bot, collect=collect)
        handling.source = source
        started = time.perf_counter()
        if self._handler_slots is None:
            error = await self._handle(event, handling)
        else:
            async with self._handler_slots:
                started = time.perf_counter()
                error = await self._handle(event, handling)
        if self.observer is not None:
            self.observer.handled(event, time.perf_counter() - started, error)
        for hook in self.after_handled:
            hook(event)
        handling.open = False
        if not handling.retry:
            await self.seen.record(event.id, handling.actions)
        return handling

    async def _handle(self, event: BotEvent, handling: sends.Handling) -> Exception | None:
        robot = self._robot
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
            source = handling.source
            if (
                isinstance(exc, PuppetNotConnected)
                and source is not None
                and source.disconnected_at is not None
            ):
                # its bot went away mid-handling: the client sends the event again once it
                # is back, and it runs again then (the sends it made are not repeated)
                handling.retry = True
                log.warning(
                    "handling %s event %s of bot %r was cut short: the bot disconnected (%s); "
                    "it runs again when the client sends it again",
                    event.name,
                    event.id,
                    event.bot,
                    exc,
                )
                return exc
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

    def _spawn(self, coro: Coroutine[Any, Any, Any], *, track: bool = True) -> asyncio.Task[Any]:
        """Start a task; tracked ones (handlers) are waited for by :meth:`drain`."""
        task = asyncio.get_running_loop().create_task(coro)
        tasks = self.tasks if track else self._background
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task
