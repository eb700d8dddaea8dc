"""Proactive messages that respect the channel's send window: ``server.send_later``.

A message the bot sends on its own initiative (a reminder, a daily report) is written to a
durable queue (:mod:`~MetaPuppet.outbox_store`) first, then:

* the channel has no send budget (the mock, wechat4u, a puppet service), or the contact's
  window is open with allowance to spare: it is **delivered at once**;
* the window is closed (iLink: the user has not written for too long, or the bot used up
  the allowance of the user's last message): it **waits**, and is delivered when the user
  writes again, **after the robot's reply to that message** (so the reply the user waits
  for is never crowded out), oldest first, within that message's allowance less
  ``proactive.reserve`` messages kept for the conversation (default 1);
* its ``expires`` time passes first: it is recorded **expired** with the reason, never sent.

Every message ends in exactly one recorded state: ``delivered`` (with the channel's
message id), ``expired`` (with the reason) or ``failed`` (with the channel's error
``code``). A send cut off by a crash (state ``sending`` at the next start) ends as failed
``interrupted`` and is not sent again: WeChat may have delivered it, and a double costs
budget (at most once). A message the channel refuses because the window closed in the
meantime (iLink ``ret -2``) goes back to the queue, never reported delivered.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from .client import PuppetClient
from .errors import (
    MetaPuppetError,
    NotSupported,
    PuppetNotConnected,
    SendWindowClosed,
    SnippetError,
    SnippetTimeout,
)
from .outbox_store import (
    DELIVERED,
    EXPIRED,
    FAILED,
    QUEUED,
    SENDING,
    STATES,
    OutboxRecord,
    OutboxStore,
)
from .protocol import BotEvent
from .types import FileBox, UrlLink, id_of, sayable_to_wire

__all__ = [
    "DEFAULT_EXPIRES_S",
    "DEFAULT_MAX_QUEUED",
    "KEEP_FINAL",
    "NEVER",
    "OutboxFull",
    "ProactiveOutbox",
]

log = logging.getLogger("MetaPuppet.proactive")

DEFAULT_EXPIRES_S: Final = 86400.0
DEFAULT_MAX_QUEUED: Final = 10_000
DEFAULT_MAX_PER_CHAT: Final = 200
DEFAULT_MAX_BYTES: Final = 1024 * 1024
#: final records kept for ``outbox_status`` and the dashboard; older ones are forgotten
KEEP_FINAL: Final = 10_000
RETRY_S: Final = 5.0
PREVIEW: Final = 120
#: ``expires=NEVER``: the message waits until it can be delivered
NEVER: Final = float("inf")


class OutboxFull(MetaPuppetError):
    """The proactive queue holds as many messages as it may (nothing was queued)."""


class ProactiveOutbox:
    """The durable queue of proactive messages and its delivery (``server.outbox``)."""

    def __init__(
        self,
        client: PuppetClient,
        settings: dict[str, Any] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        settings = dict(settings or {})
        self.clock = clock
        self.default_expires_s = float(settings.get("expires_s", DEFAULT_EXPIRES_S))
        #: messages of each window left for the conversation (replies, dialogs)
        self.reserve = int(settings.get("reserve", 1))
        self.max_queued = int(settings.get("max_queued", DEFAULT_MAX_QUEUED))
        self.max_per_chat = int(settings.get("max_per_chat", DEFAULT_MAX_PER_CHAT))
        self.max_bytes = int(settings.get("max_message_bytes", DEFAULT_MAX_BYTES))
        self.retry_s = float(settings.get("retry_s", RETRY_S))
        self.store = OutboxStore(None)
        #: queued messages now (a gauge for /metrics, kept without a query)
        self.queued = 0
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._wake: asyncio.Event | None = None
        self._pump: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ life cycle

    def open(self, data_dir: Path | None) -> None:
        """Open the queue (``proactive.db`` in ``data_dir``); sends a crash cut off end as
        failed ``interrupted``."""
        self.store.close()
        path = None if data_dir is None else data_dir / "proactive.db"
        try:
            self.store = OutboxStore(path)
        except (OSError, sqlite3.Error) as exc:
            # the server still serves; what it could not keep durably, it says
            log.error(
                "cannot keep proactive messages in %s (%s): they are kept in memory only "
                "and a restart loses them; fix the data directory",
                path,
                exc,
            )
            self.store = OutboxStore(None)
        for record in self.store.in_state(SENDING):
            self._finish(
                record,
                FAILED,
                "interrupted",
                "the server stopped while sending it; "
                "WeChat may or may not have delivered it, so it is not sent again",
            )
        self.queued = self.store.count_queued()
        if self.queued:
            log.info("%d proactive messages wait in %s", self.queued, self.store.path)

    async def start(self, data_dir: Path | None) -> None:
        self.open(data_dir)
        self._wake = asyncio.Event()
        self._pump = asyncio.get_running_loop().create_task(self._pump_forever())

    async def stop(self) -> None:
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.cancel()
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        for task in tasks:
            task.cancel()
        self.store.close()
        self.store = OutboxStore(None)

    # ------------------------------------------------------------------ sending

    async def send_later(
        self,
        contact: Any,
        message: Any,
        *,
        bot: str | None = None,
        expires: float | timedelta | datetime | None = None,
        room: bool | None = None,
        source: str = "python",
    ) -> OutboxRecord:
        """Queue ``message`` for ``contact`` durably, and deliver it now if the channel
        allows. ``expires``: seconds from now, a timedelta, a datetime, or :data:`NEVER`
        (default ``proactive.expires_s``, 24 h). Returns the record (``.id``, ``.state``)."""
        wire = _to_wire(message)
        size = len(str(wire))
        if size > self.max_bytes:
            raise ValueError(
                f"a proactive message may hold at most {self.max_bytes} bytes, this one "
                f"{size}; send large files directly (proactive.max_message_bytes)"
            )
        name = bot if bot is not None else self.client.only_bot()
        to = id_of(contact)
        if not isinstance(to, str) or not to:
            raise ValueError(f"send_later needs a contact (an id or a Contact), got {contact!r}")
        kind = type(contact).__name__
        if room is None and kind in ("Room", "Contact", "ContactSelf"):
            room = kind == "Room"
        if self.queued >= self.max_queued:
            raise OutboxFull(
                f"{self.queued} proactive messages are queued, the most allowed "
                "(proactive.max_queued); wait until some are delivered or expire"
            )
        if self.store.count_queued(name, to) >= self.max_per_chat:
            raise OutboxFull(
                f"{self.max_per_chat} proactive messages already wait for {to!r} "
                "(proactive.max_per_chat)"
            )
        now = self.clock()
        record = OutboxRecord(
            id=uuid.uuid4().hex,
            bot=name,
            contact=to,
            room=room,
            state=QUEUED,
            created_at=now,
            updated_at=now,
            expires_at=self._expiry(expires, now),
            source=source,
            preview=_preview(wire),
            message=wire,
        )
        self.store.insert(record)  # committed: from here on a crash cannot lose it
        self.queued += 1
        log.info("proactive message %s for %r on bot %r queued", record.id, to, name)
        if name in self.client.bots:
            await self.deliver(name, to)
        if self._wake is not None:
            self._wake.set()
        return self.store.get(record.id) or record

    def status(self, record_id: str) -> OutboxRecord | None:
        return self.store.get(record_id)

    def messages(
        self,
        *,
        bot: str | None = None,
        contact: Any = None,
        state: str | None = None,
        limit: int = 100,
    ) -> list[OutboxRecord]:
        if state is not None and state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
        who = None if contact is None else id_of(contact)
        return self.store.search(bot=bot, contact=who, state=state, limit=limit)

    def counts(self) -> dict[str, int]:
        return self.store.counts()

    # ------------------------------------------------------------------ delivery

    def after_handled(self, event: BotEvent) -> None:
        """The pipeline handled ``event``: a user's message may have opened a window."""
        if not self.queued or event.name != "message" or event.payload.get("self"):
            return
        talker = event.payload.get("talkerId") or event.payload.get("fromId")
        if talker and not event.payload.get("roomId"):
            self._spawn(self.deliver(event.bot, str(talker)))

    def on_event(self, event: BotEvent) -> None:
        """A listener: a bot logging in may have messages waiting."""
        if event.name == "login" and self.queued and self._wake is not None:
            self._wake.set()

    async def deliver(self, bot: str, contact: str) -> int:
        """Send what waits for ``contact`` as far as the channel allows; returns how many
        were delivered."""
        key = (bot, contact)
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                return await self._deliver(bot, contact)
        finally:
            if not lock.locked() and self._locks.get(key) is lock:
                del self._locks[key]

    async def _deliver(self, bot: str, contact: str) -> int:
        delivered = 0
        for record in self.store.queued(bot, contact):
            now = self.clock()
            if record.expires_at is not None and record.expires_at <= now:
                self._expire(record, now)
                continue
            if bot not in self.client.bots:
                break
            rules = self.client.capabilities(bot).send_budget
            if rules is not None:
                budget = self.client.send_budget(bot, contact) or {}
                remaining = budget.get("remaining")
                if not budget.get("open") or (remaining is not None and remaining <= self.reserve):
                    self._note_wait(record, budget.get("reason") or "the window keeps its reserve")
                    break
            record = replace(record, state=SENDING, attempts=record.attempts + 1, updated_at=now)
            self.store.update(record)
            try:
                message_id = await self.client.say(
                    contact, _from_wire(record.message), bot=bot, room=record.room
                )
            except SendWindowClosed as closed:
                self._requeue(record, closed.reason)
                break
            except PuppetNotConnected as gone:
                self._requeue(record, f"the bot is not connected: {gone}")
                break
            except NotSupported as exc:
                self._finish(record, FAILED, "not_supported", str(exc))
            except SnippetTimeout as exc:
                self._finish(record, FAILED, "timeout", f"no answer from the channel: {exc}")
            except SnippetError as exc:
                code = str(exc.code) if exc.code is not None else exc.kind
                self._finish(record, FAILED, code, exc.message or str(exc))
            except (TypeError, ValueError, MetaPuppetError) as exc:
                self._finish(record, FAILED, type(exc).__name__, str(exc))
            else:
                delivered += 1
                self._finish(record, DELIVERED, None, None, message_id)
        return delivered

    async def _pump_forever(self) -> None:
        """Expire what is due; retry chats whose bot is connected (after a reconnect, a
        restart, a login) every ``retry_s`` or when woken."""
        wake = self._wake
        assert wake is not None
        while True:
            try:
                now = self.clock()
                for record in self.store.due_to_expire(now):
                    self._expire(record, now)
                if self.queued:
                    bots = set(self.client.bots)
                    for bot, contact in self.store.waiting_chats():
                        if bot in bots:
                            await self.deliver(bot, contact)
                self.store.prune(KEEP_FINAL)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the proactive outbox's pump failed; retrying")
            timeout = self.retry_s
            upcoming = self.store.next_expiry()
            if upcoming is not None:
                timeout = max(0.05, min(timeout, upcoming - self.clock()))
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), timeout)
            except TimeoutError:
                pass

    # ------------------------------------------------------------------ states

    def _expire(self, record: OutboxRecord, now: float) -> None:
        assert record.expires_at is not None
        waited = record.reason or "the channel did not allow it"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.expires_at))
        self._finish(
            record,
            EXPIRED,
            "expired",
            f"expired at {when} before it could be delivered (it waited because: {waited})",
        )

    def _note_wait(self, record: OutboxRecord, reason: str) -> None:
        if record.reason != reason:
            self.store.update(replace(record, reason=reason, updated_at=self.clock()))

    def _requeue(self, record: OutboxRecord, reason: str) -> None:
        self.store.update(replace(record, state=QUEUED, reason=reason, updated_at=self.clock()))

    def _finish(
        self,
        record: OutboxRecord,
        state: str,
        code: str | None,
        reason: str | None,
        message_id: str | None = None,
    ) -> None:
        was_queued = record.state == QUEUED
        final = replace(
            record,
            state=state,
            code=code,
            reason=reason,
            message_id=message_id,
            updated_at=self.clock(),
        )
        self.store.update(final)
        if was_queued or record.state == SENDING:
            self.queued = max(0, self.queued - 1)
        logger = log.info if state == DELIVERED else log.warning
        logger(
            "proactive message %s for %r: %s%s",
            record.id,
            record.contact,
            state,
            f" ({code}: {reason})" if reason else "",
        )

    def _expiry(self, expires: float | timedelta | datetime | None, now: float) -> float | None:
        if expires is None:
            expires = self.default_expires_s
        if isinstance(expires, datetime):
            return expires.timestamp()
        if isinstance(expires, timedelta):
            expires = expires.total_seconds()
        if isinstance(expires, bool) or not isinstance(expires, int | float):
            raise TypeError(f"expires= takes seconds, a timedelta or a datetime, got {expires!r}")
        if expires == NEVER:
            return None
        if expires <= 0:
            raise ValueError(f"expires= must lie in the future, got {expires!r}")
        return now + float(expires)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _to_wire(message: Any) -> dict[str, Any]:
    if isinstance(message, dict) and message.get("type") in ("text", "file", "file_url", "url"):
        return dict(message)
    wire = sayable_to_wire(message)
    if wire["type"] not in ("text", "file", "file_url", "url"):
        raise TypeError(f"a proactive message is text, a FileBox or a UrlLink, not {wire['type']}")
    return wire


def _from_wire(wire: dict[str, Any] | None) -> Any:
    if wire is None:
        raise ValueError("the stored message is empty")
    kind = wire.get("type")
    if kind == "text":
        return str(wire["text"])
    if kind == "file":
        return FileBox.from_wire(wire)
    if kind == "file_url":
        return FileBox.from_url(str(wire["url"]), wire.get("name"))
    if kind == "url":
        payload = wire.get("payload") or {}
        return UrlLink(
            url=str(payload.get("url", "")),
            title=str(payload.get("title", "")),
            description=str(payload.get("description", "")),
            thumbnail_url=str(payload.get("thumbnailUrl") or ""),
        )
    raise ValueError(f"cannot send a stored {kind!r} message")


def _preview(wire: dict[str, Any]) -> str:
    if wire["type"] == "text":
        text = str(wire["text"])
        return text if len(text) <= PREVIEW else text[: PREVIEW - 1] + "…"
    if wire["type"] in ("file", "file_url"):
        return f"[file {wire.get('name') or ''}]".strip()
    return f"[link {(wire.get('payload') or {}).get('url', '')}]"
