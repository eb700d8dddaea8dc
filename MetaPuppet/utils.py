"""Helpers the original project's examples import."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

from ._loop import LoopThread

__all__ = [
    "new_loop_thread",
    "run_coroutine_in_new_thread",
    "set_attributes",
]


def run_coroutine_in_new_thread(coro: Coroutine[Any, Any, Any]) -> threading.Thread:
    """Run ``coro`` to completion on a fresh event loop in a new thread; returns the thread."""
    # not a daemon: the coroutine finishes even when the main thread ends right after
    thread = threading.Thread(target=asyncio.run, args=(coro,), name="metapuppet-coroutine")
    thread.start()
    return thread


def new_loop_thread() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """An event loop running forever in a daemon thread (the original's helper)."""
    runner = LoopThread()
    return runner.loop, runner.thread


def set_attributes(obj: Any, **kwargs: Any) -> None:
    for key, value in kwargs.items():
        setattr(obj, key, value)
