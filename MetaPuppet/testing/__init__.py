"""Test kit: a real MetaPuppet server and a real Node client on the mock puppet, from pytest.

::

    from MetaPuppet.testing import mock_wechat

    async with mock_wechat(MyBot()) as wx:        # server on a free port + Node client, logged in
        alice = await wx.contact("Alice")
        await alice.say("hello")                   # a direct message to the bot
        assert (await alice.next_reply(timeout=5)).text == "olleh"

Mocked contacts and rooms live in the Node process (``wechaty-puppet-mock``); the kit drives
them through the ``mock`` helper that the Node client exposes to snippets in mock mode, and
watches the bot's own outgoing messages (which the mock echoes back as ``self`` messages)
to collect replies per conversation. Every process the kit starts is stopped on exit, also
when the test fails.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections import OrderedDict, defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config, new_token
from ..errors import MetaPuppetError
from ..protocol import BotEvent
from ..robot import RobotBase
from ..server import SocketServerCore
from ..sweet import SweetSocketServer
from ..types import FileBox, Message

__all__ = [
    "DEFAULT_USER_NAME",
    "MockBot",
    "MockContact",
    "MockRoom",
    "MockWechat",
    "NodeClient",
    "NodeClientError",
    "SentMessage",
    "find_client_dir",
    "mock_wechat",
    "node_command",
]

DEFAULT_USER_NAME = "MetaPuppet Bot"
_LIVE_PROCESSES: set[int] = set()


def _kill_leftovers() -> None:
    for pid in list(_LIVE_PROCESSES):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


atexit.register(_kill_leftovers)


class NodeClientError(MetaPuppetError):
    """The Node client could not be started, or stopped unexpectedly."""


def find_client_dir() -> Path:
    """Where ``socket_client/`` is: ``$METAPUPPET_CLIENT_DIR`` or beside the package."""
    configured = os.environ.get("METAPUPPET_CLIENT_DIR")
    candidates = [Path(configured)] if configured else []
    candidates += [Path(__file__).resolve().parents[2] / "socket_client", Path("socket_client")]
    for candidate in candidates:
        if (candidate / "src" / "main.ts").is_file():
            if not (candidate / "node_modules" / "tsx").is_dir():
                raise NodeClientError(
                    f"{candidate} has no node_modules: run `npm ci` there (or `make setup`)"
                )
            return candidate.resolve()
    raise NodeClientError(
        "cannot find socket_client/ (the Node client); set METAPUPPET_CLIENT_DIR to its path"
    )


def node_command(client_dir: Path, config_path: Path) -> list[str]:
    node = shutil.which("node")
    if node is None:
        raise NodeClientError("node is not on PATH: install Node.js 20")
    return [node, "--import", "tsx", "src/main.ts", "--config", str(config_path)]


class NodeClient:
    """One ``socket_client`` process with its own config file and log."""

    def __init__(self, config: dict[str, Any], *, log_level: str = "info") -> None:
        self.config = config
        self.log_level = log_level
        self.client_dir = find_client_dir()
        self._dir = Path(tempfile.mkdtemp(prefix="metapuppet-node-"))
        self.config_path = self._dir / "config.json"
        self.log_path = self._dir / "client.log"
        #: the client's outbox file survives a restart of the client (not of the kit)
        self.outbox_path = self._dir / "outbox.jsonl"
        config.setdefault("client", {}).setdefault("outbox_path", str(self.outbox_path))
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.config_path.write_text(json.dumps(self.config), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("METAPUPPET_")} | {
            "METAPUPPET_LOG_LEVEL": self.log_level,
            # the client stops by itself if this process is killed (no orphaned Node clients)
            "METAPUPPET_PARENT_PID": str(os.getpid()),
        }
        log_file = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.process = await asyncio.create_subprocess_exec(
                *node_command(self.client_dir, self.config_path),
                cwd=self.client_dir,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
            )
        finally:
            log_file.close()
        _LIVE_PROCESSES.add(self.process.pid)

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self, timeout: float = 5.0, *, keep_files: bool = False) -> None:
        """SIGTERM the client (SIGKILL after ``timeout``); remove its files unless kept."""
        process = self.process
        if process is None:
            if not keep_files:
                shutil.rmtree(self._dir, ignore_errors=True)
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        # the client's own children (if any) go with its process group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        _LIVE_PROCESSES.discard(process.pid)
        if not keep_files:
            shutil.rmtree(self._dir, ignore_errors=True)

    async def kill(self) -> None:
        """SIGKILL the client (a crash, for reliability tests)."""
        if self.process is not None and self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()
            _LIVE_PROCESSES.discard(self.process.pid)


class SentMessage(Message):
    """A message the bot sent (seen through the mock's echo of the bot's own messages)."""

    async def file(self) -> FileBox:
        """The file this message carried (an image, an attachment, ...)."""
        return await self.to_file_box()


class _Conversation:
    bot: MockBot
    id: str

    async def next_reply(self, timeout: float = 5.0) -> SentMessage:
        """The next message the bot sent to this conversation; waits up to ``timeout``."""
        queue = self.bot.replies_to(self.id)
        try:
            return await asyncio.wait_for(queue.get(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"the bot sent nothing to {self!r} within {timeout:.1f} s"
            ) from None

    def pending_replies(self) -> list[SentMessage]:
        """Replies received and not yet taken, without waiting."""
        queue = self.bot.replies_to(self.id)
        taken = []
        while not queue.empty():
            taken.append(queue.get_nowait())
        return taken


@dataclass(eq=False)
class MockContact(_Conversation):
    """A contact in the mock WeChat, able to talk to the bot."""

    bot: MockBot = field(repr=False)
    id: str
    name: str

    async def say(
        self,
        text: str,
        *,
        room: MockRoom | None = None,
        mention_bot: bool = False,
        mentions: Iterable[MockContact] = (),
    ) -> str | None:
        """Send text to the bot, or to ``room`` (optionally @-mentioning the bot)."""
        mention_ids = [c.id for c in mentions]
        if room is not None and mention_bot:
            mention_ids.insert(0, self.bot.user_id)
            text = f"@{self.bot.user_name}\u2005{text}"
        return await self.bot.mock_say(self.id, {"text": text}, room, mention_ids)

    async def send_file(
        self, name: str, data: bytes, *, room: MockRoom | None = None
    ) -> str | None:
        """Send a file (an image, a document, ...) to the bot or to ``room``."""
        content = {"file": {"name": name, "base64": base64.b64encode(data).decode("ascii")}}
        return await self.bot.mock_say(self.id, content, room, [])

    async def send_friend_request(self, hello: str = "") -> str:
        """Ask the bot to be friends; returns the friendship id."""
        return str(
            await self.bot.exec(
                "return mock.friendshipRequest(args.contactId, args.hello)",
                {"contactId": self.id, "hello": hello},
            )
        )

    def __repr__(self) -> str:
        return f"MockContact({self.name!r}, id={self.id!r})"


@dataclass(eq=False)
class MockRoom(_Conversation):
    """A room in the mock WeChat; the bot is a member."""

    bot: MockBot = field(repr=False)
    id: str
    topic: str
    members: list[MockContact] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"MockRoom({self.topic!r}, id={self.id!r})"


class MockBot:
    """One bot account: a Node client on the mock puppet, logged in."""

    def __init__(self, wx: MockWechat, name: str, user_name: str) -> None:
        self.wx = wx
        self.name = name
        self.user_name = user_name
        self.user_id = ""
        self.node: NodeClient | None = None
        self._replies: dict[str, asyncio.Queue[SentMessage]] = defaultdict(asyncio.Queue)
        self.events: list[BotEvent] = []
        self.startup_seconds = 0.0

    @property
    def server(self) -> SocketServerCore:
        return self.wx.server

    def replies_to(self, conversation_id: str) -> asyncio.Queue[SentMessage]:
        return self._replies[conversation_id]

    def observe(self, event: BotEvent) -> None:
        """Note an event of this bot (the kit's listener calls it)."""
        self.events.append(event)
        if event.name == "message" and event.payload.get("self"):
            target = event.payload.get("roomId") or event.payload.get("listenerId")
            if target:
                sent = SentMessage(self.server, self.name, event.payload)
                self._replies[str(target)].put_nowait(sent)

    async def exec(self, code: str, args: Any = None, timeout: float = 30.0) -> Any:
        """Run a snippet on this bot (``mock`` and ``mocker`` are in scope)."""
        return await self.server.exec_snippet(code, args, bot=self.name, timeout=timeout)

    async def contact(self, name: str, **payload: Any) -> MockContact:
        contact_id = await self.exec(
            "return mock.contact(args.name, args.payload)", {"name": name, "payload": payload}
        )
        return MockContact(self, str(contact_id), name)

    async def room(self, topic: str, members: Iterable[MockContact] = ()) -> MockRoom:
        people = list(members)
        room_id = await self.exec(
            "return mock.room(args.topic, args.memberIds)",
            {"topic": topic, "memberIds": [m.id for m in people]},
        )
        return MockRoom(self, str(room_id), topic, people)

    async def mock_say(
        self, from_id: str, content: dict[str, Any], room: MockRoom | None, mentions: list[str]
    ) -> str | None:
        result = await self.exec(
            "return mock.say(args.fromId, args.content, args.toId, args.mentionIds)",
            {
                "fromId": from_id,
                "content": content,
                "toId": room.id if room is not None else None,
                "mentionIds": mentions,
            },
        )
        return None if result is None else str(result)

    async def puppet_calls(self, method: str | None = None) -> list[dict[str, Any]]:
        """Puppet calls the mock ignores (alias, signature, ...), as the bot made them."""
        calls = await self.exec("return mock.calls")
        return [c for c in calls if method is None or c.get("method") == method]

    def server_message(self, message_id: str) -> Message:
        """A view of message ``message_id`` on this bot (to recall or forward it, ...)."""
        return Message(self.server, self.name, {"id": message_id})

    async def friendship_accepted(self, friendship_id: str) -> bool:
        return bool(await self.exec("return mock.accepted(args.id)", {"id": friendship_id}))


class MockWechat:
    """The running kit: ``server`` plus one :class:`MockBot` per bot account."""

    def __init__(self, server: SocketServerCore, *, log_level: str = "warn") -> None:
        self.server = server
        self.log_level = log_level
        self.bots: dict[str, MockBot] = {}
        self._remove_listener = server.add_event_listener(self._observe)
        self._logins: dict[str, asyncio.Future[dict[str, Any]]] = {}
        # events are delivered at least once: one whose acknowledgement was lost (a server
        # stopping, say) comes again, possibly to another server; count it once
        self._observed: OrderedDict[str, None] = OrderedDict()

    def _observe(self, event: BotEvent) -> None:
        if event.id in self._observed:
            return
        self._observed[event.id] = None
        if len(self._observed) > 50_000:
            self._observed.popitem(last=False)
        bot = self.bots.get(event.bot)
        if bot is not None:
            bot.observe(event)
        if event.name == "login":
            waiter = self._logins.get(event.bot)
            if waiter is not None and not waiter.done():
                waiter.set_result(event.payload)

    def bot(self, name: str | None = None) -> MockBot:
        if name is None:
            return next(iter(self.bots.values()))
        return self.bots[name]

    def replace_server(self, server: SocketServerCore) -> None:
        """Watch ``server`` instead of the current one (after a restart of the server)."""
        self._remove_listener()
        self.server = server
        self._remove_listener = server.add_event_listener(self._observe)

    async def restart_server(self, server: SocketServerCore, timeout: float = 30.0) -> None:
        """Stop the running server and start ``server`` (not started yet) in its place.

        The new server listens on the same address with the same token, so the Node
        clients reconnect by themselves; returns once every bot is connected again::

            await wx.restart_server(SweetSocketServer(robot=MyBot(), config=Config(),
                                                      rate_limiter=None))
        """
        old = self.server
        host, port = old.host, old.port
        await old.stop()
        server.token = old.token
        if server.robot is not None:
            server.robot.add_server(server)
        await server.start(host=host, port=port)
        self.replace_server(server)
        for name in self.bots:
            await server.async_wait_for_puppet(timeout, bot=name)

    async def add_bot(
        self,
        name: str,
        *,
        user_name: str = DEFAULT_USER_NAME,
        timeout: float = 60.0,
        client_options: dict[str, Any] | None = None,
    ) -> MockBot:
        """Start another Node client on the mock puppet, logged in as ``user_name``."""
        if name in self.bots:
            raise ValueError(f"bot {name!r} is already running")
        bot = MockBot(self, name, user_name)
        self.bots[name] = bot
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._logins[name] = waiter
        bot.node = NodeClient(
            {
                "server": {"token": self.server.token},
                "client": {"url": self.server.url, "bot": name, **(client_options or {})},
                "puppet": {"name": "wechaty-puppet-mock"},
                "mock": {"user_name": user_name},
            },
            log_level=self.log_level,
        )
        started = time.monotonic()
        await bot.node.start()
        await self._wait_for_login(bot, waiter, timeout)
        bot.startup_seconds = time.monotonic() - started
        return bot

    async def _wait_for_login(
        self, bot: MockBot, waiter: asyncio.Future[dict[str, Any]], timeout: float
    ) -> None:
        name = bot.name
        assert bot.node is not None
        process = bot.node.process
        assert process is not None
        exited: asyncio.Future[Any] = asyncio.ensure_future(process.wait())
        pending: set[asyncio.Future[Any]] = {waiter, exited}
        try:
            done, _ = await asyncio.wait(
                pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not exited.done():
                exited.cancel()
        if waiter not in done:
            reason = (
                f"exited with code {process.returncode}"
                if process.returncode is not None
                else f"did not log in within {timeout:.0f} s"
            )
            tail = bot.node.log_tail()
            await bot.node.stop()
            del self.bots[name]
            raise NodeClientError(
                f"the Node client for bot {name!r} {reason}; its log ends with:\n{tail}"
            )
        user = waiter.result()
        bot.user_id = str(user.get("id") or "")

    async def restart_node(
        self, name: str | None = None, *, kill: bool = False, timeout: float = 60.0
    ) -> None:
        """Stop a bot's Node client (SIGTERM, or SIGKILL with ``kill``) and start it again
        with the same config and outbox file; returns once it logged in again.

        The mock WeChat lives in the Node process, so its contacts and rooms start afresh.
        """
        bot = self.bot(name)
        assert bot.node is not None
        if kill:
            await bot.node.kill()
        else:
            await bot.node.stop(keep_files=True)
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._logins[bot.name] = waiter
        await bot.node.start()
        await self._wait_for_login(bot, waiter, timeout)

    async def contact(self, name: str, **payload: Any) -> MockContact:
        """Create a contact (a friend of the first bot)."""
        return await self.bot().contact(name, **payload)

    async def room(self, topic: str, members: Iterable[MockContact] = ()) -> MockRoom:
        """Create a room of the first bot with ``members``."""
        return await self.bot().room(topic, members)

    async def close(self) -> None:
        self._remove_listener()
        for bot in self.bots.values():
            if bot.node is not None:
                await bot.node.stop()


@contextlib.asynccontextmanager
async def mock_wechat(
    robot: RobotBase | None = None,
    *,
    bots: Iterable[str] = ("mock-bot",),
    server: SocketServerCore | None = None,
    user_name: str = DEFAULT_USER_NAME,
    log_level: str = "warn",
    timeout: float = 60.0,
    client_options: dict[str, Any] | None = None,
) -> AsyncIterator[MockWechat]:
    """Start a server on a free loopback port and one logged-in mock bot per name in ``bots``.

    Pass ``server`` to test your own server subclass (it must not be started yet; it gets
    a fresh random token when it has none). Everything started here is stopped on exit.
    """
    if server is None:
        # no outgoing rate limit: tests send faster than a WeChat account should
        server = SweetSocketServer(
            robot=robot, config=Config(), token=new_token(), port=0, rate_limiter=None
        )
    elif robot is not None:
        server.robot = robot
        robot.add_server(server)
    if not server.token:
        server.token = new_token()
    await server.start(host="127.0.0.1", port=0)
    wx = MockWechat(server, log_level=log_level)
    try:
        for name in bots:
            await wx.add_bot(
                name, user_name=user_name, timeout=timeout, client_options=client_options
            )
        yield wx
    finally:
        await wx.close()
        await wx.server.stop()
        if wx.server is not server:  # replaced by restart_server()
            await server.stop()
