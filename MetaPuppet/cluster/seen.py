"""Handled event ids shared by every server process (the dedupe across a fail-over).

A Node client keeps each event until a server acknowledged it and sends it again after a
reconnect, perhaps to another process. Each process still drops duplicates it saw itself
(``EventPipeline``'s own ids); this store makes the decision shared:

* ``claim(id)`` before an event goes into the pipeline: ``<prefix>:seen:<id>`` is set to
  ``c:<host>`` (this process handles it, for at most ``claim_lease_s``). ``False``: it was
  handled already, by any process (acknowledge it, run nothing). An event claimed by a
  process that is still alive is waited for; one claimed by a process that is gone (its
  liveness key expired: killed mid-way) is taken over and handled here.
* ``done(id)`` once it was handled, *before* the acknowledgement goes out: the id becomes
  ``d`` for ``seen_ttl_s`` (24 h, longer than an event stays in a Node outbox).
* ``release(id)`` when it was not handled after all (a stop cut it short): a re-sent copy
  runs.

An event the Node client sends for the first time (``attempt`` 1 in its envelope) cannot
have been seen by any process, so nothing needs to be checked before it runs:
``claim_fresh(id)`` queues its claim (a plain ``SET NX``, lazily: it goes out
``Batcher.LAZY_S``, 100 ms, later) and the event runs at once. An
event settled before its claim went out (``done``/``release``) takes it back, so a quick
handler costs one command: the ``d`` record. A slow one's claim is in Redis within
``LAZY_S``, for a copy sent again while this process still handles it: that copy can only
come after the Node client lost this connection, waited its first reconnect delay (250-500
ms by default) and authenticated on another one.

What this cannot give is exactly-once replies for the events a killed process was in the
middle of: those run again here, and a reply they had already sent is sent again, unless
the handler's sends are recorded (the delivery work's send records, see docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Coroutine
from typing import Any, Protocol

from .state import SharedState

__all__ = ["CLAIM_SCRIPT", "RedisSeenIds", "SeenIds"]

log = logging.getLogger("MetaPuppet.cluster")

#: 1 claimed, 0 handled already, 2 claimed by this very process, 3 taken over from a
#: process that is gone, -1 being handled by another live process
CLAIM_SCRIPT = """
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], 'c:' .. ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == 'd' then return 0 end
local holder = string.sub(v, 3)
if holder == ARGV[1] then return 2 end
if redis.call('EXISTS', ARGV[3] .. holder) == 0 then
  redis.call('SET', KEYS[1], 'c:' .. ARGV[1], 'PX', ARGV[2])
  return 3
end
return -1
"""
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == 'c:' .. ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class SeenIds(Protocol):
    """The shared dedupe of event ids (see the module docstring)."""

    async def claim(self, event_id: str) -> bool:
        """True: handle it here now; False: it was handled already."""
        ...

    async def done(self, event_id: str) -> None:
        """It was handled (call before acknowledging it)."""
        ...

    async def release(self, event_id: str) -> None:
        """It was not handled after all: a re-sent copy must run."""
        ...

    def claim_fresh(self, event_id: str) -> Coroutine[Any, Any, bool]:
        """Claim an event sent for the first time without waiting: the awaitable says
        whether the claim was new (False: a copy reached some process first)."""
        ...

    def check(self) -> None:
        """Raise ClusterUnavailable at once while Redis is known to be lost."""
        ...


class RedisSeenIds:
    """:class:`SeenIds` in Redis; raises ClusterUnavailable while Redis is lost."""

    def __init__(self, state: SharedState, host_id: str, *, poll_s: float = 0.05) -> None:
        self.state = state
        self.host_id = host_id
        self.poll_s = poll_s
        settings = state.settings
        self._lease_ms = str(max(1, int(settings.claim_lease_s * 1000)))
        self._done_ms = max(1, int(settings.seen_ttl_s * 1000))
        self._host_prefix = state.key("host", "")
        #: claims of fresh events not sent yet (lazy): a quick handler's claim never goes out
        self._queued: dict[str, asyncio.Future[Any]] = {}
        self._release = state.client.register_script(RELEASE_SCRIPT)
        #: events taken over from a process that was gone (for the logs and tests)
        self.taken_over = 0

    def _key(self, event_id: str) -> str:
        return self.state.key("seen", event_id)

    async def claim(self, event_id: str) -> bool:
        key, waited_since = self._key(event_id), None
        args = (self.host_id, self._lease_ms, self._host_prefix)
        while True:
            verdict = await self.state.batched(
                "checking whether an event was handled",
                lambda pipe: pipe.eval(CLAIM_SCRIPT, 1, key, *args),
            )
            if verdict == 0:
                return False
            if verdict != -1:
                if verdict == 3:
                    self.taken_over += 1
                    log.info("event %s: the process handling it is gone; handled here", event_id)
                return True
            if waited_since is None:
                waited_since = time.monotonic()
                log.info("event %s is being handled by another server process; waiting", event_id)
            await asyncio.sleep(self.poll_s)

    def claim_fresh(self, event_id: str) -> Coroutine[Any, Any, bool]:
        key = self._key(event_id)
        value, lease = "c:" + self.host_id, int(self._lease_ms)
        sent = self.state.batcher.submit(
            lambda pipe: pipe.set(key, value, px=lease, nx=True), lazy=True
        )
        self._queued[event_id] = sent
        sent.add_done_callback(lambda f: self._settled(event_id, f))
        return self._claimed(sent)

    def _settled(self, event_id: str, future: asyncio.Future[Any]) -> None:
        self._queued.pop(event_id, None)
        if not future.cancelled():
            future.exception()  # retrieved, also when nobody awaits it any more

    async def _claimed(self, sent: Awaitable[Any]) -> bool:
        return bool(await self.state.run("claiming an event", sent))

    def _withdraw(self, event_id: str) -> None:
        """The event is settled before its claim went out: the claim is not needed."""
        queued = self._queued.pop(event_id, None)
        if queued is not None and self.state.batcher.withdraw(queued):
            queued.set_result(True)

    def check(self) -> None:
        self.state.check("handling an event")

    async def done(self, event_id: str) -> None:
        self._withdraw(event_id)
        key = self._key(event_id)
        await self.state.batched(
            "recording a handled event", lambda pipe: pipe.set(key, "d", px=self._done_ms)
        )

    async def release(self, event_id: str) -> None:
        self._withdraw(event_id)
        await self.state.run(
            "releasing an event",
            self._release(keys=[self._key(event_id)], args=[self.host_id]),
        )
