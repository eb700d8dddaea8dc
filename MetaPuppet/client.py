"""PuppetClient: the server's API to connected bots, over the transport.

It implements :class:`~MetaPuppet.types.PuppetAPI` (what every view talks to): run
snippets, send things (through the outgoing rate limit), and name the only bot. The views
built for incoming events hold this object, so ``room.say()`` goes view -> client ->
link: one look-up of the puppet, one call.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from typing import Any, Final

from . import protocol, snippets
from ._loop import on_loop, running_loop
from .errors import MetaPuppetError
from .transport.link import PuppetLink
from .transport.registry import PuppetRegistry
from .types import ContactSelf, contact_from_wire, id_of, reply_to_sayables, sayable_to_wire

__all__ = ["ANSWER_MARGIN_S", "PuppetClient"]

# How long the server waits for an answer beyond the snippet's own timeout, which the
# Node side enforces; past this margin the puppet itself is not answering.
ANSWER_MARGIN_S: Final = 5.0
SAY_TIMEOUT_S: Final = 120.0
_FUNC_PATH = re.compile(r"^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$")


class PuppetClient:
    """Calls into connected puppets: snippets, typed sends, control.

    ``rate_limiter`` is consulted before every outgoing message
    (``await rate_limiter.acquire(bot, chat)``); None sends at full speed. ``loop`` is the
    server's loop once it runs: calls made from another loop are carried over to it.
    """

    def __init__(self, registry: PuppetRegistry, *, rate_limiter: Any = None) -> None:
        self.registry = registry
        self.rate_limiter = rate_limiter
        self.loop: asyncio.AbstractEventLoop | None = None

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
        return await self._run(await self.registry.pick(bot), code, args, timeout)

    @staticmethod
    async def _run(link: PuppetLink, code: str, args: Any, timeout: float) -> Any:
        answer = await link.call(
            protocol.EV_EXEC,
            protocol.exec_request(code, {} if args is None else args, timeout),
            timeout + ANSWER_MARGIN_S,
        )
        return protocol.unwrap_exec_response(answer, bot=link.bot)

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
    ) -> str | None:
        """Send one thing (text, FileBox, UrlLink, ...) to a contact or room; returns its id.

        ``conversation_id`` may be an id or a view (Contact, Room); ``mentions`` ids or
        Contacts.
        """
        to = id_of(conversation_id)
        if room is None:
            kind = type(conversation_id).__name__
            room = kind == "Room" if kind in ("Room", "Contact", "ContactSelf") else "@" in to
        args = {
            "kind": "room" if room else "contact",
            "to": to,
            "sayable": sayable_to_wire(something),
            "mentions": [id_of(m) for m in mentions],
        }
        if self.loop is not None and running_loop() is not self.loop:
            return await on_loop(self.loop, self._say(bot, to, args))
        return await self._say(bot, to, args)

    async def _say(self, bot: str | None, to: str, args: dict[str, Any]) -> str | None:
        link = await self.registry.pick(bot)
        if self.rate_limiter is not None:
            await self.rate_limiter.acquire(link.bot, to)
        result = await self._run(link, snippets.SAY, args, SAY_TIMEOUT_S)
        return str(result) if result else None

    async def send_reply(self, reply: Any, *, to: str, bot: str | None, room: bool) -> None:
        """Send whatever a robot hook returned (str, FileBox, legacy dict, list, ...)."""
        for something in reply_to_sayables(reply):
            await self.say(to, something, bot=bot, room=room)
