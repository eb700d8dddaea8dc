"""Cluster mode: several server processes on one Redis (see docs/scaling.md).

Set ``cluster.redis_url`` (or ``METAPUPPET_REDIS_URL``, ``metapuppet serve --redis URL``)
and every server process joins python-socketio's ``AsyncRedisManager`` on that Redis and
shares the state that must not be per process: handled event ids, dialog state (the
``RedisStorage`` dialog store), rate-limit buckets, send budgets and who is connected
where. Any process drives any bot; events are handled on the process that holds the bot's
connection. Without the setting nothing of this is used and no Redis is needed.
"""

from __future__ import annotations

from .core import Cluster, ClusterHost
from .settings import ClusterSettings, redact_url

__all__ = ["Cluster", "ClusterHost", "ClusterSettings", "redact_url"]
