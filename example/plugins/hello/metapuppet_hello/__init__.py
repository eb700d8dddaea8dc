"""metapuppet-hello: an example MetaPuppet plugin.

It answers ``/hello`` with a greeting (the ``greeting`` setting), counts how often it
greeted each person (shown in its dashboard panel) and, if ``morning_to`` is set, wishes
that contact good morning every day at ``morning_at`` through the proactive outbox (so
on iLink it waits for the contact's send window instead of failing).

Install it next to MetaPuppet (``pip install ./example/plugins/hello``) and configure it::

    "plugins": {"settings": {"hello": {"greeting": "Hi", "morning_to": "wxid_alice"}}}
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from MetaPuppet.plugins import Panel, Plugin, Setting

__all__ = ["greeted", "plugin"]

#: how many times each person was greeted (this process)
greeted: Counter[str] = Counter()


def _panel() -> list[dict[str, Any]]:
    return [{"person": name, "greeted": count} for name, count in greeted.most_common(20)]


plugin = Plugin(
    "hello",
    description="Answers /hello; wishes one contact good morning every day",
    settings={
        "greeting": Setting(str, default="Hello", help="the first word of the answer"),
        "morning_to": Setting(str, default="", help="a contact id to greet every morning"),
        "morning_at": Setting(str, default="08:30", help="when (HH:MM, the server's time)"),
    },
    panel=Panel("Greetings", _panel),
)


@plugin.router.command("hello")
async def hello(message: Any, args: str) -> str:
    name = args.strip() or message.talker.name or "there"
    greeted[name] += 1
    return f"{plugin.config['greeting']}, {name}!"


@plugin.every("1d", at="08:30", id="hello.morning")
async def good_morning(ctx: Any) -> None:
    contact = plugin.config.get("morning_to")
    if contact:
        await ctx.send_later(
            contact, f"{plugin.config['greeting']}, good morning!", expires=3 * 3600
        )
