"""Dispatch: filters, handlers, middleware and routers (robots and dialogs build on them)."""

from __future__ import annotations

from .dialog_spec import DialogSpec
from .filters import Filter, message_text
from .handlers import CONTINUE, FlowControl, Handler, Invocation, call_function
from .host import DispatchHost
from .middleware import ErrorHandler, Middleware, invoke, log_calls, throttle
from .router import Route, Router

__all__ = [
    "CONTINUE",
    "DialogSpec",
    "DispatchHost",
    "ErrorHandler",
    "Filter",
    "FlowControl",
    "Handler",
    "Invocation",
    "Middleware",
    "Route",
    "Router",
    "call_function",
    "invoke",
    "log_calls",
    "message_text",
    "throttle",
]
