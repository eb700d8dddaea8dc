"""Middleware: code around every handler call, and the error handlers of routers.

``async def mw(call_next, invocation)`` awaits ``call_next()`` (or not, to stop the event)
and returns the reply. :func:`invoke` runs one call inside the middleware of the routers
it is reached through, and gives its errors to their error handlers (innermost first).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

from ..ratelimit import Rate, TokenBucket
from .handlers import CONTINUE, FlowControl, Invocation, call_function, handler_name

__all__ = ["ErrorHandler", "Layer", "Middleware", "invoke", "log_calls", "throttle"]

log = logging.getLogger("MetaPuppet.router")

Middleware = Callable[[Callable[[], Awaitable[Any]], Invocation], Awaitable[Any]]
ErrorHandler = Callable[[Exception, Invocation], Any]


class Layer(Protocol):
    """A router as :func:`invoke` sees it: its middleware and its error handlers."""

    @property
    def middlewares(self) -> Sequence[Middleware]: ...

    @property
    def error_handlers(self) -> Sequence[ErrorHandler]: ...


async def invoke(
    chain: Iterable[Layer], invocation: Invocation, call: Callable[[], Awaitable[Any]]
) -> Any:
    """Run ``call`` inside the middleware of ``chain``; route its errors to their handlers."""
    routers = tuple(chain)
    middlewares = [mw for router in routers for mw in router.middlewares]

    async def run(index: int) -> Any:
        if index == len(middlewares):
            return await call()
        return await middlewares[index](functools.partial(run, index + 1), invocation)

    try:
        return await run(0)
    except FlowControl:
        raise
    except Exception as error:
        for router in reversed(routers):
            for handle_error in router.error_handlers:
                try:
                    reply = await call_function(invocation.server, handle_error, error, invocation)
                except Exception:
                    log.exception("error handler %s failed too", handler_name(handle_error))
                    continue
                if reply is not None:
                    log.warning(
                        "handler %s failed on %s event (answered by %s)",
                        invocation.handler,
                        invocation.kind,
                        handler_name(handle_error),
                        exc_info=error,
                    )
                    return reply
        raise


# --------------------------------------------------------------------------- middleware


def log_calls(
    *, level: int = logging.INFO, slow: float = 1.0, logger: logging.Logger | None = None
) -> Middleware:
    """Middleware that logs each handler call with its duration (a warning when slower
    than ``slow`` seconds)::

        bot.middleware(log_calls(level=logging.DEBUG))
    """
    out = logger or log

    async def logged(call_next: Callable[[], Awaitable[Any]], invocation: Invocation) -> Any:
        started = time.perf_counter()
        outcome = "failed"
        try:
            result = await call_next()
            outcome = "passed it on" if result is CONTINUE else "handled"
            return result
        except FlowControl as steer:
            outcome = f"ended with {type(steer).__name__}"
            raise
        finally:
            elapsed = time.perf_counter() - started
            out.log(
                logging.WARNING if elapsed >= slow else level,
                "%s %s %s event from %s in %.1f ms",
                invocation.handler,
                outcome,
                invocation.kind,
                invocation.user or invocation.chat or invocation.bot,
                elapsed * 1000,
            )

    return logged


def throttle(
    rate: Rate,
    *,
    per: str = "user",
    message: Any = None,
    clock: Callable[[], float] = time.monotonic,
    max_keys: int = 10_000,
) -> Middleware:
    """Middleware that drops events from someone going faster than ``rate`` (incoming
    flood control). ``per`` is ``"user"``, ``"chat"`` or ``"bot"``; ``message`` (if any) is
    answered once when someone is first throttled::

        bot.middleware(throttle(Rate(5, per=10.0, burst=5), message="慢一点~"))
    """
    if per not in ("user", "chat", "bot"):
        raise ValueError(f"per must be 'user', 'chat' or 'bot', got {per!r}")
    buckets: dict[tuple[str, str | None], TokenBucket] = {}
    warned: set[tuple[str, str | None]] = set()

    async def throttled(call_next: Callable[[], Awaitable[Any]], invocation: Invocation) -> Any:
        who = None if per == "bot" else (invocation.user if per == "user" else invocation.chat)
        key = (invocation.bot, who)
        now = clock()
        bucket = buckets.get(key)
        if bucket is None:
            if len(buckets) >= max_keys:
                for idle in [k for k, b in buckets.items() if b.idle(now)]:
                    del buckets[idle]
                    warned.discard(idle)
            bucket = buckets[key] = TokenBucket(rate)
        if bucket.earliest(now) > now:
            log.info("throttled a %s event from %s on bot %r", invocation.kind, who, invocation.bot)
            if key in warned:
                return None
            warned.add(key)
            return message
        bucket.reserve(now)
        warned.discard(key)
        return await call_next()

    return throttled
