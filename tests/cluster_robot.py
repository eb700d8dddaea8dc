"""The robot of the cluster tests, in every server process (``metapuppet serve --bot
tests.cluster_robot:ClusterRobot`` and in the test's own process).

It writes what it handled to Redis (``CLUSTER_TEST_REDIS``, key prefix
``CLUSTER_TEST_PREFIX``), so a process killed with SIGKILL leaves its count behind:
``<prefix>:runs`` counts each handled ``n:<name>:<i>`` message (a count of 2 is a message
handled twice). Every such message gets one reply, ``ok n:<name>:<i>``; ``signup`` starts a
two-question dialog.
"""

from __future__ import annotations

import os
from typing import Any

import redis.asyncio as redis_asyncio

from MetaPuppet import Message, RobotBase
from MetaPuppet.dialog import Dialog

__all__ = ["ClusterRobot"]


class ClusterRobot(RobotBase):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._redis: Any = None

    def _client(self) -> Any:
        if self._redis is None:
            self._redis = redis_asyncio.Redis.from_url(os.environ["CLUSTER_TEST_REDIS"])
        return self._redis

    @RobotBase.dialog(trigger="signup")
    async def signup(self, d: Dialog) -> str:
        name = await d.ask("name?")
        city = await d.ask("city?")
        return f"welcome {name} from {city}"

    async def on_message(self, message: Message) -> Any:
        text = message.text
        if not text.startswith("n:"):
            return None
        prefix = os.environ["CLUSTER_TEST_PREFIX"]
        await self._client().hincrby(f"{prefix}:runs", text, 1)
        return f"ok {text}"

    async def aclose(self) -> None:
        await super().aclose()
        if self._redis is not None:
            await self._redis.aclose()
