"""``metapuppet mock``: make a mocked contact talk to a running bot on the mock puppet.

::

    metapuppet mock say --as Alice "hello"                     # a direct message to the bot
    metapuppet mock say --as Bob --room Team --mention "hi"    # in a room, @-mentioning the bot
    metapuppet mock say --as Alice --file cat.png              # a file
    metapuppet mock friend --as Carol "add me?"                # a friend request

It talks to the server named by the config file (``client.url``, else ``server.host`` and
``server.port``) with the config's web token (``server.web_token``, else ``server.token``;
the ``send`` permission is needed), through the REST routes ``/api/mock/say`` and
``/api/mock/friend``, and prints the bot's answer when one comes (``--wait`` seconds; the
token then also needs ``read``). Only bots on the mock puppet have a console.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Final

import aiohttp

from .config import Config, load_config
from .errors import ConfigError

__all__ = ["DEFAULT_WAIT_S", "add_mock_parser", "cmd_mock", "server_url", "web_token"]

DEFAULT_WAIT_S: Final = 5.0
_ANY_ADDRESS: Final = {"0.0.0.0", "::", ""}


def server_url(config: Config, override: str | None = None) -> str:
    """Where the server listens, as a client reaches it."""
    url = override or config.raw["client"].get("url")
    if url:
        return str(url).rstrip("/")
    host = config.host
    if host in _ANY_ADDRESS:
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{config.port}"


def web_token(config: Config) -> str:
    token = config.raw["server"].get("web_token") or config.token
    if not token:
        raise ConfigError(
            "no token in the config: run `metapuppet init`, or set METAPUPPET_WEB_TOKEN / "
            "METAPUPPET_TOKEN"
        )
    return str(token)


class ServerRefused(Exception):
    """The server answered with its error envelope."""

    def __init__(self, status: int, body: Any) -> None:
        envelope = body if isinstance(body, dict) else {}
        self.error = str(envelope.get("error") or f"http_{status}")
        self.message = str(envelope.get("message") or f"HTTP {status}")
        super().__init__(f"{self.message} ({self.error})")


async def _post(
    session: aiohttp.ClientSession, url: str, path: str, body: dict[str, Any]
) -> dict[str, Any]:
    async with session.post(url + path, json=body) as response:
        try:
            answer = await response.json(content_type=None)
        except (json.JSONDecodeError, aiohttp.ContentTypeError, UnicodeDecodeError):
            answer = None
        if response.status != 200 or not isinstance(answer, dict):
            raise ServerRefused(response.status, answer)
        return answer


class ReplyWatch:
    """The bot's own messages, read from the live stream (opened before the call, so an
    answer that comes at once is not missed)."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def run(self, session: aiohttp.ClientSession, url: str, bot: str | None) -> None:
        query = {"event": "message", **({"bot": bot} if bot else {})}
        try:
            async with session.get(url + "/api/events/stream", params=query) as response:
                if response.status != 200:
                    return
                kind = ""
                async for raw in response.content:
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                        if kind == "hello":
                            self.ready.set()
                    elif line.startswith("data:") and kind == "events":
                        for event in json.loads(line[5:]):
                            if (event.get("payload") or {}).get("self"):
                                with contextlib.suppress(asyncio.QueueFull):
                                    self.messages.put_nowait(event)
        except (TimeoutError, aiohttp.ClientError, ValueError):  # a bad or too long line
            return
        finally:
            self.ready.set()

    async def answer_to(self, conversation: str, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = await asyncio.wait_for(self.messages.get(), left)
            except TimeoutError:
                return None
            payload = event.get("payload") or {}
            if conversation in (payload.get("roomId"), payload.get("listenerId")):
                return dict(payload)
        return None


def _describe(payload: dict[str, Any]) -> str:
    text = payload.get("text")
    if text:
        return str(text)
    kind = payload.get("typeName") or "message"
    name = payload.get("filename")
    return f"[{kind}{': ' + str(name) if name else ''}]"


def _request(args: argparse.Namespace) -> tuple[str, dict[str, Any], str]:
    """The route, its body, and what the contact did (for the transcript)."""
    if args.action == "friend":
        hello = " ".join(args.text)
        body: dict[str, Any] = {"as": args.name, "hello": hello}
        return "/api/mock/friend", body, f"[friend request] {hello}".rstrip()
    body = {"as": args.name}
    if args.file is not None:
        if args.text:
            raise ConfigError("give either a text or --file, not both")
        path = Path(args.file)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"--file: cannot read {path}: {exc.strerror or exc}") from None
        body["file"] = {"name": path.name, "base64": base64.b64encode(data).decode("ascii")}
        said = f"[file {path.name}, {len(data)} bytes]"
    else:
        text = " ".join(args.text)
        if not text.strip():
            raise ConfigError('say what: metapuppet mock say --as Alice "hello"')
        body["text"] = said = text
    if args.room is not None:
        body["room"] = args.room
        body["mention"] = bool(args.mention)
    elif args.mention:
        raise ConfigError("--mention needs --room (a direct message needs no mention)")
    return "/api/mock/say", body, said


async def _mock(args: argparse.Namespace, config: Config) -> int:
    route, body, said = _request(args)
    if args.bot:
        body["bot"] = args.bot
    url = server_url(config, args.url)
    headers = {"Authorization": f"Bearer {web_token(config)}"}
    timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_connect=10)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        watch = ReplyWatch()
        if args.wait > 0:
            watch.task = asyncio.create_task(watch.run(session, url, args.bot))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.ready.wait(), 10)
        try:
            started = time.monotonic()
            try:
                answer = await asyncio.wait_for(_post(session, url, route, body), 60)
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                print(
                    f"metapuppet mock: cannot reach the server at {url} ({exc or 'timeout'}): "
                    "is `metapuppet serve` running? (--url or --config to point elsewhere)",
                    file=sys.stderr,
                )
                return 1
            except ServerRefused as exc:
                hint = ""
                if exc.error == "bot_required":
                    hint = " (add --bot NAME)"
                elif exc.error == "permission_denied":
                    hint = " (the console needs a token with the 'send' permission)"
                print(f"metapuppet mock: the server refused: {exc}{hint}", file=sys.stderr)
                return 1
            contact = answer.get("contact") or {}
            room = answer.get("room")
            where = f" in {room.get('topic')}" if isinstance(room, dict) else ""
            print(f"{contact.get('name', args.name)}{where} → bot {answer.get('bot')}: {said}")
            if args.room is not None and not args.mention:
                print("  (robots answer room messages only when mentioned: add --mention)")
            if args.wait > 0 and watch.task is not None and not watch.task.done():
                conversation = room.get("id") if isinstance(room, dict) else contact.get("id")
                reply = await watch.answer_to(str(conversation), args.wait)
                if reply is None:
                    print(f"  (no answer within {args.wait:g} s)")
                else:
                    ms = (time.monotonic() - started) * 1000
                    to = room.get("topic") if isinstance(room, dict) else contact.get("name")
                    print(f"bot → {to}: {_describe(reply)}   ({ms:.0f} ms)")
        finally:
            if watch.task is not None:
                watch.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await watch.task
    return 0


def cmd_mock(args: argparse.Namespace) -> int:
    if args.wait < 0:
        raise ConfigError("--wait must be 0 (do not wait) or more seconds")
    config = load_config(args.config)
    return asyncio.run(_mock(args, config))


def add_mock_parser(sub: Any) -> None:
    """``metapuppet mock say|friend``, registered by cli.py."""
    mock = sub.add_parser(
        "mock",
        help="make a mocked contact talk to a running bot on the mock puppet",
        description="Make a mocked contact talk to a running bot on the mock puppet: "
        "`metapuppet mock say --as Alice hello`, `... --room Team --mention hi`, "
        "`metapuppet mock friend --as Carol 'add me?'`. Uses the config's server address and "
        "web token; only bots on the mock puppet have a console.",
    )
    actions = mock.add_subparsers(dest="action", required=True)
    say = actions.add_parser("say", help="a mocked contact says something to the bot")
    say.add_argument("text", nargs="*", help="what the contact says")
    say.add_argument("--file", help="send this file instead of text")
    say.add_argument("--room", metavar="TOPIC", help="say it in this room (created if needed)")
    say.add_argument("--mention", action="store_true", help="in a room: @-mention the bot")
    friend = actions.add_parser("friend", help="a mocked contact asks the bot to be friends")
    friend.add_argument("text", nargs="*", help="the request's greeting")
    friend.set_defaults(file=None, room=None, mention=False)
    for parser in (say, friend):
        parser.add_argument(
            "--as", dest="name", required=True, metavar="NAME", help="the mocked contact's name"
        )
        parser.add_argument("--bot", help="the bot (needed when several are connected)")
        parser.add_argument("--config", help="config file (default ./config.json)")
        parser.add_argument("--url", help="the server's URL (default from the config)")
        parser.add_argument(
            "--wait",
            type=float,
            default=DEFAULT_WAIT_S,
            metavar="S",
            help=f"wait this long for the bot's answer and print it (default {DEFAULT_WAIT_S:g};"
            " 0: do not wait)",
        )
        parser.set_defaults(func=cmd_mock)
