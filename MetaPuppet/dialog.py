"""Dialogs: a multi-step conversation written as one async function.

::

    @bot.dialog(trigger="开始")
    async def accumulator(d):
        n = await d.ask_int("您需要累加几个数字?", retry="请输入整数")
        total = 0
        for i in range(n):
            total += await d.ask_int(f"请输入第{i+1}个数字, 目前累加和:{total}")
        await d.say(f"累加结束,累加和: {total}")

**How it works: a replay journal.** A dialog keeps no live coroutine between messages.
Its state in the store is the trigger message plus a journal of what happened: each answer
(with the id of the message that gave it), each ``say`` and each ``once`` result. When an
answer arrives, the server takes the conversation's lock, appends the answer and runs the
function again from the top: ``ask`` returns journalled answers at once, ``say`` does not
send again, ``once`` returns its saved result, until the function reaches the first new
question. That question is saved, *then* sent, and the run stops there.

So every server process can continue any dialog, a restarted server continues at the same
question, and two processes sharing a Redis store advance one dialog exactly once per
answer (the lock serialises them; an answer whose message id is already in the journal is a
duplicate and ignored). The price: code between questions runs again on each step, so it
must be deterministic. Plain computation (``total += ...``) is; for anything with an effect
outside the dialog (writing a database, calling an API, drawing a random number) use
``await d.once(func, *args)``, which runs ``func`` once ever and replays its saved result.
``d.say`` and the questions are guarded the same way. Replay checks each step against the
journal and ends the dialog with :class:`DialogReplayError` if the code took another path
(bump ``version=`` when you change a dialog's steps; old conversations are then dropped).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from .errors import MetaPuppetError
from .router import CONTINUE, FlowControl, Invocation, Route, call_function, invoke, message_text
from .storage import BaseStorage, StorageKey
from .wechaty import Message

if TYPE_CHECKING:
    from .server import SocketServerCore

log = logging.getLogger("MetaPuppet.dialog")
T = TypeVar("T")

#: Seconds a dialog waits for an answer before it ends (the old wechat-dialog trick's value).
DEFAULT_TIMEOUT: Final = 60.0
DEFAULT_CANCEL_WORDS: Final = ("取消", "cancel")
DEFAULT_CANCEL_MESSAGE: Final = "已取消"
#: Longer dialogs replay too much on every step; split them or keep data in your own store.
MAX_JOURNAL: Final = 500
#: A stored state outlives its deadline by this much, so a late answer can still be told
#: that the dialog timed out.
EXPIRED_GRACE: Final = 600.0
STATE_FORMAT: Final = 1
#: An ended dialog leaves a marker this long, naming the message that ended it, so a copy
#: of that message reaching another server process is not taken for a new message.
ENDED_MARKER_TTL: Final = 120.0

YES_WORDS: Final = frozenset(
    {"是", "是的", "好", "好的", "对", "对的", "确认", "确定", "要", "可以", "嗯", "y", "yes", "ok"}
)
NO_WORDS: Final = frozenset({"否", "不", "不是", "不要", "不用", "不行", "算了", "n", "no"})


class DialogError(MetaPuppetError):
    """A dialog could not go on."""


class DialogReplayError(DialogError):
    """Replaying a dialog's journal took another path than the first run did."""


class SideEffectFailed(DialogError):
    """A ``d.once`` function raised (then, and on every replay of that step)."""


class SideEffectInterrupted(DialogError):
    """A ``d.once`` function was running when its process stopped: it may or may not
    have finished, and it is never run a second time."""


class UnexpectedAnswer(FlowControl):
    """Raise in a dialog to end it and route the message that was just received as a new
    event (the old wechat-dialog trick's ``UnexpectAnswer``); ``reply`` is sent first::

        if answer not in menu:
            raise UnexpectedAnswer("好的,先不点了")
    """

    def __init__(self, reply: Any = None) -> None:
        super().__init__(reply)
        self.reply = reply


class _Suspend(BaseException):
    """Unwinds a dialog function at a new question (user code catching Exception never
    sees it; ``finally`` blocks do run)."""


_WAITING: Final[Any] = object()  # a step ended at a new question


@dataclass(frozen=True, eq=False)
class DialogSpec:
    """A registered dialog: its function and settings."""

    name: str
    func: Callable[[Dialog], Awaitable[Any]]
    version: int | str = 1
    timeout: float | None = DEFAULT_TIMEOUT
    timeout_message: Any = None
    cancel_words: frozenset[str] = frozenset(DEFAULT_CANCEL_WORDS)
    cancel_message: Any = DEFAULT_CANCEL_MESSAGE
    error_message: Any = None


def _fingerprint(something: Any) -> str:
    if something is None:
        text = ""
    elif isinstance(something, str):
        text = something
    else:
        text = f"{type(something).__name__}:{getattr(something, 'name', '')}"
    return f"{zlib.crc32(text.encode('utf-8', 'surrogatepass')):08x}"


def _function_name(func: Callable[..., Any]) -> str:
    return str(getattr(func, "__qualname__", None) or repr(func))


class Dialog:
    """The ``d`` a dialog function receives: ask questions, say things, guard side effects.

    ``d.message`` is the message that started the dialog; ``d.bot``, ``d.chat`` (the
    contact or room) and ``d.user`` (the participant) say where it runs.
    """

    def __init__(
        self,
        manager: DialogManager,
        spec: DialogSpec,
        key: StorageKey,
        state: dict[str, Any],
        server: SocketServerCore,
    ) -> None:
        self.name = spec.name
        self.key = key
        self.bot = key.bot
        self.chat = key.chat
        self.user = key.user
        self.message = Message(server, key.bot, state["trigger"])
        self._manager = manager
        self._spec = spec
        self._state = state
        self._journal: list[dict[str, Any]] = state["journal"]
        self._cursor = 0
        self._server = server

    @property
    def replaying(self) -> bool:
        """True while the dialog re-runs steps it has done before (nothing is sent)."""
        return self._cursor < len(self._journal)

    @property
    def is_room(self) -> bool:
        return bool(self._state["trigger"].get("roomId"))

    def _replay(self, kind: str, fingerprint: str, what: str) -> dict[str, Any] | None:
        if self._cursor >= len(self._journal):
            return None
        entry = self._journal[self._cursor]
        if entry.get("k") != kind or entry.get("h") != fingerprint:
            raise DialogReplayError(
                f"dialog {self.name!r} took another path on replay: step {self._cursor + 1} "
                f"is now {what}, unlike the first run. Keep the code between questions "
                "deterministic (wrap random, time and I/O in d.once) and bump version= when "
                "you change a dialog's steps."
            )
        self._cursor += 1
        return entry

    def _append(self, entry: dict[str, Any]) -> None:
        if len(self._journal) >= MAX_JOURNAL:
            raise DialogError(
                f"dialog {self.name!r} reached {MAX_JOURNAL} steps: split it into shorter dialogs"
            )
        self._journal.append(entry)
        self._cursor += 1

    async def ask(self, prompt: Any = None, *, timeout: float | None = None) -> str:
        """Send ``prompt`` (unless None) and return the participant's answer text.

        ``timeout`` overrides the dialog's timeout for this question. Cancel words end
        the dialog before this returns.
        """
        fingerprint = _fingerprint(prompt)
        entry = self._replay("a", fingerprint, f"the question {prompt!r}")
        if entry is not None:
            return str(entry["t"])
        await self._manager._ask(self, prompt, fingerprint, timeout)
        raise _Suspend

    async def ask_int(
        self,
        prompt: Any,
        *,
        retry: Any = None,
        attempts: int = 3,
        min: int | None = None,  # noqa: A002 - reads best at the call site
        max: int | None = None,  # noqa: A002
    ) -> int:
        """Ask for a whole number. A wrong answer is asked again with ``retry`` (up to
        ``attempts`` times); without ``retry``, or after that, :class:`UnexpectedAnswer`
        ends the dialog and the answer is routed as a new message."""

        def parse(text: str) -> int | None:
            try:
                value = int(text)
            except ValueError:
                return None
            if (min is not None and value < min) or (max is not None and value > max):
                return None
            return value

        return await self._ask_until(prompt, retry, attempts, parse)

    async def ask_yes_no(
        self,
        prompt: Any,
        *,
        retry: Any = None,
        attempts: int = 3,
        yes: Iterable[str] = YES_WORDS,
        no: Iterable[str] = NO_WORDS,
    ) -> bool:
        """Ask a yes/no question (是/好/y/yes... or 否/不/n/no...); wrong answers as in
        :meth:`ask_int`."""
        yes_words = frozenset(w.casefold() for w in yes)
        no_words = frozenset(w.casefold() for w in no)
        return await self._ask_until(
            prompt,
            retry,
            attempts,
            lambda text: True if text in yes_words else False if text in no_words else None,
        )

    async def ask_choice(
        self, prompt: Any, choices: Iterable[str], *, retry: Any = None, attempts: int = 3
    ) -> str:
        """Ask until the answer is one of ``choices`` (compared without case); returns the
        choice as written in ``choices``."""
        options = {c.casefold(): c for c in choices}
        return await self._ask_until(prompt, retry, attempts, options.get)

    async def _ask_until(
        self, prompt: Any, retry: Any, attempts: int, parse: Callable[[str], T | None]
    ) -> T:
        answer = await self.ask(prompt)
        wrong = 0
        while True:
            value = parse(answer.strip().casefold())
            if value is not None:
                return value
            if retry is None or wrong >= attempts:
                raise UnexpectedAnswer()
            wrong += 1
            answer = await self.ask(retry)

    async def say(self, something: Any) -> None:
        """Send text, a FileBox, ... into the dialog's chat (once, never again on replay)."""
        fingerprint = _fingerprint(something)
        if self._replay("s", fingerprint, f"saying {something!r}") is not None:
            return
        self._append({"k": "s", "h": fingerprint})
        await self._manager._send(self._server, self.key, self.is_room, something)

    async def once(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``func(*args, **kwargs)`` once ever and return its result (saved in the
        journal, so it must be JSON data); replays return the saved result.

        The step is saved before ``func`` runs and after it returns: should the process
        stop in between, the dialog ends with :class:`SideEffectInterrupted` rather than
        risk running it twice. If ``func`` raises, :class:`SideEffectFailed` is raised
        (now and on every replay), chained to the original error.
        """
        name = _function_name(func)
        fingerprint = _fingerprint(name)
        entry = self._replay("o", fingerprint, f"d.once({name})")
        if entry is not None:
            if "r" in entry:
                return entry["r"]
            if "x" in entry:
                raise SideEffectFailed(str(entry["x"]))
            raise SideEffectInterrupted(
                f"dialog {self.name!r}: {name} was interrupted by a restart; it is not run again"
            )
        entry = {"k": "o", "h": fingerprint}
        self._append(entry)
        await self._manager._save(self, pending=None)
        try:
            call = functools.partial(func, **kwargs) if kwargs else func
            result = await call_function(self._server, call, *args)
            json.dumps(result)
        except Exception as exc:
            short = getattr(func, "__name__", name)
            entry["x"] = f"{short} failed: {type(exc).__name__}: {exc}"
            await self._manager._save(self, pending=None)
            raise SideEffectFailed(entry["x"]) from exc
        entry["r"] = result
        await self._manager._save(self, pending=None)
        return result


class DialogManager:
    """Runs a robot's dialogs over a store (one per robot; ``robot.dialogs``)."""

    def __init__(self, robot: Any, store: BaseStorage, *, lock_wait: float = 30.0) -> None:
        self.robot = robot
        self.store = store
        self.lock_wait = lock_wait
        self._timers: dict[StorageKey, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._waiting: dict[StorageKey, dict[str, Any]] = {}

    @staticmethod
    def key_of(message: Message) -> StorageKey:
        """One dialog per participant of a chat: (bot, contact or room, talker)."""
        return StorageKey(message.bot, message.conversation_id, message.talker.id)

    def in_progress(self) -> list[dict[str, Any]]:
        """The dialogs this process asked a question in and waits on (for the dashboard,
        ``server.dialog_provider``); other processes sharing the store list their own."""
        return [dict(item) for item in self._waiting.values()]

    async def active(self, message: Message) -> str | None:
        """The name of the dialog the message's sender is in, if any."""
        state = await self.store.get(self.key_of(message))
        return None if state is None else str(state.get("dialog"))

    # ---------------------------------------------------------------- entry points

    async def feed(self, server: SocketServerCore, message: Message) -> Any:
        """Give ``message`` to its sender's active dialog; returns the reply, or
        :data:`CONTINUE` when there is no dialog (or it let the message go)."""
        key = self.key_of(message)
        state = await self.store.get(key)
        if state is None:  # the common case: no lock needed
            return CONTINUE
        if state.get("ended"):
            return None if message.id in state.get("m", ()) else CONTINUE
        async with self.store.lock(key, self.lock_wait):
            state = await self.store.get(key)
            if state is None:
                return CONTINUE
            if state.get("ended"):
                return None if message.id in state.get("m", ()) else CONTINUE
            return await self._answer(server, key, state, message)

    async def start(self, spec: DialogSpec, invocation: Invocation) -> Any:
        """Start ``spec`` for the message in ``invocation`` (the trigger handler)."""
        message: Message = invocation.event
        server = invocation.server
        if server is None:
            raise RuntimeError(f"dialog {spec.name!r} needs a server to talk through")
        key = self.key_of(message)
        async with self.store.lock(key, self.lock_wait):
            state = await self.store.get(key)
            if state is not None and state.get("ended"):
                if message.id in state.get("m", ()):
                    return None  # a copy of the message that ended the last dialog
                state = None
            if state is not None:
                if state.get("trigger", {}).get("id") == message.id:
                    return None  # the same trigger delivered twice
                # another process started a dialog for this person just now: it gets the message
                return await self._answer(server, key, state, message)
            state = {
                "format": STATE_FORMAT,
                "id": uuid.uuid4().hex,
                "dialog": spec.name,
                "version": spec.version,
                "trigger": message.payload,
                "journal": [],
                "pending": None,
                "asked": 0,
                "saved": False,
            }
            return await self._run(server, spec, None, key, state, invocation)

    # ---------------------------------------------------------------- steps

    async def _answer(
        self, server: SocketServerCore, key: StorageKey, state: dict[str, Any], message: Message
    ) -> Any:
        """Advance a stored dialog with ``message``; the caller holds the key's lock."""
        name = str(state.get("dialog"))
        route = self.robot.router.find_dialog(name)
        if route is None or route.handler.dialog is None:
            log.warning("dropped a stored dialog %r: no dialog of that name is registered", name)
            await self._end(key)
            return CONTINUE
        spec = route.handler.dialog
        if state.get("version") != spec.version or state.get("format") != STATE_FORMAT:
            log.info(
                "dropped a dialog %r of version %r: the code is at version %r",
                name,
                state.get("version"),
                spec.version,
            )
            await self._end(key)
            return CONTINUE
        seen = {entry.get("m") for entry in state["journal"]} | {state["trigger"].get("id")}
        if message.id and message.id in seen:
            log.debug("ignored message %s: dialog %r has already taken it", message.id, name)
            return None
        pending = state.get("pending")
        if pending is not None and pending.get("d") is not None and pending["d"] <= time.time():
            await self._end(key, state, message.id)
            if spec.timeout_message is not None:
                await self._send(
                    server, key, bool(state["trigger"].get("roomId")), spec.timeout_message
                )
            return CONTINUE
        text = message_text(message)
        if text.casefold() in spec.cancel_words:
            await self._end(key, state, message.id)
            log.debug("dialog %r cancelled by %s", name, key.user)
            return spec.cancel_message
        if pending is not None:
            state["journal"].append({"k": "a", "h": pending["h"], "t": text, "m": message.id})
        # pending is None only after a restart in the middle of a step (see Dialog.once): the
        # run below picks the dialog up again and asks its next question
        invocation = Invocation("message", message, f"dialog {name}", self.robot, server, {})
        return await self._run(server, spec, route, key, state, invocation)

    async def _run(
        self,
        server: SocketServerCore,
        spec: DialogSpec,
        route: Route | None,
        key: StorageKey,
        state: dict[str, Any],
        invocation: Invocation,
    ) -> Any:
        """Run the dialog function over its journal to its next question (or its end)."""
        self._cancel_timer(key)
        d = Dialog(self, spec, key, state, server)
        ending = getattr(invocation.event, "id", None)

        async def step() -> Any:
            try:
                return await spec.func(d)
            except _Suspend:
                return _WAITING

        try:
            if route is None:  # the trigger handler's own middleware already wraps us
                result = await step()
            else:
                result = await invoke(route.chain, invocation, step)
        except UnexpectedAnswer as unexpected:
            await self._end(key, state, ending)
            if unexpected.reply is not None:
                await self._send(server, key, d.is_room, unexpected.reply)
            return CONTINUE
        except Exception:
            await self._end(key, state, ending)
            if spec.error_message is not None:
                try:
                    await self._send(server, key, d.is_room, spec.error_message)
                except Exception:
                    log.exception("could not tell %s that dialog %r failed", key.user, spec.name)
            raise
        if result is _WAITING:
            return None
        await self._end(key, state, ending)
        return result

    async def _ask(self, d: Dialog, prompt: Any, fingerprint: str, timeout: float | None) -> None:
        """Save the dialog as waiting for an answer to ``prompt``, then ask it."""
        limit = d._spec.timeout if timeout is None else timeout
        deadline = None if limit is None else time.time() + limit
        d._state["asked"] = int(d._state.get("asked", 0)) + 1
        await self._save(d, pending={"h": fingerprint, "n": d._state["asked"], "d": deadline})
        self._waiting[d.key] = {
            "bot": d.bot,
            "chat": d.chat,
            "user": d.user,
            "dialog": d.name,
            "question": prompt if isinstance(prompt, str) else None,
            "asked": d._state["asked"],
            "deadline": deadline,
        }
        if prompt is not None:
            await self._send(d._server, d.key, d.is_room, prompt)
        if limit is not None:
            self._arm_timer(d._server, d.key, d._state, limit)

    async def _save(self, d: Dialog, *, pending: dict[str, Any] | None) -> None:
        state = d._state
        state["pending"] = pending
        state["saved"] = True
        ttl = None
        if pending is not None and pending.get("d") is not None:
            ttl = max(1.0, pending["d"] - time.time()) + EXPIRED_GRACE
        elif d._spec.timeout is not None:
            ttl = d._spec.timeout + EXPIRED_GRACE
        await self.store.set(d.key, state, ttl=ttl)

    async def _end(
        self, key: StorageKey, state: dict[str, Any] | None = None, message_id: str | None = None
    ) -> None:
        """Forget the dialog; ``message_id`` (the message that ended it) is remembered for a
        while, so a copy of it delivered to another process is ignored."""
        self._cancel_timer(key)
        self._waiting.pop(key, None)
        if state is not None and not state.get("saved"):
            return  # never stored: ended within its first step
        if message_id:
            marker = {"ended": True, "id": (state or {}).get("id"), "m": [message_id]}
            await self.store.set(key, marker, ttl=ENDED_MARKER_TTL)
        else:
            await self.store.delete(key)

    async def _send(
        self, server: SocketServerCore, key: StorageKey, room: bool, something: Any
    ) -> None:
        await server.send_reply(something, to=key.chat, bot=key.bot, room=room)

    # ---------------------------------------------------------------- timeouts

    def _arm_timer(
        self, server: SocketServerCore, key: StorageKey, state: dict[str, Any], delay: float
    ) -> None:
        self._cancel_timer(key)
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(
            delay, self._time_is_up, server, key, state["id"], state["asked"]
        )

    def _cancel_timer(self, key: StorageKey) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _time_is_up(
        self, server: SocketServerCore, key: StorageKey, dialog_id: str, asked: int
    ) -> None:
        self._timers.pop(key, None)
        task = asyncio.get_running_loop().create_task(self._expire(server, key, dialog_id, asked))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _expire(
        self, server: SocketServerCore, key: StorageKey, dialog_id: str, asked: int
    ) -> None:
        try:
            if key.bot not in server.bots:
                # this server is gone (or the bot is offline): whoever gets the participant's
                # next message ends the dialog then and says it timed out
                return
            async with self.store.lock(key, self.lock_wait):
                state = await self.store.get(key)
                if state is None or state.get("id") != dialog_id or state.get("asked") != asked:
                    # answered meanwhile, here or by another process sharing the store
                    if self._waiting.get(key, {}).get("asked") == asked:
                        del self._waiting[key]
                    return
                await self.store.delete(key)
                self._waiting.pop(key, None)
            route = self.robot.router.find_dialog(str(state.get("dialog")))
            spec = route.handler.dialog if route is not None else None
            log.debug("dialog %r of %s timed out", state.get("dialog"), key.user)
            if spec is not None and spec.timeout_message is not None:
                room = bool(state["trigger"].get("roomId"))
                await self._send(server, key, room, spec.timeout_message)
        except Exception:
            log.exception("ending a timed-out dialog of %s failed", key.user)

    async def aclose(self) -> None:
        """Cancel pending timeout timers (the dialogs stay in the store)."""
        for key in list(self._timers):
            self._cancel_timer(key)
        for task in list(self._tasks):
            task.cancel()
