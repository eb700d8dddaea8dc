"""Cluster settings: which Redis the server processes share, and how long what lives there.

Read from the config's ``cluster`` section (``cluster.redis_url``, also
``METAPUPPET_REDIS_URL`` and ``metapuppet serve --redis URL``). Without a URL there is no
cluster: one process, nothing shared, no Redis needed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from ..errors import ConfigError

__all__ = [
    "DEFAULT_SEEN_TTL_S",
    "SCHEMES",
    "ClusterSettings",
    "redact_url",
]

#: how long a handled event id is remembered: it must cover the Node outbox's replay window
#: (an event the client still holds is sent again after every reconnect, to any process)
DEFAULT_SEEN_TTL_S: Final = 24 * 3600.0
#: URL schemes python-socketio's AsyncRedisManager and redis-py understand
SCHEMES: Final = (
    "redis",
    "rediss",
    "unix",
    "valkey",
    "valkeys",
    "redis+sentinel",
    "valkey+sentinel",
)
_PASSWORD_IN_QUERY = re.compile(r"(password=)[^&]*", re.IGNORECASE)
_KEYS: Final = {
    "redis_url",
    "channel",
    "key_prefix",
    "seen_ttl_s",
    "claim_lease_s",
    "host_ttl_s",
    "refresh_s",
    "forward_max_bytes",
}


def redact_url(url: str) -> str:
    """``url`` without its password (for logs and error messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<an unreadable Redis URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        # a lone user part may be a password too (redis://secret@host): hide it as well
        netloc = f"{user}:***@{hosts}" if colon else f"***@{hosts}"
    query = _PASSWORD_IN_QUERY.sub(r"\1***", parts.query)
    text = f"{parts.scheme}://{netloc}{parts.path}"
    return text + (f"?{query}" if query else "")


def _number(section: Mapping[str, Any], key: str, default: float, low: float) -> float:
    value = section.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
        raise ConfigError(f"cluster.{key} must be a number of at least {low:g}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class ClusterSettings:
    """Where the shared Redis is and how its keys are named and kept."""

    redis_url: str
    #: the Socket.IO manager's pub/sub channel (the same in every process of a cluster)
    channel: str = "metapuppet"
    #: the prefix of every key MetaPuppet keeps in Redis
    key_prefix: str = "metapuppet"
    seen_ttl_s: float = DEFAULT_SEEN_TTL_S
    #: how long a process's claim on an event holds while it handles it; a process found
    #: dead (its liveness key expired) loses its claims at once
    claim_lease_s: float = 300.0
    #: a process whose liveness key is this old is taken as gone (its bots, its claims)
    host_ttl_s: float = 3.0
    #: how often each process renews its liveness and reads the others' changes
    refresh_s: float = 0.5
    #: events larger than this are shown to other processes without their payload
    forward_max_bytes: int = 256 * 1024

    def __post_init__(self) -> None:
        scheme = self.redis_url.partition("://")[0].lower() if "://" in self.redis_url else ""
        if scheme not in SCHEMES:
            raise ConfigError(
                f"cluster.redis_url {redact_url(self.redis_url)!r} is not a Redis URL: use "
                "redis://host:6379/0, rediss://, unix:///path/redis.sock, valkey://, or "
                "redis+sentinel://host1:26379,host2:26379/0/<service>"
            )
        if self.host_ttl_s <= self.refresh_s:
            raise ConfigError(
                f"cluster.host_ttl_s ({self.host_ttl_s:g}) must be longer than "
                f"cluster.refresh_s ({self.refresh_s:g})"
            )

    @property
    def safe_url(self) -> str:
        """The URL without its password."""
        return redact_url(self.redis_url)

    @classmethod
    def from_config(
        cls, raw: Mapping[str, Any], redis_url: str | None = None
    ) -> ClusterSettings | None:
        """The settings of the config's ``cluster`` section; ``redis_url`` (a constructor
        argument, ``--redis``) wins over the file. None: no cluster."""
        section = raw.get("cluster") or {}
        if not isinstance(section, Mapping):
            raise ConfigError('cluster must be an object, e.g. {"redis_url": "redis://..."}')
        unknown = sorted(set(section) - _KEYS)
        if unknown:
            raise ConfigError(
                f"cluster.{unknown[0]} is not a setting; known: {', '.join(sorted(_KEYS))}"
            )
        url = redis_url or section.get("redis_url")
        if not url:
            return None
        if not isinstance(url, str):
            raise ConfigError("cluster.redis_url must be a string like redis://host:6379/0")
        for key in ("channel", "key_prefix"):
            value = section.get(key)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"cluster.{key} must be a non-empty string")
        return cls(
            redis_url=url,
            channel=str(section.get("channel") or "metapuppet"),
            key_prefix=str(section.get("key_prefix") or "metapuppet"),
            seen_ttl_s=_number(section, "seen_ttl_s", DEFAULT_SEEN_TTL_S, 60),
            claim_lease_s=_number(section, "claim_lease_s", 300.0, 1),
            host_ttl_s=_number(section, "host_ttl_s", 3.0, 0.2),
            refresh_s=_number(section, "refresh_s", 0.5, 0.05),
            forward_max_bytes=int(_number(section, "forward_max_bytes", 256 * 1024, 1024)),
        )
