"""Web tokens and what each may do.

The server's main token (``server.token``) may do everything, as a puppet or as a web
client. ``server.web_token`` opens the web role only, with every web permission;
``web.tokens`` maps further web tokens to a list of permissions::

    {"server": {"token": "...", "web_token": "..."},
     "web": {"tokens": {"<a long random token>": ["read"]}}}

Tokens are compared in constant time, and every configured token is compared on every
check so the time taken does not tell which one nearly matched.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..config import MIN_EXPOSED_TOKEN_LENGTH
from ..errors import ConfigError

PERM_READ: Final = "read"  # contacts, rooms, members, clients, events, subscriptions
PERM_SEND: Final = "send"  # send text or files to a contact or a room
PERM_ACCEPT: Final = "accept"  # accept friend requests
PERMISSIONS: Final = (PERM_READ, PERM_SEND, PERM_ACCEPT)


@dataclass(frozen=True, slots=True)
class Grant:
    """What one presented token may do; ``source`` says which config key it came from."""

    permissions: frozenset[str]
    source: str

    def allows(self, permission: str | None) -> bool:
        return permission is None or permission in self.permissions


FULL_ACCESS: Final = frozenset(PERMISSIONS)


def _permissions(value: Any, where: str) -> frozenset[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(p, str) for p in value):
        raise ConfigError(f"{where} must be a list of permissions ({', '.join(PERMISSIONS)})")
    unknown = sorted(set(value) - FULL_ACCESS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown permission {', '.join(map(repr, unknown))}; "
            f"use {', '.join(PERMISSIONS)}"
        )
    return frozenset(value)


def _check_token(token: Any, where: str) -> str:
    if not isinstance(token, str) or len(token) < MIN_EXPOSED_TOKEN_LENGTH:
        raise ConfigError(
            f"{where} must be a string of at least {MIN_EXPOSED_TOKEN_LENGTH} characters "
            "(web tokens end up in browsers; `metapuppet init` shows how to make one)"
        )
    return token


class TokenRegistry:
    """The extra web tokens of ``web.tokens``, each with its permissions.

    The main token and ``server.web_token`` are checked by the server itself
    (``SocketServerCore._token_opens``); both open every web permission.
    """

    def __init__(self, tokens: Mapping[str, Any] | None = None) -> None:
        self._grants: list[tuple[bytes, Grant]] = []
        for token, permissions in (tokens or {}).items():
            _check_token(token, "a key of web.tokens")
            grant = Grant(_permissions(permissions, "web.tokens[...]"), "web.tokens")
            self._grants.append((token.encode(), grant))

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> TokenRegistry:
        web = raw.get("web") or {}
        if not isinstance(web, Mapping):
            raise ConfigError("the 'web' section of the config must be an object")
        tokens = web.get("tokens") or {}
        if not isinstance(tokens, Mapping):
            raise ConfigError("web.tokens must map tokens to lists of permissions")
        return cls(tokens)

    def authenticate(self, presented: str) -> Grant | None:
        """The grant of ``presented``, or None when it is none of these tokens."""
        candidate = presented.encode()
        found: Grant | None = None
        for token, grant in self._grants:  # no early exit: compare against every token
            if hmac.compare_digest(candidate, token) and found is None:
                found = grant
        return found

    def __len__(self) -> int:
        return len(self._grants)


def describe(permissions: Iterable[str]) -> list[str]:
    """Permissions in their documented order (for answers to clients)."""
    held = set(permissions)
    return [p for p in PERMISSIONS if p in held]
