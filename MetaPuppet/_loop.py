"""Event loops: which implementation, a background loop thread, and the bridge from sync
code onto it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from .errors import ConfigError

__all__ = [
    "LOOP_CHOICES",
    "LoopThread",
    "call_sync",
    "loop_factory",
    "on_loop",
    "run",
    "running_loop",
]

T = TypeVar("T")


LOOP_CHOICES = ("auto", "asyncio", "uvloop")


def loop_factory(choice: str = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """How to make an event loop: uvloop when it is installed (``auto``; the
    ``MetaPuppet[fast]`` extra), or the standard library's (``asyncio``)."""
    if choice not in LOOP_CHOICES:
        raise ConfigError(f"server.event_loop must be one of {', '.join(LOOP_CHOICES)}: {choice!r}")
    if choice == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "server.event_loop is uvloop, which is not installed: "
                "pip install 'MetaPuppet[fast]' (or choose auto or asyncio)"
            ) from None
        return asyncio.new_event_loop
    new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return new_loop


def run(coro: Coroutine[Any, Any, T], choice: str = "auto") -> T:
    """``asyncio.run`` on the chosen loop implementation."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(coro)


class LoopThread:
    """An event loop running forever in a (by default daemon) thread."""

    def __init__(
        self, name: str = "metapuppet-loop", *, daemon: bool = True, loop: str = "asyncio"
    ) -> None:
        self.loop = loop_factory(loop)()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=daemon)
        self.thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel what still runs on the loop (background pings and the like), then end it."""
        if self.loop.is_closed():
            return
        if self.loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(_cancel_all(), self.loop).result(timeout)
            except Exception:  # noqa: BLE001 - stopping anyway
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)
        if not self.thread.is_alive():
            self.loop.close()


async def _cancel_all() -> None:
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def call_sync(
    loop: asyncio.AbstractEventLoop,
    make_coro: Callable[[], Coroutine[Any, Any, T]],
    *,
    what: str,
    timeout: float | None = None,
) -> T:
    """Run a coroutine on ``loop`` from another thread and wait for its result.

    Unsafe from the loop's own thread (it would wait for itself forever), so that raises.
    """
    if running_loop() is loop:
        raise RuntimeError(
            f"{what}() blocks, and was called from the server's event loop; "
            f"use `await server.async_{what}(...)` (or the async method) there instead"
        )
    if loop.is_closed() or not loop.is_running():
        raise RuntimeError(f"{what}(): the server is not running; call server.run() first")
    future = asyncio.run_coroutine_threadsafe(make_coro(), loop)
    return future.result(timeout)


async def on_loop(loop: asyncio.AbstractEventLoop, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` on ``loop``, even when called from a coroutine on another loop."""
    if running_loop() is loop:
        return await awaitable
    coro = awaitable if asyncio.iscoroutine(awaitable) else _wrap(awaitable)
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


async def _wrap(awaitable: Awaitable[T]) -> T:
    return await awaitable
