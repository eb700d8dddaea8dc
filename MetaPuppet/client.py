"""PuppetClient: the server's API to connected bots, over the transport.

It implements :class:`~MetaPuppet.types.PuppetAPI` (what every view talks to): run
snippets, send things (through the outgoing rate limit), and name the only bot. The views
built for incoming events hold this object, so ``room.say()`` goes view -> client ->
link: one look-up of the puppet, one call.

Sends are typed actions (``act``, no snippet to compile), each with a send id
(:mod:`~MetaPuppet.sends`) the Node client deduplicates. The reply a robot hook returns
does not even take a frame of its own: inside a handling that collects, it is added to the
event's acknowledgement (:meth:`PuppetClient.send_reply`), except on channels with a send
budget, where it is sent and checked before the event is acknowledged, so that a refusal
reaches the robot's ``on_error``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Iterable
from typing import Any, Final

from . import protocol, sends, snippets
from ._loop import on_loop, running_loop
from .budget import SendBudgets
from .errors import MetaPuppetError, NotSupported, SendWindowClosed, SnippetError, SnippetTimeout
from .protocol import BotEvent, Capabilities
from .transport.link import PuppetLink
from .transport.registry import PuppetRegistry
from .types import ContactSelf, contact_from_wire, id_of, reply_to_sayables, sayable_to_wire

__all__ = ["ANSWER_MARGIN_S", "PuppetClient", "check_sendable"]

# How long the server waits for an answer beyond the snippet's own timeout, which the
# Node side enforces; past this margin the puppet itself is not answering.
ANSWER_MARGIN_S: Final = 5.0
SAY_TIMEOUT_S: Final = 120.0
#: the ``code`` of a send the channel refused because the window is closed (iLink ret -2)
SEND_REFUSED: Final = -2
#: what each kind of sayable needs of the channel
_SAYABLE_NEEDS: Final = {
    "file": "files",
    "file_url": "files",
    "url": "url_links",
    "mini_program": "mini_programs",
    "contact": "contact_cards",
}
log = logging.getLogger("MetaPuppet.client")
_FUNC_PATH = re.compile(r"^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$")


class PuppetClient:
    """Calls into connected puppets: snippets, typed sends, control.

    ``rate_limiter`` is consulted before every outgoing message
    (``await rate_limiter.acquire(bot, chat)``); None sends at full speed. ``loop`` is the
    server's loop once it runs: calls made from another loop are carried over to it.
    """

    def __init__(
        self,
        registry: PuppetRegistry,
        *,
        rate_limiter: Any = None,
        budgets: SendBudgets | None = None,
    ) -> None:
        self.registry = registry
        self.rate_limiter = rate_limiter
        #: send windows of channels with a budget (iLink)
        self.budgets = budgets if budgets is not None else SendBudgets()
        self.loop: asyncio.AbstractEventLoop | None = None
        #: told of every exec's latency, every send and refusal (``metrics.Metrics``)
        self.observer: Any = None

    def capabilities(self, bot: str | None = None) -> Capabilities:
        """What the channel of ``bot`` (or of the only bot) can do."""
        return self.registry.capabilities(bot if bot is not None else self.only_bot())

    def send_budget(self, bot: str | None, contact: Any) -> dict[str, Any] | None:
        """What may be sent to ``contact`` now; None on a channel without a budget."""
        name = bot if bot is not None else self.only_bot()
        rules = self.registry.capabilities(name).send_budget
        return None if rules is None else self.budgets.status(name, id_of(contact), rules)

    def note_event(self, event: BotEvent) -> None:
        """Keep track of what the channel needs to know of incoming events: capabilities
        reported at login, and the send windows that users' messages open."""
        payload = event.payload
        if event.name == "login" and isinstance(payload.get("capabilities"), dict):
            try:
                reported = protocol.parse_capabilities(payload["capabilities"])
            except MetaPuppetError as exc:
                log.warning("bot %r reported unreadable capabilities: %s", event.bot, exc)
            else:
                self.registry.update_capabilities(event.bot, reported)
            return
        if event.name != "message" or payload.get("self") or payload.get("roomId"):
            return
        if self.registry.capabilities(event.bot).send_budget is None:
            return
        talker = payload.get("talkerId") or payload.get("fromId")
        if talker:
            message_id = str(payload.get("id") or event.id)
            sent_at = _seconds(payload.get("timestamp"), event.ts)
            self.budgets.user_wrote(event.bot, str(talker), message_id, sent_at)

    def _require(self, link: PuppetLink, capability: str | None, what: str) -> None:
        if capability is not None and not link.capabilities.can(capability):
            raise NotSupported(link.capabilities.channel, capability, what)

    @property
    def bots(self) -> list[str]:
        return self.registry.bots

    def only_bot(self) -> str:
        return self.registry.only_bot()

    async def exec_snippet(
        self, code: str, args: Any = None, *, bot: str | None = None, timeout: float = 30.0
    ) -> Any:
        """Run a TypeScript snippet on a bot and return its (serialised) result."""
        if self.loop is not None and running_loop() is not self.loop:
            return await on_loop(self.loop, self.exec_snippet(code, args, bot=bot, timeout=timeout))
        if not isinstance(code, str) or not code.strip():
            raise ValueError("code must be a non-empty string of TypeScript")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        check_sendable(args)
        link = await self.registry.pick(bot)
        self._require(link, snippets.required_capability(code, args), "this call")
        return await self._run(link, code, args, timeout)

    async def typing(self, conversation_id: Any, on: bool, *, bot: str | None = None) -> bool:
        """Show (or stop showing) "typing..." in a chat; False where the channel has none."""
        link = await self.registry.pick(bot)
        if not link.capabilities.can("typing"):
            return False
        action = {"action": protocol.ACTION_TYPING, "to": id_of(conversation_id), "on": bool(on)}
        return bool(await self._run(link, None, action, 10.0))

    async def _run(self, link: PuppetLink, code: str | None, args: Any, timeout: float) -> Any:
        """Run snippet ``code`` with ``args``, or (``code`` None) the typed action ``args``."""
        started, failed = time.perf_counter(), None
        try:
            if code is None:
                event, request = protocol.EV_ACT, protocol.act_request(args, timeout)
            else:
                event = protocol.EV_EXEC
                request = protocol.exec_request(code, {} if args is None else args, timeout)
            answer = await link.call(event, request, timeout + ANSWER_MARGIN_S)
            return protocol.unwrap_exec_response(answer, bot=link.bot)
        except Exception as exc:
            failed = str(getattr(exc, "kind", None) or type(exc).__name__)
            raise
        finally:
            if self.observer is not None:
                self.observer.exec_finished(time.perf_counter() - started, failed)

    async def echo(self, data: Any, *, bot: str | None = None, timeout: float = 10.0) -> Any:
        """A raw round trip to the Node client (no snippet): the benchmark baseline."""
        link = await self.registry.pick(bot)
        return await link.call(protocol.EV_ECHO, data, timeout)

    async def control(self, action: str, *, bot: str | None, timeout: float) -> None:
        """Ask the Node client itself to do something (``restart-bot``)."""
        link = await self.registry.pick(bot, 0.0)
        answer = await link.call(protocol.EV_CONTROL, {"action": action}, timeout)
        protocol.unwrap_exec_response(answer, bot=link.bot)

    async def call_function(
        self, func_name: str, params: Iterable[Any] = (), *, bot: str | None = None
    ) -> Any:
        """Call one function by its dotted name (``bot.Contact.findAll``) with ``params``."""
        if not isinstance(func_name, str) or not _FUNC_PATH.match(func_name):
            raise ValueError(
                f"func_name must be a dotted name like bot.Contact.findAll: {func_name!r}"
            )
        args = {"path": func_name, "params": list(params)}
        return await self.exec_snippet(snippets.CALL_FUNCTION, args, bot=bot)

    async def current_user(self, bot: str | None = None) -> ContactSelf:
        """The bot's own account."""
        wire = await self.exec_snippet(snippets.CURRENT_USER, bot=bot)
        user = contact_from_wire(self, bot or self.only_bot(), wire)
        if not isinstance(user, ContactSelf):
            raise MetaPuppetError(f"the bot is not logged in (got {wire!r:.80})")
        return user

    async def say(
        self,
        conversation_id: Any,
        something: Any,
        *,
        bot: str | None = None,
        room: bool | None = None,
        mentions: Iterable[Any] = (),
        reply_to: str | None = None,
        send_id: str | None = None,
    ) -> str | None:
        """Send one thing (text, FileBox, UrlLink, ...) to a contact or room; returns its id.

        ``conversation_id`` may be an id or a view (Contact, Room); ``mentions`` ids or
        Contacts. ``reply_to`` is the id of the message this answers: on a channel with
        send windows the answer uses that message's window. ``send_id`` names the send
        for the Node client's send records (a repeated id is answered from the record, not
        sent again); by default it is the next id of the handling this runs in, or random.

        Raises :class:`NotSupported` when the channel cannot send this (a room on iLink)
        and :class:`SendWindowClosed` when its send budget does not allow it now; both at
        once, before anything is sent.
        """
        # taken here, in the caller's order, so a handler run again gets the same ids (in
        # cluster mode too, on whichever process runs it again after a fail-over)
        send_id = send_id if send_id is not None else sends.next_send_id()
        call = self._say(
            bot, *_say_fields(conversation_id, something, mentions, room), reply_to, send_id
        )
        if self.loop is not None and running_loop() is not self.loop:
            return await on_loop(self.loop, call)
        return await call

    async def _say(
        self,
        bot: str | None,
        to: str,
        room: bool | None,
        args: dict[str, Any],
        reply_to: str | None,
        send_id: str,
        collect: sends.Handling | None = None,
    ) -> str | None:
        """Check, then send ``args`` (or add it to ``collect``'s acknowledgement)."""
        link = await self.registry.pick(bot)
        capabilities = link.capabilities
        if room is None:
            # the channel, not the id's shape, decides: iLink user ids contain an @ too
            room = capabilities.can("rooms") and to.endswith("@chatroom")
        if room:
            self._require(link, "rooms", "sending to a room")
        self._require(link, _SAYABLE_NEEDS.get(args["sayable"]["type"]), "sending this")
        args["kind"] = "room" if room else "contact"
        rules = capabilities.send_budget
        window = None
        if rules is not None:
            try:
                # counted now (atomically, across processes in cluster mode), given back
                # below when the send surely did not go out
                window = await self.budgets.reserve(link.bot, to, rules, reply_to)
            except SendWindowClosed:
                if self.observer is not None:
                    self.observer.refused(link.bot, "budget")
                raise
            # only a channel with send windows needs to know what a send answers
            args["replyTo"] = window.message_id if window is not None else None
        sending = False
        try:
            if self.rate_limiter is not None:
                await self.rate_limiter.acquire(link.bot, to)
            action = protocol.say_action(
                send_id,
                to,
                args["kind"],
                args["sayable"],
                args["mentions"],
                args.get("replyTo"),
                with_reply_to=rules is not None,
            )
            if collect is not None and rules is None and collect.collects_for(link.bot):
                # travels in the event's acknowledgement: the Node client runs it after
                # recording it durably (a channel with a budget never gets here: its sends
                # are checked before the event is acknowledged)
                assert collect.actions is not None
                collect.actions.append(action)
                if self.observer is not None:
                    self.observer.sent(link.bot)
                return None
            sending = True
            result = await self._run(link, None, action, SAY_TIMEOUT_S)
        except SnippetError as exc:
            if rules is None or exc.code != SEND_REFUSED:
                if not isinstance(exc, SnippetTimeout):  # a timed-out send may have gone
                    await self.budgets.release(link.bot, to, window)
                raise
            reason = f"the channel refused a send (code {exc.code}): its send window is closed"
            await self.budgets.refuse(link.bot, to, window, reason)
            if self.observer is not None:
                self.observer.refused(link.bot, "channel")
            raise SendWindowClosed(link.bot, to, reason, closed_at=time.time()) from exc
        except BaseException:
            if not sending:
                await self.budgets.release(link.bot, to, window)
            raise
        if self.observer is not None:
            self.observer.sent(link.bot)
        return str(result) if result else None

    async def send_reply(
        self, reply: Any, *, to: str, bot: str | None, room: bool, reply_to: str | None = None
    ) -> None:
        """Send whatever a robot hook returned (str, FileBox, legacy dict, list, ...).

        Inside a handling that collects (an event from a Node client, on a channel without
        a send budget) the reply is added to the event's acknowledgement instead: one frame
        for the event and its answer.
        """
        handling = sends.current()
        elsewhere = self.loop is not None and running_loop() is not self.loop
        if handling is None or not handling.collects_for(bot or "") or elsewhere:
            for something in reply_to_sayables(reply):
                await self.say(to, something, bot=bot, room=room, reply_to=reply_to)
            return
        for something in reply_to_sayables(reply):
            fields = _say_fields(to, something, (), room)
            await self._say(bot, *fields, reply_to, handling.next_send_id(), handling)


def _say_fields(
    conversation_id: Any, something: Any, mentions: Iterable[Any], room: bool | None
) -> tuple[str, bool | None, dict[str, Any]]:
    """``(to, room, args)`` of a send: the ids, and whether the target is a room when the
    caller said so or passed a view that says it."""
    to = id_of(conversation_id)
    kind = type(conversation_id).__name__
    named_room = kind == "Room" if kind in ("Room", "Contact", "ContactSelf") else None
    args = {
        "to": to,
        "sayable": sayable_to_wire(something),
        "mentions": [id_of(m) for m in mentions],
    }
    return to, room if room is not None else named_room, args


def check_sendable(args: Any) -> None:
    """Raise :class:`TypeError` naming the part of ``args`` that cannot travel as JSON.

    Found here, before anything is sent: python-socketio encodes in a background task, so a
    bad argument would otherwise only time out.
    """
    try:
        json.dumps(args, allow_nan=False)
    except (TypeError, ValueError) as exc:
        where, bad = _first_unsendable(args, "args")
        where = where or "args"
        hint = " (pass its .id)" if hasattr(bad, "id") and hasattr(bad, "bot") else ""
        raise TypeError(
            f"{where} cannot be sent to the bot: {type(bad).__name__} is not JSON data{hint}; "
            f"send str, int, float, bool, None, lists and dicts of them ({exc})"
        ) from None


def _first_unsendable(value: Any, where: str) -> tuple[str, Any]:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} key {key!r}", key
            found = _first_unsendable(item, f"{where}[{key!r}]")
            if found[0]:
                return found
        return "", None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _first_unsendable(item, f"{where}[{index}]")
            if found[0]:
                return found
        return "", None
    if value is None or isinstance(value, str | bool | int):
        return "", None
    if isinstance(value, float) and value == value and value not in (float("inf"), float("-inf")):
        return "", None
    return where, value


def _seconds(timestamp: Any, fallback_ms: float) -> float:
    """A Wechaty timestamp (seconds or milliseconds) as seconds since the epoch."""
    if isinstance(timestamp, int | float) and not isinstance(timestamp, bool) and timestamp > 0:
        return timestamp / 1000 if timestamp > 1e11 else float(timestamp)
    return fallback_ms / 1000 if fallback_ms > 0 else time.time()
