"""Issue 11, items 7-10, through the real chain: the Python server, the real Node client on
the mock puppet, real sockets and HTTP on loopback.

- 7: a 70 MiB message is moved to the dead letters; the messages after it are all handled.
- 8: a result too large for the frame limit fails that call only; a snippet that never
  yields is stopped at its timeout and the bot goes on.
- 9: ``FileBox.from_url`` to a private address is refused, to a configured host it works.
- 10: a lone UTF-16 surrogate in a chat message keeps the dashboard's event list and live
  stream working.
"""

from __future__ import annotations

import asyncio
import json
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from MetaPuppet import FileBox, RobotBase, SweetSocketServer
from MetaPuppet.config import Config, new_token
from MetaPuppet.errors import SnippetError, SnippetTimeout
from MetaPuppet.protocol import BotEvent
from MetaPuppet.testing import mock_wechat

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024


class Recorder(RobotBase):
    """Remembers the text of every message it handles; answers nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    async def on_message(self, message: Any) -> None:
        self.texts.append(message.text)


async def until(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def test_a_70_mib_message_is_dead_lettered_and_every_message_after_it_is_handled() -> None:
    robot = Recorder()
    errors: list[BotEvent] = []
    # an outbox large enough to hold the huge event: before the fix it was kept and re-sent
    # first on every reconnect, and the server closed the connection each time
    options = {"outbox_max_bytes": 512 * MiB}
    async with mock_wechat(robot, client_options=options) as wx:
        wx.server.add_event_listener(lambda e: errors.append(e) if e.name == "error" else None)
        bot = wx.bot()
        alice = await wx.contact("Alice")
        await alice.say("before")
        await until(lambda: robot.texts == ["before"], "the first message")
        assert bot.node is not None and bot.node.process is not None
        baseline = peak_rss_mib(bot.node.process.pid)
        started = time.monotonic()
        # 35 Mi characters, 70 MiB of UTF-8: under a cap that counts characters, over the
        # server's limit in bytes
        await bot.exec(
            "mock.say(args.from, {text: 'é'.repeat(args.size)}, null); return true",
            {"from": alice.id, "size": 35 * MiB},
            timeout=60,
        )
        for n in range(1, 6):
            await alice.say(f"after {n}")
        await until(lambda: len(robot.texts) == 6, "the five messages after the huge one", 60)
        elapsed = time.monotonic() - started
        assert robot.texts == ["before"] + [f"after {n}" for n in range(1, 6)]
        await until(lambda: any(e.payload.get("name") == "EventTooLarge" for e in errors), "error")
        error = next(e for e in errors if e.payload.get("name") == "EventTooLarge")
        event = error.payload["event"]
        assert event["name"] == "message" and event["id"].startswith("msg:")
        assert event["size"] > 70 * MiB
        assert event["limit"] == wx.server.config.max_message_bytes == 64 * MiB
        assert "larger than the server's frame limit of 67108864 bytes" in error.payload["message"]
        dead = bot.node.outbox_path.parent / "dead-letters.jsonl"
        assert error.payload["dead_letter"] == str(dead)
        assert stat.S_IMODE(dead.stat().st_mode) == 0o600
        with dead.open(encoding="utf-8") as lines:
            record = json.loads(lines.readline())
        assert record["id"] == event["id"] and record["reason"] == "too_large_for_server"
        assert len(record["envelope"]["payload"]["text"]) == 35 * MiB
        log = bot.node.log_path.read_text(encoding="utf-8")
        assert "disconnected from" not in log, "the connection never dropped"
        print(
            f"\n70 MiB message: dead-lettered, 5 later messages handled in {elapsed:.1f} s; "
            f"Node client peak RSS {baseline:.0f} MiB before, "
            f"{peak_rss_mib(bot.node.process.pid):.0f} MiB after"
        )


async def test_a_result_over_the_frame_limit_fails_that_call_only() -> None:
    config = Config()
    config.raw["server"]["max_message_bytes"] = 1 * MiB
    server = SweetSocketServer(config=config, token=new_token(), port=0, rate_limiter=None)
    async with mock_wechat(None, server=server) as wx:
        bot = wx.bot()
        slow = asyncio.ensure_future(
            bot.exec("await new Promise((r) => setTimeout(r, 500)); return 'still here'")
        )
        await asyncio.sleep(0.1)
        # fewer characters than the limit, but 1.5 MB of UTF-8
        with pytest.raises(SnippetError) as caught:
            await bot.exec("return 'é中'.repeat(300000)")
        assert caught.value.kind == "serialize"
        assert "its JSON is 1500002 bytes" in caught.value.message
        assert f"over the cap of {MiB - 64} bytes" in caught.value.message
        assert await slow == "still here", "the other pending call was not failed"
        assert await bot.exec("return 'x'.repeat(500000).length") == 500_000
        assert wx.server.bots == ["mock-bot"]


async def test_a_snippet_that_never_yields_is_stopped_and_the_bot_goes_on() -> None:
    robot = Recorder()
    async with mock_wechat(robot, client_options={"snippet_stall_ms": 1000}) as wx:
        bot = wx.bot()
        alice = await wx.contact("Alice")
        started = time.monotonic()
        with pytest.raises(SnippetTimeout) as caught:
            await bot.exec("while (true) {}", timeout=1.0)
        sync_stop = time.monotonic() - started
        assert "without yielding" in str(caught.value) and "was stopped" in str(caught.value)
        assert await bot.exec("return 1 + 1") == 2
        started = time.monotonic()
        with pytest.raises(SnippetTimeout) as caught:
            await bot.exec("await bot.Contact.findAll(); for (;;) {}", timeout=1.0)
        async_stop = time.monotonic() - started
        assert "was stopped" in str(caught.value)
        await alice.say("are you there?")
        await until(lambda: robot.texts == ["are you there?"], "the message after the stops")
        print(f"\nstopped: synchronous loop after {sync_stop:.1f} s, loop after an await after ")
        print(f"{async_stop:.1f} s (timeout 1 s, snippet_stall_ms 1000)")
        assert sync_stop < 5.5 and async_stop < 5.5  # before the Python side gives up (+5 s)


class _Files(BaseHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        type(self).requests.append(self.path)
        body = b"quarterly numbers"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def file_server() -> Any:
    handler = type("Handler", (_Files,), {"requests": []})
    http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield http, handler
    http.shutdown()
    http.server_close()


async def test_file_box_from_url_refuses_private_addresses_unless_configured(
    file_server: Any,
) -> None:
    http, handler = file_server
    url = f"http://127.0.0.1:{http.server_address[1]}/report.txt?sig=secret"
    async with mock_wechat(None) as wx:
        alice = await wx.contact("Alice")
        with pytest.raises(SnippetError) as caught:
            await wx.server.say(alice.id, FileBox.from_url(url))
        assert caught.value.code == "blocked_address"
        assert "127.0.0.1, a loopback address" in caught.value.message
        assert "client.file_download.allow_hosts" in caught.value.message
        assert "secret" not in str(caught.value)
        assert handler.requests == [], "the private server was never asked"
    allowed = {"file_download": {"allow_hosts": ["127.0.0.1"], "max_bytes": 1024}}
    async with mock_wechat(None, client_options=allowed) as wx:
        alice = await wx.contact("Alice")
        await wx.server.say(alice.id, FileBox.from_url(url))
        received = await (await alice.next_reply(10)).file()
        assert received.name == "report.txt" and received.data == b"quarterly numbers"
        assert handler.requests == ["/report.txt?sig=secret"]


async def test_a_lone_surrogate_in_a_message_keeps_the_event_list_and_the_stream_working() -> None:
    robot = Recorder()
    async with mock_wechat(robot) as wx:
        alice = await wx.contact("Alice\ud83d")  # a name cut in the middle of an emoji
        url = wx.server.url + "/api"
        headers = {"Authorization": f"Bearer {wx.server.token}"}
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
            async with http.get(url + "/events/stream?event=message") as stream:
                assert stream.status == 200
                assert (await stream.content.readline()).startswith(b"event: hello")
                await alice.say("half an emoji: \ud83d and a stray \udc00 end")
                await alice.say("the next one")
                seen = b""
                while b"the next one" not in seen:
                    seen += await asyncio.wait_for(stream.content.readline(), 15)
            text = seen.decode("utf-8")  # valid UTF-8 all the way through
            assert "half an emoji: \ufffd and a stray \ufffd end" in text
            async with http.get(url + "/events?event=message") as response:
                assert response.status == 200, await response.text()
                events = (await response.json())["events"]
        texts = [e["payload"]["text"] for e in events]
        assert "half an emoji: \ufffd and a stray \ufffd end" in texts
        assert "the next one" in texts
        assert events[0]["payload"]["talker"]["name"] == "Alice\ufffd"
        await until(lambda: len(robot.texts) == 2, "both messages handled")
        assert robot.texts[0] == "half an emoji: \ufffd and a stray \ufffd end"
