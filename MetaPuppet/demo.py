"""The offline demo: a server, the Node client on a puppet, a scripted conversation.

``metapuppet demo`` runs it on the mock puppet; ``metapuppet demo --puppet ilink`` on
MetaPuppet's own ilink puppet against the offline iLink simulator, QR scan included (the
kit's ``mock_wechat(puppet="ilink")``, with a scanner that shows each step). ``--once``
plays the script and exits 0 only when every step worked, naming what was missing.
"""

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

from .errors import NotSupported, SendWindowClosed
from .protocol import BotEvent
from .robot import ASSETS, RobotBase
from .testing import (
    ILinkBot,
    ILinkContact,
    MockBot,
    MockContact,
    MockRoom,
    NodeClientError,
    SentMessage,
    mock_wechat,
)
from .testing.ilink import BotAccount, QrLogin
from .wechaty import FileBox, Friendship, Message, MessageType

__all__ = [
    "PICTURE",
    "PUPPETS",
    "REPLY_TIMEOUT_S",
    "DemoBot",
    "QrWalkthrough",
    "Step",
    "Transcript",
    "play_ilink_script",
    "play_script",
    "run_demo",
    "run_step",
]

PUPPETS = ("mock", "ilink")
#: how long a step waits for the bot's answer
REPLY_TIMEOUT_S = 15.0

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
        async with message.typing():  # "typing..." where the channel has it (iLink)
            await asyncio.sleep(0.2)  # an LLM would think here
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

    def answered(self, reply: Any, to: str, ms: float) -> None:
        print(f"  bot → {to}: {reply_text(reply)}   ({ms:.0f} ms)", file=self.out, flush=True)

    def note(self, text: str) -> None:
        print(f"  {text}", file=self.out, flush=True)


def reply_text(reply: Any) -> str:
    """What a reply shows: its text, or its kind (a mock ``SentMessage`` or an iLink reply)."""
    kind = getattr(reply, "type", None)
    if isinstance(kind, MessageType):
        return str(reply.text) if kind == MessageType.Text else f"[{kind.name}]"
    kinds = [k for k in getattr(reply, "kinds", []) if k != "text"]
    return f"[{kinds[0]}]" if kinds else str(reply.text)


async def run_step(
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


async def play_script(
    bot: MockBot, out: TextIO = sys.stdout, timeout: float | None = None
) -> list[Step]:
    """Play the scripted conversation; returns one :class:`Step` per checked behaviour."""
    timeout = REPLY_TIMEOUT_S if timeout is None else timeout
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
        await run_step(steps, name, out, body)
    return steps


async def run_demo(
    once: bool = False, out: TextIO = sys.stdout, log_level: str = "warn", puppet: str = "mock"
) -> int:
    if puppet not in PUPPETS:
        raise ValueError(f"the demo runs on {' or '.join(PUPPETS)}, not {puppet!r}")
    where = "the mock puppet" if puppet == "mock" else "the ilink puppet and the iLink simulator"
    print(
        f"MetaPuppet demo: starting the server and the Node client on {where}…",
        file=out,
        flush=True,
    )
    started = time.perf_counter()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if puppet == "ilink":
            return await _run_ilink(once, out, log_level, stop, started)
        return await _run_mock(once, out, log_level, stop, started)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _run_mock(
    once: bool, out: TextIO, log_level: str, stop: asyncio.Event, started: float
) -> int:
    async with mock_wechat(DemoBot(), bots=["demo"], log_level=log_level) as wx:
        bot = wx.bot("demo")
        print(
            f"server {wx.server.url} · bot {bot.user_name!r} logged in "
            f"({(time.perf_counter() - started):.1f} s)",
            file=out,
            flush=True,
        )
        steps = await play_script(bot, out)
        failed = _summary(steps, out, started)
        if not once:
            await _interactive(bot, out, stop)
            print("\ndemo stopped", file=out, flush=True)
    return 1 if failed else 0


def _summary(steps: list[Step], out: TextIO, started: float) -> list[Step]:
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
    return failed


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


async def _interactive(bot: MockBot | ILinkBot, out: TextIO, stop: asyncio.Event) -> None:
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
            print(f"  bot → Alice: {reply_text(reply)}", file=out, flush=True)
        except AssertionError:
            print("  (no reply)", file=out, flush=True)


# ---------------------------------------------------------------------------- on iLink


def print_qr(text: str, out: TextIO) -> None:
    """Draw ``text`` as a QR code in the terminal, as the Node client does for a real scan."""
    import segno

    segno.make(text, error="m").terminal(out=out, compact=True, border=1)


class QrWalkthrough:
    """Logs the demo's iLink bot in the way a person does, one visible step at a time.

    The kit calls it with each QR code the puppet fetched. It waits until the QR code
    reached Python as a ``scan`` event (what the dashboard and a robot see), prints it,
    lets the account owner's simulated phone scan it, waits for the puppet to report
    "scanned", then confirms; the kit then waits for ``login``. ``seen`` names each step
    that reached Python, for the summary.
    """

    def __init__(self, out: TextIO, pause: float = 0.4, timeout: float = 20.0) -> None:
        self.out = out
        self.pause = pause
        self.timeout = timeout
        self.seen: list[str] = []

    async def _scan_event(self, bot: ILinkBot, wanted: Callable[[BotEvent], bool]) -> BotEvent:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for event in reversed(bot.events):
                if event.name == "scan" and wanted(event):
                    return event
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no such scan event reached Python within {self.timeout:g} s")

    async def __call__(self, bot: ILinkBot, qr: QrLogin) -> BotAccount:
        shown = await self._scan_event(bot, lambda e: e.payload.get("qrcode") == qr.img_content)
        self.seen.append("qr")
        print(
            f"\n  The bot shows a QR code ({shown.payload.get('statusName')}); "
            "scan it with WeChat to log in:",
            file=self.out,
            flush=True,
        )
        print_qr(qr.img_content, self.out)
        print(f"  {qr.img_content}", file=self.out, flush=True)
        await asyncio.sleep(self.pause)
        print(f"  📱 {bot.owner.name} scans it with WeChat…", file=self.out, flush=True)
        bot.sim.scan(bot.owner, qr.qrcode)
        await self._scan_event(bot, lambda e: e.payload.get("statusName") == "Scanned")
        self.seen.append("scanned")
        print("  ✓ scanned: WeChat asks to confirm the login on the phone", file=self.out)
        await asyncio.sleep(self.pause)
        print(f"  📱 {bot.owner.name} taps “confirm”", file=self.out, flush=True)
        account = bot.sim.confirm(qr.qrcode)
        self.seen.append("confirmed")
        return account


async def play_ilink_script(
    bot: ILinkBot, out: TextIO = sys.stdout, timeout: float | None = None
) -> list[Step]:
    """The scripted conversation on iLink: what works there, and what the channel refuses."""
    timeout = REPLY_TIMEOUT_S if timeout is None else timeout
    transcript = Transcript(out)
    server = bot.server
    alice: ILinkContact = await bot.contact("Alice")
    steps: list[Step] = []

    async def exchange(text: str) -> Any:
        transcript.said("Alice", "bot", text)
        started = time.perf_counter()
        await alice.say(text)
        reply = await alice.next_reply(timeout)
        transcript.answered(reply, "Alice", (time.perf_counter() - started) * 1000)
        return reply

    async def direct(step: Step) -> None:
        reply = await exchange("Hello bot!")
        assert "Hello" in reply.text and "Hello bot!" in reply.text, f"unexpected {reply.text!r}"
        transcript.note("(iLink gives a bot no contact names: the name is the user's id)")
        step.ok, step.detail = True, "direct message answered"

    async def typing(step: Step) -> None:
        states = [e.status for e in bot.sim.typing_events(alice.user)]
        assert states[:2] == [1, 2], f"WeChat saw no typing indicator ({states})"
        step.ok, step.detail = (
            True,
            "“typing…” shown while the robot worked (async with msg.typing())",
        )

    async def picture(step: Step) -> None:
        reply = await exchange("Please send me a picture")
        assert "image" in reply.kinds, f"expected an image, got {reply.kinds}"
        received = await reply.file()
        assert received.data == PICTURE.read_bytes(), "the image arrived with different bytes"
        step.ok, step.detail = (
            True,
            (f"image uploaded encrypted, decrypted by WeChat intact ({len(received.data)} bytes)"),
        )

    async def budget(step: Step) -> None:
        status = server.send_budget(bot.name, alice.id)
        deadline = time.monotonic() + 2
        while status is not None and not status.get("sent") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the picture arrived; its send is being counted
            status = server.send_budget(bot.name, alice.id)
        assert status is not None and status["open"], f"Alice's window is not open: {status}"
        rules = status["rules"]
        closes = time.strftime("%a %H:%M", time.localtime(status["closes_at"]))
        transcript.note(
            f"Alice's send window: {status['remaining']} of {rules['per_user_message']} "
            f"bot messages left, open until {closes} (each message of hers opens a new one)"
        )
        bob = await bot.contact("Bob")
        transcript.said("bot", "Bob", "Hi Bob!  (Bob never wrote to the bot)")
        before = len(list(bot.sim.all_sent()))
        try:
            await server.say(bob.id, "Hi Bob!", bot=bot.name)
        except SendWindowClosed as closed:
            transcript.note(f"✋ refused before anything was sent: {closed.reason}")
        else:
            raise AssertionError("a message to Bob, who never wrote, was not refused")
        assert len(list(bot.sim.all_sent())) == before, "a refused message reached WeChat"
        step.ok, step.detail = True, "send budget shown; a send outside it raises SendWindowClosed"

    async def rooms(step: Step) -> None:
        started = time.perf_counter()
        try:
            await server.rooms.find(topic="MetaPuppet Fans", bot=bot.name)
        except NotSupported as refused:
            ms = (time.perf_counter() - started) * 1000
            transcript.note(f"✋ Room.find: NotSupported in {ms:.0f} ms: {refused}")
        else:
            raise AssertionError("rooms were not refused on the ilink channel")
        step.ok, step.detail = True, "rooms refused at once (iLink bots get direct messages only)"

    for name, body in (
        ("A direct message", direct),
        ("Typing while the robot works", typing),
        ("A picture sent back", picture),
        ("The send budget", budget),
        ("What iLink cannot do: rooms", rooms),
    ):
        await run_step(steps, name, out, body)
    return steps


async def _run_ilink(
    once: bool, out: TextIO, log_level: str, stop: asyncio.Event, started: float
) -> int:
    walkthrough = QrWalkthrough(out)
    login = Step("Log in by scanning the QR code")
    print(f"\n▶ {login.name}", file=out, flush=True)
    try:
        async with mock_wechat(
            DemoBot(), puppet="ilink", bots=["demo"], log_level=log_level, qr_scanner=walkthrough
        ) as wx:
            bot = wx.bot("demo")
            login.ok = True
            login.detail = f"logged in as {bot.bot_id} ({time.perf_counter() - started:.1f} s)"
            print(f"  ✓ {login.detail}", file=out, flush=True)
            print(f"server {wx.server.url} · simulator {wx.sim.base_url}", file=out, flush=True)
            steps = [login, *await play_ilink_script(bot, out)]
            failed = _summary(steps, out, started)
            if not once:
                await _interactive(bot, out, stop)
                print("\ndemo stopped", file=out, flush=True)
    except NodeClientError as exc:
        missing = {"qr": "the QR code never reached Python", "scanned": "no 'scanned' status"}
        gaps = [text for key, text in missing.items() if key not in walkthrough.seen]
        login.detail = "; ".join(gaps) or f"{exc}".splitlines()[0]
        print(f"  ✗ {login.detail}", file=out, flush=True)
        _summary([login], out, started)
        return 1
    return 1 if failed else 0
