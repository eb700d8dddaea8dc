"""Every bound the transport keeps, with its config key and default, in one place.

``docs/security.md`` lists them all (with the bounds of the other layers). Each is read
from the config once, at start, and a bad value is a :class:`ConfigError` naming its key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..errors import ConfigError

__all__ = [
    "DEFAULT_AUTH_TIMEOUT_S",
    "DEFAULT_MAX_BUFFERED_BYTES",
    "DEFAULT_MAX_CONNECTIONS_PER_ADDRESS",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_MAX_PENDING",
    "DEFAULT_MAX_PENDING_PER_ADDRESS",
    "DEFAULT_MAX_UNAUTHENTICATED_BYTES",
    "DEFAULT_TAKEOVER_PROBE_S",
    "Limits",
]

DEFAULT_MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
DEFAULT_MAX_UNAUTHENTICATED_BYTES: Final = 8 * 1024
DEFAULT_AUTH_TIMEOUT_S: Final = 5.0
DEFAULT_MAX_PENDING_PER_ADDRESS: Final = 64
DEFAULT_MAX_PENDING: Final = 1024
DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: Final = 1024
DEFAULT_TAKEOVER_PROBE_S: Final = 3.0
DEFAULT_MAX_BUFFERED_BYTES: Final = 8 * 1024 * 1024


def _number(section: Mapping[str, Any], where: str, key: str, default: float) -> float:
    value = section.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{where}.{key} must be a positive number (default {default:g})")
    return float(value)


def _count(section: Mapping[str, Any], where: str, key: str, default: int) -> int:
    value = section.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}.{key} must be a whole number of at least 1 (default {default})")
    return value


def _names(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where} must be a list of strings (or null for the default)")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class Limits:
    """The transport's bounds (see ``docs/security.md``)."""

    #: one frame of an authenticated client (``server.max_message_bytes``)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    #: everything a connection may send before it has authenticated
    max_unauthenticated_bytes: int = DEFAULT_MAX_UNAUTHENTICATED_BYTES
    #: a connection that has not authenticated after this long is closed
    auth_timeout: float = DEFAULT_AUTH_TIMEOUT_S
    #: connections still authenticating, per remote address and in all
    max_pending_per_address: int = DEFAULT_MAX_PENDING_PER_ADDRESS
    max_pending: int = DEFAULT_MAX_PENDING
    #: open connections per remote address, authenticated or not
    max_connections_per_address: int = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS
    #: how long a bot's connection gets to answer before a newcomer with its name may
    #: replace it (a half-open socket does not answer)
    takeover_probe: float = DEFAULT_TAKEOVER_PROBE_S
    #: bytes waiting to be written to one web client before it is dropped as too slow
    max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES
    #: events of one puppet connection received but not yet acknowledged; past this the
    #: server stops reading that socket (the server's ``max_queued_events``)
    max_events_in_flight: int = 10_000
    #: ``Host`` names the server answers to (None: the bound address and loopback names)
    allowed_hosts: tuple[str, ...] | None = None
    #: ``Origin`` of browser Socket.IO clients (None: same origin only; ``*``: any)
    allowed_origins: tuple[str, ...] | None = None

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], *, max_events_in_flight: int) -> Limits:
        server = raw.get("server") or {}
        web = raw.get("web") or {}
        if not isinstance(server, Mapping) or not isinstance(web, Mapping):
            raise ConfigError("the 'server' and 'web' sections of the config must be objects")
        return cls(
            max_message_bytes=_count(
                server, "server", "max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES
            ),
            max_unauthenticated_bytes=_count(
                server, "server", "max_unauthenticated_bytes", DEFAULT_MAX_UNAUTHENTICATED_BYTES
            ),
            auth_timeout=_number(server, "server", "auth_timeout_s", DEFAULT_AUTH_TIMEOUT_S),
            max_pending_per_address=_count(
                server, "server", "max_pending_per_address", DEFAULT_MAX_PENDING_PER_ADDRESS
            ),
            max_pending=_count(server, "server", "max_pending_connections", DEFAULT_MAX_PENDING),
            max_connections_per_address=_count(
                server,
                "server",
                "max_connections_per_address",
                DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            ),
            takeover_probe=_number(server, "server", "takeover_probe_s", DEFAULT_TAKEOVER_PROBE_S),
            max_buffered_bytes=_count(web, "web", "max_buffered_bytes", DEFAULT_MAX_BUFFERED_BYTES),
            max_events_in_flight=max(1, max_events_in_flight),
            allowed_hosts=_names(server.get("allowed_hosts"), "server.allowed_hosts"),
            allowed_origins=_names(web.get("allowed_origins"), "web.allowed_origins"),
        )
