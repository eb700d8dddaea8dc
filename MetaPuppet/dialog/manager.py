"""DialogManager: runs a robot's dialogs over a store (``robot.dialogs``)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Final

from ..dispatch.dialog_spec import DialogSpec
from ..dispatch.filters import message_text
from ..dispatch.handlers import CONTINUE, Invocation
from ..dispatch.host import DispatchHost
from ..dispatch.middleware import invoke
from ..dispatch.router import Route
from ..storage import BaseStorage, StorageKey
from ..types import Message
from .dialog import Dialog
from .errors import Suspended, UnexpectedAnswer
from .run import DialogRun

__all__ = ["ENDED_MARKER_TTL", "EXPIRED_GRACE", "STATE_FORMAT", "DialogManager"]

log = logging.getLogger("MetaPuppet.dialog")

#: A stored state outlives its deadline by this much, so a late answer can still be told
#: that the dialog timed out.
EXPIRED_GRACE: Final = 600.0
STATE_FORMAT: Final = 1
#: An ended dialog leaves a marker this long, naming the message that ended it, so a copy
#: of that message reaching another server process is not taken for a new message.
ENDED_MARKER_TTL: Final = 120.0

_WAITING: Final[Any] = object()  # a step ended at a new question


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

    # ---------------------------------------------------------------- entry points

    async def feed(self, host: DispatchHost, message: Message) -> Any:
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
            return await self._answer(host, key, state, message)

    async def start(self, spec: DialogSpec, invocation: Invocation) -> Any:
        """Start ``spec`` for the message in ``invocation`` (the trigger handler)."""
        message: Message = invocation.event
        host = invocation.server
        if host is None:
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
                return await self._answer(host, key, state, message)
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
            return await self._run(spec, None, DialogRun(spec, key, state, host), invocation)

    # ---------------------------------------------------------------- steps

    async def _answer(
        self, host: DispatchHost, key: StorageKey, state: dict[str, Any], message: Message
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
                await self.send(DialogRun(spec, key, state, host), spec.timeout_message)
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
        invocation = Invocation("message", message, f"dialog {name}", self.robot, host, {})
        return await self._run(spec, route, DialogRun(spec, key, state, host), invocation)

    async def _run(
        self, spec: DialogSpec, route: Route | None, run: DialogRun, invocation: Invocation
    ) -> Any:
        """Run the dialog function over its journal to its next question (or its end)."""
        key, state = run.key, run.state
        self._cancel_timer(key)
        d = Dialog(self, run, invocation.event.api)
        ending = getattr(invocation.event, "id", None)

        async def step() -> Any:
            try:
                return await spec.func(d)
            except Suspended:
                return _WAITING

        try:
            if route is None:  # the trigger handler's own middleware already wraps us
                result = await step()
            else:
                result = await invoke(route.chain, invocation, step)
        except UnexpectedAnswer as unexpected:
            await self._end(key, state, ending)
            if unexpected.reply is not None:
                await self.send(run, unexpected.reply)
            return CONTINUE
        except Exception:
            await self._end(key, state, ending)
            if spec.error_message is not None:
                try:
                    await self.send(run, spec.error_message)
                except Exception:
                    log.exception("could not tell %s that dialog %r failed", key.user, spec.name)
            raise
        if result is _WAITING:
            return None
        await self._end(key, state, ending)
        return result

    async def ask(self, run: DialogRun, prompt: Any, mark: str, timeout: float | None) -> None:
        """Save the dialog as waiting for an answer to ``prompt``, then ask it."""
        state, key = run.state, run.key
        limit = run.spec.timeout if timeout is None else timeout
        deadline = None if limit is None else time.time() + limit
        state["asked"] = int(state.get("asked", 0)) + 1
        await self.save(run, pending={"h": mark, "n": state["asked"], "d": deadline})
        self._waiting[key] = {
            "bot": key.bot,
            "chat": key.chat,
            "user": key.user,
            "dialog": run.spec.name,
            "question": prompt if isinstance(prompt, str) else None,
            "asked": state["asked"],
            "deadline": deadline,
        }
        if prompt is not None:
            await self.send(run, prompt)
        if limit is not None:
            self._arm_timer(run.host, key, state, limit)

    async def save(self, run: DialogRun, *, pending: dict[str, Any] | None) -> None:
        """Store the dialog's state, waiting on ``pending`` (None: mid-step)."""
        state = run.state
        state["pending"] = pending
        state["saved"] = True
        ttl = None
        if pending is not None and pending.get("d") is not None:
            ttl = max(1.0, pending["d"] - time.time()) + EXPIRED_GRACE
        elif run.spec.timeout is not None:
            ttl = run.spec.timeout + EXPIRED_GRACE
        await self.store.set(run.key, state, ttl=ttl)

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

    async def send(self, run: DialogRun, something: Any) -> None:
        """Say ``something`` in the dialog's chat."""
        key = run.key
        await run.host.send_reply(something, to=key.chat, bot=key.bot, room=run.is_room)

    # ---------------------------------------------------------------- timeouts

    def _arm_timer(
        self, host: DispatchHost, key: StorageKey, state: dict[str, Any], delay: float
    ) -> None:
        self._cancel_timer(key)
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(
            delay, self._time_is_up, host, key, state["id"], state["asked"]
        )

    def _cancel_timer(self, key: StorageKey) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _time_is_up(self, host: DispatchHost, key: StorageKey, dialog_id: str, asked: int) -> None:
        self._timers.pop(key, None)
        task = asyncio.get_running_loop().create_task(self._expire(host, key, dialog_id, asked))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _expire(
        self, host: DispatchHost, key: StorageKey, dialog_id: str, asked: int
    ) -> None:
        try:
            if key.bot not in host.bots:
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
                await self.send(DialogRun(spec, key, state, host), spec.timeout_message)
        except Exception:
            log.exception("ending a timed-out dialog of %s failed", key.user)

    async def aclose(self) -> None:
        """Cancel pending timeout timers (the dialogs stay in the store); this process no
        longer waits on any of them."""
        for key in list(self._timers):
            self._cancel_timer(key)
        self._waiting.clear()
        for task in list(self._tasks):
            task.cancel()
