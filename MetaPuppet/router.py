"""The earlier import path of routing; the code lives in :mod:`MetaPuppet.dispatch`."""

from __future__ import annotations

from .dispatch import (
    CONTINUE,
    DialogSpec,
    ErrorHandler,
    Filter,
    FlowControl,
    Handler,
    Invocation,
    Middleware,
    Route,
    Router,
    call_function,
    invoke,
    log_calls,
    message_text,
    throttle,
)
from .routable import BoundHook, HookOrDecorator, Routable, RouteDecorator
from .types import HOOK_KINDS

__all__ = [
    "CONTINUE",
    "HOOK_KINDS",
    "BoundHook",
    "DialogSpec",
    "ErrorHandler",
    "Filter",
    "FlowControl",
    "Handler",
    "HookOrDecorator",
    "Invocation",
    "Middleware",
    "Routable",
    "Route",
    "RouteDecorator",
    "Router",
    "call_function",
    "invoke",
    "log_calls",
    "message_text",
    "throttle",
]
