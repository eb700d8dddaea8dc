"""Web clients, the live dashboard and the REST API (see docs/web.md).

The server creates one :class:`WebHub` as ``server.web``; most code only needs
``server.on_web_message(type=...)`` and ``await server.emit_to_web(event, data, to=...)``.
"""

from __future__ import annotations

from .actions import ACTIONS
from .auth import PERM_ACCEPT, PERM_READ, PERM_SEND, PERMISSIONS, Grant
from .errors import ERROR_CODES, WebError
from .filters import EventFilter
from .hub import WebHub

__all__ = [
    "ACTIONS",
    "ERROR_CODES",
    "PERMISSIONS",
    "PERM_ACCEPT",
    "PERM_READ",
    "PERM_SEND",
    "EventFilter",
    "Grant",
    "WebError",
    "WebHub",
]
