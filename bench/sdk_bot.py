"""The python-wechaty 0.10.7 side of ``closed_loop.py --sdk``: a bot that reverses messages.

Runs in the bench's own SDK venv (``bench/.cache/sdk-venv``, Python <= 3.10), never in the
project's: python-wechaty is the baseline being compared against, not a dependency. It
logs in to the gRPC puppet service that ``mock_peer.mjs grpc`` serves, answers every
``cl:...`` text with the text reversed through ``Message.say`` (the SDK's ordinary way to
answer), and prints one JSON line, ``{"event": "login"}``, when the bot is logged in.

    python sdk_bot.py <endpoint host:port> <token> <plugin port>

The plugin port is a free loopback port for python-wechaty's plugin web server, which
refuses to start when its default (5000) is taken; no plugin is registered, so nothing
listens on it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from wechaty import Contact, Message, Wechaty, WechatyOptions  # type: ignore[import-not-found]

__all__ = ["Reverser", "main"]


class Reverser(Wechaty):  # type: ignore[misc]
    """Answers ``cl:`` texts with the text reversed; ignores its own messages."""

    async def on_login(self, contact: Contact) -> None:
        print(json.dumps({"event": "login"}), flush=True)

    async def on_message(self, msg: Message) -> None:
        if msg.is_self():
            return
        text = msg.text()
        if text.startswith("cl:"):
            await msg.say(text[::-1])


async def main(endpoint: str, token: str, plugin_port: int) -> None:
    options: Any = WechatyOptions(
        endpoint=endpoint, token=token, host="127.0.0.1", port=plugin_port
    )
    bot = Reverser(options)
    await bot.start()
    await asyncio.Event().wait()  # until the bench terminates the process


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: sdk_bot.py <endpoint host:port> <token> <plugin port>")
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
