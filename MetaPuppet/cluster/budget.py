"""Send budgets shared by every server process: the windows in Redis, changed atomically.

The model is :class:`~MetaPuppet.budget.SendBudgets`' (each user message opens a window
with its own allowance); here the windows of one (bot, contact) are one Redis key, and
every change is one Lua script, so two processes sending to one contact at the same time
cannot both take its last allowed message: :meth:`reserve` checks and counts in one step.

The process keeps a copy of what it last read, for :meth:`status` (the dashboard, which
asks synchronously): it is refreshed in the background at most once a second per contact,
so a dashboard on another process may show a count a second old. The file of the
single-process store (``send-budgets.json``) is not used.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from ..budget import MAX_WINDOWS, SendBudgets, Window, judge
from ..errors import ClusterUnavailable
from ..protocol import SendBudget
from .state import SharedState

__all__ = ["RedisSendBudgets"]

log = logging.getLogger("MetaPuppet.budget")

#: how long the windows of a contact are kept without a send (a send keeps them for as
#: long as its window is open)
KEEP_S: Final = 7 * 24 * 3600
REFRESH_S: Final = 1.0

_LOAD = """
local raw = redis.call('GET', KEYS[1])
local windows = {}
if raw then windows = cjson.decode(raw) end
local function find(id)
  for _, x in ipairs(windows) do if x[1] == id then return x end end
  return nil
end
local function save(keep)
  if keep then redis.call('SET', KEYS[1], cjson.encode(windows), 'KEEPTTL')
  else redis.call('SET', KEYS[1], cjson.encode(windows), 'PX', ARGV[#ARGV]) end
end
"""
USER_WROTE = (
    _LOAD
    + """
if find(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[#ARGV]) return 0 end
table.insert(windows, {ARGV[1], tonumber(ARGV[2]), 0, false})
table.sort(windows, function(a, b) return a[2] < b[2] end)
while #windows > tonumber(ARGV[3]) do table.remove(windows, 1) end
save(false)
return 1
"""
)
RESERVE = (
    _LOAD
    + """
local w = nil
if ARGV[1] ~= '' then w = find(ARGV[1]) end
if w == nil then w = windows[#windows] end
if w == nil then return {'none', ''} end
local now, per, span = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if w[4] then return {'closed', cjson.encode(w)} end
if now >= w[2] + span then return {'closed', cjson.encode(w)} end
if w[3] >= per then return {'closed', cjson.encode(w)} end
w[3] = w[3] + 1
local ttl = math.max(redis.call('PTTL', KEYS[1]), math.ceil((w[2] + span - now + 3600) * 1000))
redis.call('SET', KEYS[1], cjson.encode(windows), 'PX', ttl)
return {'ok', cjson.encode(w)}
"""
)
#: ARGV: message id, reason ('' to give one send back only)
RELEASE = (
    _LOAD
    + """
local w = find(ARGV[1])
if w == nil then return 0 end
if w[3] > 0 then w[3] = w[3] - 1 end
if ARGV[2] ~= '' then w[4] = ARGV[2] end
save(true)
return 1
"""
)


def _part(text: str) -> str:
    return text.replace("%", "%25").replace(":", "%3A")


def _window(wire: Any) -> Window:
    message_id, opened_at, sent, refused = wire
    return Window(str(message_id), float(opened_at), int(sent), refused or None)


class RedisSendBudgets(SendBudgets):
    """:class:`SendBudgets` kept in Redis for every server process of a cluster."""

    def __init__(self, state: SharedState, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(None, clock=clock)
        self.state = state
        self._user_wrote = state.client.register_script(USER_WROTE)
        self._reserve = state.client.register_script(RESERVE)
        self._release = state.client.register_script(RELEASE)
        self._writes: dict[tuple[str, str], asyncio.Task[Any]] = {}
        self._refreshed: dict[tuple[str, str], float] = {}
        self._background: set[asyncio.Task[Any]] = set()

    def _key(self, bot: str, contact: str) -> str:
        return self.state.key("budget", _part(bot), _part(contact))

    # the file of the single-process store is not used
    def _load(self) -> None:
        self._loaded = True

    def _save(self) -> None:
        return None

    def flush(self) -> None:
        return None

    def _mirror(self, bot: str, contact: str, windows: list[Window]) -> None:
        self._windows[(bot, contact)] = windows

    # ------------------------------------------------------------------ the user writes

    def user_wrote(self, bot: str, contact: str, message_id: str, sent_at: float) -> None:
        super().user_wrote(bot, contact, message_id, sent_at)
        key = (bot, contact)
        previous = self._writes.get(key)
        task = asyncio.get_running_loop().create_task(
            self._write(previous, bot, contact, message_id, sent_at)
        )
        self._writes[key] = task

        def forget(done: asyncio.Task[Any]) -> None:
            if self._writes.get(key) is done:
                del self._writes[key]

        task.add_done_callback(forget)

    async def _write(
        self,
        previous: asyncio.Task[Any] | None,
        bot: str,
        contact: str,
        message_id: str,
        sent_at: float,
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        try:
            await self.state.run(
                "recording a user's message in the send budget",
                self._user_wrote(
                    keys=[self._key(bot, contact)],
                    args=[message_id, repr(float(sent_at)), MAX_WINDOWS, KEEP_S * 1000],
                ),
            )
        except ClusterUnavailable as exc:
            log.warning("the send window of %s on bot %r is not shared: %s", contact, bot, exc)

    async def _written(self, bot: str, contact: str) -> None:
        """Wait until what this process learnt of (bot, contact) is in Redis."""
        pending = self._writes.get((bot, contact))
        if pending is not None:
            await asyncio.wait([pending])

    # ------------------------------------------------------------------ the bot sends

    async def reserve(
        self, bot: str, contact: str, rules: SendBudget, reply_to: str | None = None
    ) -> Window | None:
        await self._written(bot, contact)
        now = self.clock()
        verdict, wire = await self.state.run(
            "checking the send budget",
            self._reserve(
                keys=[self._key(bot, contact)],
                args=[reply_to or "", repr(float(now)), rules.per_user_message, rules.window_s],
            ),
        )
        verdict = verdict.decode() if isinstance(verdict, bytes) else str(verdict)
        window = _window(json.loads(wire)) if wire else None
        if verdict == "ok":
            assert window is not None
            self._refresh_soon(bot, contact, force=True)
            return window
        closed = judge(bot, contact, rules, window, now)
        if closed is not None:
            raise closed
        return None  # no window, and the rules need none

    async def release(self, bot: str, contact: str, window: Window | None) -> None:
        await self._change(bot, contact, window, "")

    async def refuse(self, bot: str, contact: str, window: Window | None, reason: str) -> None:
        await self._change(bot, contact, window, reason)

    async def _change(self, bot: str, contact: str, window: Window | None, reason: str) -> None:
        if window is None:
            return
        try:
            await self.state.run(
                "updating the send budget",
                self._release(keys=[self._key(bot, contact)], args=[window.message_id, reason, 0]),
            )
        except ClusterUnavailable as exc:
            log.warning("could not update the send budget of %s on bot %r: %s", contact, bot, exc)
        self._refresh_soon(bot, contact, force=True)

    # ------------------------------------------------------------------ status

    def status(self, bot: str, contact: str, rules: SendBudget) -> dict[str, Any]:
        self._refresh_soon(bot, contact)
        return super().status(bot, contact, rules)

    def _refresh_soon(self, bot: str, contact: str, *, force: bool = False) -> None:
        key = (bot, contact)
        now = time.monotonic()
        if not force and now - self._refreshed.get(key, -REFRESH_S) < REFRESH_S:
            return
        self._refreshed[key] = now
        if len(self._refreshed) > 10_000:
            self._refreshed.clear()
        try:
            task = asyncio.get_running_loop().create_task(self._refresh(bot, contact))
        except RuntimeError:
            return
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _refresh(self, bot: str, contact: str) -> None:
        try:
            raw = await self.state.run(
                "reading the send budget", self.state.client.get(self._key(bot, contact))
            )
        except ClusterUnavailable:
            return
        windows = [_window(w) for w in json.loads(raw)] if raw else []
        self._mirror(bot, contact, windows)
