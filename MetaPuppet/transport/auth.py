"""Who may connect, and as what: every token check in one authenticator.

The server's main token (``server.token``) opens every role. ``server.puppet_token`` opens
the puppet role only and ``server.web_token`` the web role only, with every web
permission; ``web.tokens`` maps further web tokens to a list of permissions;
``server.bot_tokens`` gives a bot a token of its own, and then only that token opens it::

    {"server": {"token": "...", "web_token": "...", "bot_tokens": {"shop": "..."}},
     "web": {"tokens": {"<a long random token>": ["read"]}}}

Socket clients never send a token: they send a key derived from it and their nonce
(:func:`~MetaPuppet.protocol.key_id`), and :meth:`Authenticator.find` computes that key for
every token that opens the role. Bearer tokens (the REST API) are compared in constant time.
Every candidate is compared on every check, so the time taken does not tell which one
nearly matched. Failed attempts from one address are slowed down.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..config import MIN_EXPOSED_TOKEN_LENGTH
from ..errors import ConfigError
from ..protocol import MAX_BOT_NAME_LENGTH, ROLE_PUPPET, ROLE_WEB, key_id, proof_matches

__all__ = [
    "FULL_ACCESS",
    "PERMISSIONS",
    "PERM_ACCEPT",
    "PERM_READ",
    "PERM_SEND",
    "Authenticator",
    "Grant",
    "TokenRegistry",
    "describe",
    "is_loopback",
]

PERM_READ: Final = "read"  # contacts, rooms, members, clients, events, subscriptions
PERM_SEND: Final = "send"  # send text or files to a contact or a room
PERM_ACCEPT: Final = "accept"  # accept friend requests
PERMISSIONS: Final = (PERM_READ, PERM_SEND, PERM_ACCEPT)
FULL_ACCESS: Final = frozenset(PERMISSIONS)

# failed authentications from one address: this many per window are free, then each
# refusal is held back longer, up to the cap
AUTH_WINDOW_S: Final = 60.0
AUTH_FREE_FAILURES: Final = 5
AUTH_MAX_DELAY_S: Final = 5.0
AUTH_MAX_ADDRESSES: Final = 10_000


@dataclass(frozen=True, slots=True)
class Grant:
    """What one presented token may do; ``source`` says which config key it came from."""

    permissions: frozenset[str]
    source: str

    def allows(self, permission: str | None) -> bool:
        return permission is None or permission in self.permissions


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
    """The extra web tokens of ``web.tokens``, each with its permissions."""

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

    def candidates(self) -> list[tuple[str, Grant]]:
        """Every token with its grant (for the socket handshake's key check)."""
        return [(token.decode(), grant) for token, grant in self._grants]

    def __len__(self) -> int:
        return len(self._grants)


def _bot_tokens(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError("server.bot_tokens must map bot names to tokens")
    tokens: dict[str, str] = {}
    for bot, token in value.items():
        if not isinstance(bot, str) or not bot.strip() or len(bot) > MAX_BOT_NAME_LENGTH:
            raise ConfigError(
                f"server.bot_tokens: bot names must be 1 to {MAX_BOT_NAME_LENGTH} characters"
            )
        if not isinstance(token, str) or not token:
            raise ConfigError(f"server.bot_tokens[{bot!r}] must be a non-empty string")
        tokens[bot] = token
    return tokens


def describe(permissions: Iterable[str]) -> list[str]:
    """Permissions in their documented order (for answers to clients)."""
    held = set(permissions)
    return [p for p in PERMISSIONS if p in held]


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Authenticator:
    """Every token check of the server, for sockets and the REST API alike."""

    def __init__(
        self,
        token: str | None,
        *,
        puppet_token: str | None = None,
        web_token: str | None = None,
        web_tokens: TokenRegistry | None = None,
        bot_tokens: Mapping[str, str] | None = None,
    ) -> None:
        #: the main token: opens every role (settable: the test kit gives a fresh one)
        self.token = token
        self.puppet_token = puppet_token
        self.web_token = web_token
        self.web_tokens = web_tokens if web_tokens is not None else TokenRegistry()
        #: bot name -> its own puppet token; such a bot is opened by that token only
        self.bot_tokens: dict[str, str] = _bot_tokens(bot_tokens)
        #: failed authentications per address and minute before refusals are slowed down
        self.free_failures = AUTH_FREE_FAILURES
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], token: str | None) -> Authenticator:
        server = raw.get("server") or {}
        return cls(
            token,
            puppet_token=server.get("puppet_token"),
            web_token=server.get("web_token"),
            web_tokens=TokenRegistry.from_config(raw),
            bot_tokens=_bot_tokens(server.get("bot_tokens")),
        )

    def secrets(self) -> list[str]:
        """Every configured server token (for checks that none of them leaks)."""
        fixed = [t for t in (self.token, self.puppet_token, self.web_token) if t]
        return fixed + list(self.bot_tokens.values())

    def opens(self, token: str, role: str) -> bool:
        """Constant-time check of ``token`` against the server tokens that open ``role``."""
        candidates = [self.token, self.puppet_token if role == ROLE_PUPPET else self.web_token]
        given = token.encode()
        matched = False
        for candidate in candidates:
            if candidate:
                matched |= hmac.compare_digest(given, candidate.encode())
        return matched

    def authenticate(self, token: Any, role: str = ROLE_WEB) -> Grant | None:
        """The grant of a presented token for ``role``, or None: a server token that
        opens the role gets every permission; ``web.tokens`` entries what they list."""
        if not isinstance(token, str) or not token:
            return None
        opens = self.opens(token, role)
        extra = self.web_tokens.authenticate(token) if role == ROLE_WEB else None
        return Grant(FULL_ACCESS, "server.token") if opens else extra

    def candidates(self, role: str, bot: str | None) -> list[tuple[str, Grant]]:
        """The tokens that open ``role`` (for a puppet: for ``bot``), each with its grant."""
        if role == ROLE_PUPPET:
            if bot is not None and bot in self.bot_tokens:
                return [(self.bot_tokens[bot], Grant(FULL_ACCESS, "server.bot_tokens"))]
            found = [(self.token, "server.token"), (self.puppet_token, "server.puppet_token")]
            return [(t, Grant(FULL_ACCESS, source)) for t, source in found if t]
        found = [(self.token, "server.token"), (self.web_token, "server.web_token")]
        fixed = [(t, Grant(FULL_ACCESS, source)) for t, source in found if t]
        return fixed + self.web_tokens.candidates()

    def find(self, role: str, bot: str | None, nonce: str, key: str) -> tuple[str, Grant] | None:
        """The token (and grant) whose :func:`~MetaPuppet.protocol.key_id` for ``nonce`` is
        ``key``, among those that open ``role``; None when none is. Every candidate is
        compared (no early exit)."""
        found: tuple[str, Grant] | None = None
        for token, grant in self.candidates(role, bot):
            if proof_matches(key_id(token, nonce), key) and found is None:
                found = (token, grant)
        return found

    def failed(self, remote: str | None) -> float:
        """Count a failed authentication from ``remote``; how long to hold the refusal."""
        now = time.monotonic()
        key = remote or "?"
        recent = [t for t in self._failures.pop(key, []) if now - t < AUTH_WINDOW_S]
        recent.append(now)
        self._failures[key] = recent
        while len(self._failures) > AUTH_MAX_ADDRESSES:
            self._failures.popitem(last=False)
        excess = len(recent) - self.free_failures
        return 0.0 if excess <= 0 else min(AUTH_MAX_DELAY_S, 0.1 * 2 ** (excess - 1))

    def check_bind(self, host: str) -> None:
        """Refuse to serve without a token, or on a public address with any weak token
        that opens a role (main, puppet, web, per-bot; ``web.tokens`` are always checked)."""
        if not self.token:
            raise ConfigError(
                "no token configured: run `metapuppet init` (writes config.json with a fresh "
                "token) or set METAPUPPET_TOKEN"
            )
        if is_loopback(host):
            return
        named = [
            ("server.token", self.token),
            ("server.puppet_token", self.puppet_token),
            ("server.web_token", self.web_token),
            *((f"server.bot_tokens[{bot!r}]", t) for bot, t in self.bot_tokens.items()),
        ]
        weak = [key for key, token in named if token and len(token) < MIN_EXPOSED_TOKEN_LENGTH]
        if weak:
            raise ConfigError(
                f"refusing to listen on {host}, which is not loopback, with "
                f"{', '.join(weak)} shorter than {MIN_EXPOSED_TOKEN_LENGTH} characters: "
                "anyone who guesses it can drive your bot. Use `metapuppet init` (or "
                '`python -c "import secrets; print(secrets.token_urlsafe(32))"`) for '
                "strong tokens, or bind 127.0.0.1."
            )
