"""The offline demo: a server, the Node client on the mock puppet, a scripted conversation."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .robot import ASSETS, RobotBase
from .testing import MockBot, MockContact, MockRoom, SentMessage, mock_wechat
from .wechaty import FileBox, Friendship, Message, MessageType

__all__ = [
    "PICTURE",
    "DemoBot",
    "Step",
    "Transcript",
    "play_script",
    "run_demo",
]

PICTURE = ASSETS / "metapuppet.png"


class DemoBot(RobotBase):
    """Greets, answers mentions in rooms, welcomes new friends and sends a picture on request."""

    async def on_message(self, message: Message) -> Any:
        if message.room is not None and not message.mention_self:
            return None
        text = message.mention_text.strip()
        name = message.talker.name or "friend"
        if "picture" in text.lower() or "图" in text:
            return FileBox.from_file(PICTURE)
        if message.room is not None:
            return (
                f"{name}, you asked in {message.room.topic_text or 'this room'}: {text!r}. "
                "MetaPuppet drives WeChat bots from Python."
            )
        return f"Hello {name}! You said: {text}"

    async def on_friendship(self, friendship: Friendship) -> Any:
        await friendship.accept()
        return f"Hi {friendship.contact.name or 'there'}, nice to meet you! I am a MetaPuppet bot."


@dataclass
class Step:
    name: str
    ok: bool = False
    detail: str = ""
    ms: float = 0.0


class Transcript:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def said(self, who: str, to: str, what: str) -> None:
        print(f"  {who} → {to}: {what}", file=self.out, flush=True)

    def answered(self, reply: SentMessage, to: str, ms: float) -> None:
        what = reply.text if reply.type == MessageType.Text else f"[{reply.type.name}]"
        print(f"  bot → {to}: {what}   ({ms:.0f} ms)", file=self.out, flush=True)


async def _step(
    steps: list[Step], name: str, out: TextIO, body: Callable[[Step], Awaitable[None]]
) -> None:
    step = Step(name)
    steps.append(step)
    print(f"\n▶ {name}", file=out, flush=True)
    started = time.perf_counter()
    try:
        await body(step)
    except AssertionError as exc:
        step.ok, step.detail = False, str(exc)
    except Exception as exc:  # a demo step must report, not crash the demo
        step.ok, step.detail = False, f"{type(exc).__name__}: {exc}"
    step.ms = (time.perf_counter() - started) * 1000
    mark = "✓" if step.ok else "✗"
    print(f"  {mark} {step.detail}", file=out, flush=True)


async def play_script(bot: MockBot, out: TextIO = sys.stdout, timeout: float = 10.0) -> list[Step]:
    """Play the scripted conversation; returns one :class:`Step` per checked behaviour."""
    transcript = Transcript(out)
    alice = await bot.contact("Alice")
    bob = await bot.contact("Bob")
    room = await bot.room("MetaPuppet Fans", [alice, bob])
    steps: list[Step] = []

    async def exchange(
        who: MockContact, text: str, where: MockContact | MockRoom, *, mention: bool = False
    ) -> tuple[SentMessage, float]:
        label = who.name if where is who else f"{who.name} in {room.topic}"
        transcript.said(label, "bot" if where is who else room.topic, text)
        started = time.perf_counter()
        if where is who:
            await who.say(text)
        else:
            await who.say(text, room=room, mention_bot=mention)
        reply = await where.next_reply(timeout)
        ms = (time.perf_counter() - started) * 1000
        transcript.answered(reply, who.name if where is who else room.topic, ms)
        return reply, ms

    async def direct(step: Step) -> None:
        reply, _ = await exchange(alice, "Hello bot!", alice)
        assert "Hello Alice" in reply.text, f"unexpected reply {reply.text!r}"
        step.ok, step.detail = True, "direct message answered"

    async def mention(step: Step) -> None:
        reply, _ = await exchange(bob, "what is MetaPuppet?", room, mention=True)
        assert "Bob" in reply.text and reply.room_id == room.id, f"unexpected {reply.text!r}"
        step.ok, step.detail = True, "mention answered in the room"

    async def friendship(step: Step) -> None:
        carol = await bot.contact("Carol", friend=False)
        transcript.said("Carol", "bot", "[friend request] Hi, I'm Carol")
        started = time.perf_counter()
        friendship_id = await carol.send_friend_request("Hi, I'm Carol")
        reply = await carol.next_reply(timeout)
        transcript.answered(reply, "Carol", (time.perf_counter() - started) * 1000)
        assert await bot.friendship_accepted(friendship_id), "the request was not accepted"
        assert "Carol" in reply.text, f"unexpected greeting {reply.text!r}"
        step.ok, step.detail = True, "friend request accepted and greeted"

    async def picture(step: Step) -> None:
        reply, _ = await exchange(alice, "Please send me a picture", alice)
        assert reply.type == MessageType.Image, f"expected an image, got {reply.type.name}"
        received = await reply.file()
        assert received.data == PICTURE.read_bytes(), "the image arrived with different bytes"
        step.ok, step.detail = True, f"image {received.name} arrived intact ({received.size} bytes)"

    for name, body in (
        ("A direct message", direct),
        ("A room message that mentions the bot", mention),
        ("A friend request", friendship),
        ("A picture sent back", picture),
    ):
        await _step(steps, name, out, body)
    return steps


async def run_demo(once: bool = False, out: TextIO = sys.stdout, log_level: str = "warn") -> int:
    print(
        "MetaPuppet demo: starting the server and the Node client on the mock puppet…",
        file=out,
        flush=True,
    )
    started = time.perf_counter()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with mock_wechat(DemoBot(), bots=["demo"], log_level=log_level) as wx:
        bot = wx.bot("demo")
        print(
            f"server {wx.server.url} · bot {bot.user_name!r} logged in "
            f"({(time.perf_counter() - started):.1f} s)",
            file=out,
            flush=True,
        )
        steps = await play_script(bot, out)
        failed = [s for s in steps if not s.ok]
        print(
            f"\n{len(steps) - len(failed)}/{len(steps)} steps passed "
            f"in {(time.perf_counter() - started):.1f} s",
            file=out,
            flush=True,
        )
        for step in failed:
            print(f"MISSING: {step.name}: {step.detail}", file=out, flush=True)
        print(next_steps(), file=out, flush=True)
        if not once:
            await _interactive(bot, out, stop)
            print("\ndemo stopped", file=out, flush=True)
    return 1 if failed else 0


def next_steps(path: str | None = None, bin_dir: Path | None = None) -> str:
    """What to run after the demo, and how to get ``metapuppet`` on the PATH if it is not.

    ``make demo`` runs ``.venv/bin/metapuppet``; a shell without the venv activated has no
    ``metapuppet`` command, so say where it is and how to reach it.
    """
    folder = bin_dir if bin_dir is not None else Path(sys.executable).parent
    search = os.environ.get("PATH", "") if path is None else path
    found = shutil.which("metapuppet", path=search)
    lines = [
        "",
        "Next, your own robot (see README.md, 'Write a robot'):",
        "  metapuppet init                      # config.json with a fresh token",
        "  metapuppet serve --bot mybot:bot     # your robot; in a second terminal:",
        "  metapuppet client                    # the Node client with the same config",
    ]
    if found is None or Path(found).resolve().parent != folder.resolve():
        venv = folder.parent
        lines += [
            f"`metapuppet` lives in {folder}, which is not on your PATH. Either activate the venv:",
            f"  source {venv}/bin/activate",
            "or, from the repository, use the make targets:",
            "  make init · make serve BOT=mybot:bot · make client · make doctor",
        ]
    return "\n".join(lines)


async def _interactive(bot: MockBot, out: TextIO, stop: asyncio.Event) -> None:
    """Keep running: type lines to speak as Alice; Ctrl-C or SIGTERM stops."""
    alice = await bot.contact("Alice (you)")
    interactive = sys.stdin is not None and sys.stdin.isatty()
    hint = "Type a message to send it as Alice; " if interactive else ""
    print(f"\nThe demo keeps running. {hint}Ctrl-C stops.", file=out, flush=True)
    lines: asyncio.Queue[str] = asyncio.Queue()
    if interactive:
        loop = asyncio.get_running_loop()

        def read_lines() -> None:  # a daemon thread: never holds the exit
            for line in sys.stdin:
                loop.call_soon_threadsafe(lines.put_nowait, line)

        threading.Thread(target=read_lines, name="demo-stdin", daemon=True).start()
    while not stop.is_set():
        next_line = asyncio.ensure_future(lines.get())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({next_line, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not next_line.done():
            next_line.cancel()
            break
        text = next_line.result().rstrip("\n")
        if not text.strip():
            continue
        await alice.say(text)
        try:
            reply = await alice.next_reply(10)
            what = reply.text if reply.type == MessageType.Text else f"[{reply.type.name}]"
            print(f"  bot → Alice: {what}", file=out, flush=True)
        except AssertionError:
            print("  (no reply)", file=out, flush=True)
