"""The two bridges between sync and async code, each built one way.

* :func:`sync_twin` makes the blocking twin of a coroutine method, for plain threads (the
  original project's style). One naming rule: the twin of ``async_X`` is ``X`` (the
  original's names), the twin of any other coroutine ``X`` is ``X_sync``.
* :class:`HandlerPool` runs user handlers: coroutine functions on the loop, plain
  functions in a thread pool, so sync user code never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from ._loop import call_sync

__all__ = ["HandlerPool", "LoopOwner", "sync_twin", "twin_name"]

T = TypeVar("T")


class LoopOwner(Protocol):
    """What a blocking twin needs of its object: the loop its coroutines run on."""

    @property
    def server_loop(self) -> asyncio.AbstractEventLoop | None: ...


def twin_name(coroutine_name: str) -> str:
    """The name of the blocking twin of the coroutine method ``coroutine_name``."""
    if coroutine_name.startswith("async_"):
        return coroutine_name.removeprefix("async_")
    return f"{coroutine_name}_sync"


def sync_twin(
    method: Callable[..., Coroutine[Any, Any, T]], *, timeout: float | None = None
) -> Callable[..., T]:
    """The blocking twin of a coroutine method: run it on the owner's loop and wait.

    Calling a twin from the loop's own thread raises instead of deadlocking.
    """
    name = twin_name(method.__name__)
    what = method.__name__.removeprefix("async_")

    @functools.wraps(method)
    def twin(self: LoopOwner, *args: Any, **kwargs: Any) -> T:
        loop = self.server_loop
        if loop is None:
            raise RuntimeError(f"{what}(): the server is not running; call server.run() first")
        return call_sync(loop, lambda: method(self, *args, **kwargs), what=what, timeout=timeout)

    twin.__name__ = name
    twin.__qualname__ = method.__qualname__.replace(method.__name__, name)
    twin.__doc__ = f"Blocking twin of ``{method.__name__}``; not for the server loop."
    return twin


class HandlerPool:
    """Calls user handlers: coroutine functions on the loop, plain ones in ``threads``."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="metapuppet-handler")

    async def call(self, handler: Callable[..., Any], *args: Any) -> Any:
        if inspect.iscoroutinefunction(handler):
            return await handler(*args)
        loop = asyncio.get_running_loop()
        # in the caller's context: a sync handler's sends keep the ids of its handling
        context = contextvars.copy_context()
        result = await loop.run_in_executor(self._pool, context.run, handler, *args)
        if inspect.isawaitable(result):
            result = await result
        return result

    def restart(self) -> None:
        """Drop the threads (a stop); later calls get fresh ones."""
        self._pool.shutdown(wait=False)
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="metapuppet-handler")
