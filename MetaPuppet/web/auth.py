"""Web tokens and what each may do (the code lives in :mod:`MetaPuppet.transport.auth`)."""

from __future__ import annotations

from ..transport.auth import (
    FULL_ACCESS,
    PERM_ACCEPT,
    PERM_READ,
    PERM_SEND,
    PERMISSIONS,
    Grant,
    TokenRegistry,
    describe,
)

__all__ = [
    "FULL_ACCESS",
    "PERMISSIONS",
    "PERM_ACCEPT",
    "PERM_READ",
    "PERM_SEND",
    "Grant",
    "TokenRegistry",
    "describe",
]
