"""The dashboard in real headless Chromium (Debian's), driven by Playwright.

A person opens the page, signs in with the token, sees a contact's message arrive in the
live feed without reloading, answers from the form, and the contact gets the answer. A
wrong token shows an error. The page must log no console errors. A screenshot is saved
under test-artifacts/.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from MetaPuppet import Message, RobotBase, SweetSocketServer
from MetaPuppet.config import Config, new_token
from MetaPuppet.testing import mock_wechat
from MetaPuppet.web.hub import qr_data_uri

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not CHROMIUM.exists() and not os.environ.get("METAPUPPET_REQUIRE_BROWSER"):
    pytest.skip(
        f"{CHROMIUM} is missing (apt-get install chromium); set METAPUPPET_REQUIRE_BROWSER=1 "
        "to make this a failure instead",
        allow_module_level=True,
    )

async_playwright = pytest.importorskip("playwright.async_api").async_playwright


@pytest.fixture
async def wx() -> AsyncIterator[Any]:
    server = SweetSocketServer(config=Config(), token=new_token(), port=0, rate_limiter=None)
    async with mock_wechat(None, server=server) as kit:
        yield kit


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            context = await browser.new_context(viewport={"width": 1400, "height": 900})
            page = await context.new_page()
            page.set_default_timeout(10_000)
            page.problems = []  # console errors and uncaught exceptions, in order
            page.on(
                "console",
                lambda m: (
                    page.problems.append(f"console.{m.type}: {m.text}")
                    if m.type in ("error", "warning", "assert")
                    else None
                ),
            )
            page.on("pageerror", lambda e: page.problems.append(f"uncaught: {e}"))
            yield page
        finally:
            await browser.close()


async def test_sign_in_watch_the_feed_and_answer_from_the_form(wx, page):
    alice = await wx.contact("Alice")
    bob = await wx.contact("Bob")
    room = await wx.room("Weekend trip", [alice, bob])
    await page.goto(wx.server.url + "/")
    assert await page.title() == "MetaPuppet dashboard"
    assert "token" not in page.url

    # a wrong token: an error a person can read, the dashboard stays closed
    await page.fill("#token", "not-the-right-token")
    await page.keyboard.press("Enter")
    error = page.locator("#login-error")
    await error.wait_for(state="visible")
    assert "not valid" in await error.inner_text()
    assert await page.locator("#dashboard").is_hidden()

    # the right one, from the keyboard only
    await page.locator("#token").focus()
    await page.keyboard.type(wx.server.token)
    await page.keyboard.press("Enter")
    await page.locator("#connection.live").wait_for()
    assert await page.evaluate("sessionStorage.getItem('metapuppet.token')") == wx.server.token
    assert wx.server.token not in page.url
    await page.locator("#contacts li", has_text="Alice").wait_for()
    await page.locator("#bots li", has_text="logged in").wait_for()

    # a message arrives in the feed without a reload
    await alice.say("Are we still on for Saturday?")
    await bob.say("I'll bring the map", room=room)
    line = page.locator("#feed li", has_text="Are we still on for Saturday?")
    await line.wait_for()
    assert "Alice" in await line.inner_text()
    await page.locator("#feed li", has_text="I'll bring the map").wait_for()
    assert "Weekend trip" in await page.locator("#feed li", has_text="bring the map").inner_text()

    # answer from the form: Reply picks Alice, type, Ctrl+Enter sends
    await line.get_by_role("button", name="Reply to Alice").click()
    assert await page.evaluate("document.activeElement.id") == "send-text"
    assert await page.locator("#send-to").input_value() == f"contact:{alice.id}"
    await page.keyboard.type("Yes! See you at 9.")
    await page.keyboard.press("Control+Enter")
    reply = await alice.next_reply(timeout=10)
    assert reply.text == "Yes! See you at 9."
    await page.locator("#send-status", has_text="Sent to Alice").wait_for()
    await page.locator("#feed li.self", has_text="See you at 9").wait_for()

    # the search narrows contacts and rooms
    await page.fill("#search", "weekend")
    assert await page.locator("#contacts li").count() == 0
    assert await page.locator("#rooms li").count() == 1
    await page.fill("#search", "")
    await page.locator("#search").blur()

    # the other panels show the connected puppet and the (empty) dialogs
    await page.locator("#clients tr", has_text="mock-bot").wait_for()
    assert await page.locator("#dialogs-empty").is_visible()

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert page.problems == []

    # signing out forgets the token
    await page.get_by_role("button", name="Sign out").click()
    assert await page.evaluate("sessionStorage.getItem('metapuppet.token')") is None
    assert await page.locator("#login").is_visible()
    assert page.problems == []


class Answering(RobotBase):
    """Answers every message (rooms: when mentioned) and greets new friends."""

    async def on_message(self, msg: Message) -> Any:
        return f"echo: {msg.mention_text}"

    async def on_friendship(self, request: Any) -> Any:
        await request.accept()
        return "welcome!"


async def sign_in(page: Any, server: Any) -> None:
    await page.goto(server.url + "/")
    await page.fill("#token", server.token)
    await page.keyboard.press("Enter")
    await page.locator("#connection.live").wait_for()


async def test_the_mock_console_makes_mocked_contacts_talk(page):
    async with mock_wechat(Answering()) as wx:
        await sign_in(page, wx.server)
        panel = page.locator("#mock-panel")
        await panel.wait_for(state="visible")
        await page.fill("#mock-as", "Dora")
        await page.fill("#mock-text", "hello from the console")
        await page.get_by_role("button", name="Say", exact=True).click()
        await page.locator("#mock-status", has_text="Dora said it").wait_for()
        # the contact's message (the bot's answer, quick now, has its text too)
        await page.locator("#feed li:not(.self)", has_text="hello from the console").wait_for()
        answer = page.locator("#feed li.self", has_text="echo: hello from the console")
        await answer.wait_for()
        assert "Dora" in await answer.inner_text()
        await page.locator("#contacts li", has_text="Dora").wait_for()  # a new contact

        # in a room, mentioning the bot (Ctrl+Enter sends)
        await page.fill("#mock-room", "Book club")
        assert await page.locator("#mock-mention").is_enabled()
        await page.locator("#mock-text").fill("which book next?")
        await page.locator("#mock-text").press("Control+Enter")
        await page.locator("#mock-status", has_text="Dora in Book club said it").wait_for()
        await page.locator("#feed li", has_text="Dora in Book club").wait_for()
        await page.locator("#feed li.self", has_text="echo: which book next?").wait_for()
        await page.locator("#rooms li", has_text="Book club").wait_for()

        # a friend request from a stranger, accepted by the robot
        await page.fill("#mock-room", "")
        await page.fill("#mock-as", "Erin")
        await page.fill("#mock-text", "may I?")
        await page.get_by_role("button", name="Send a friend request").click()
        await page.locator("#mock-status", has_text="Erin asked to be friends").wait_for()
        await page.locator("#feed li[data-event=friendship]", has_text="Erin").wait_for()
        await page.locator("#feed li.self", has_text="welcome!").wait_for()
        friendships = [e for e in wx.bot().events if e.name == "friendship"]
        assert [e.payload.get("hello") for e in friendships] == ["may I?"]
        assert page.problems == []


async def test_an_ilink_bot_shows_no_rooms_its_send_budget_and_scan_again(page):
    async with mock_wechat(Answering(), puppet="ilink") as wx:
        alice = await wx.contact("Alice")
        await alice.say("hi bot")
        assert (await alice.next_reply(timeout=10)).text == "echo: hi bot"
        await sign_in(page, wx.server)

        bot = page.locator("#bots li[data-channel=ilink]")
        await bot.wait_for()
        assert "logged in" in await bot.inner_text()
        note = await bot.locator(".channel-note").inner_text()
        assert "direct messages only" in note and "no rooms" in note
        assert "10 messages per user message" in note

        # no rooms, no contact list (the people who wrote instead), no mock console
        await page.locator("#rooms-note", has_text="no rooms").wait_for()
        assert await page.locator("#rooms-section").is_hidden()
        assert await page.locator("#send-rooms").count() == 0
        assert await page.locator("#mock-panel").is_hidden()
        contact = page.locator(f"#contacts li[data-contact='{alice.id}']")
        await contact.wait_for()
        assert "people who wrote" in await page.locator("#contacts-note").inner_text()
        # her send budget: one of ten used by the answer
        await contact.locator(".budget", has_text="9 of 10 messages left").wait_for()
        assert "until" in await contact.locator(".budget").inner_text()

        # the send form shows the window of the chosen contact; a send uses one more
        await contact.get_by_role("button", name="Message").click()
        await page.locator("#send-budget", has_text="9 of 10 messages left").wait_for()
        await page.keyboard.type("sent from the dashboard")
        await page.keyboard.press("Control+Enter")
        assert (await alice.next_reply(timeout=10)).text == "sent from the dashboard"
        await page.locator("#send-budget", has_text="8 of 10 messages left").wait_for()

        # a contact who never wrote: the window is closed and the send is refused
        bob = await wx.contact("Bob")
        await page.evaluate(
            """(id) => { const o = document.createElement('option');
                o.value = 'contact:' + id; o.textContent = 'Bob';
                document.getElementById('send-contacts').append(o); }""",
            bob.id,
        )
        await page.select_option("#send-to", f"contact:{bob.id}")
        await page.locator("#send-budget", has_text="has not written").wait_for()
        await page.fill("#send-text", "hello?")
        await page.get_by_role("button", name="Send", exact=True).click()
        await page.locator("#send-status", has_text="Not sent").wait_for()
        assert "has not written" in await page.locator("#send-status").inner_text()
        assert bob.pending_replies() == []
        # the refusal (409) is the one failed request Chromium reports; nothing else failed
        refused = (
            "console.error: Failed to load resource: the server responded with a status of 409"
        )
        assert [p for p in page.problems if not p.startswith(refused)] == []
        page.problems.clear()

        # the session expires: the puppet logs out with a reason and shows a new QR code
        wx.sim.expire_session()
        new_qr = await wx.sim.wait_qr(timeout=30)
        await bot.locator(".scan-again", has_text="expired").wait_for(timeout=30_000)
        assert "scan again" in await bot.locator(".badge").all_inner_texts()
        image = bot.locator("img.qr")
        await image.wait_for()
        assert await image.get_attribute("src") == qr_data_uri(new_qr.img_content)
        await page.wait_for_function(
            "() => { const i = document.querySelector('#bots img.qr');"
            " return i && i.complete && i.naturalWidth > 0; }"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "dashboard-ilink.png"), full_page=True)

        # scanned again: logged in, the QR code goes away
        wx.sim.scan(wx.bot().owner, new_qr.qrcode)
        wx.sim.confirm(new_qr.qrcode)
        await bot.locator(".badge", has_text="logged in").wait_for(timeout=30_000)
        assert await bot.locator("img.qr").count() == 0
        assert page.problems == []


async def test_a_puppet_that_cannot_get_through_says_so_in_the_bots_panel(page):
    import socketio

    from MetaPuppet.web_client import connect

    server = SweetSocketServer(config=Config(), token=new_token(), port=0, rate_limiter=None)
    await server.start(host="127.0.0.1", port=0)
    puppet = socketio.AsyncClient(reconnection=False)
    # a puppet still starting has no contacts or rooms yet
    puppet.on("exec", lambda data: {"ok": True, "result": []})
    try:
        await connect(
            server.url, server.token, role="puppet", bot="wx", client=puppet, wait_timeout=5
        )
        await sign_in(page, server)
        await page.locator("#bots li[data-bot=wx]").wait_for()
        state = {
            "state": "retrying",
            "message": "cannot reach WeChat: getaddrinfo ENOTFOUND login.wx.qq.com",
            "retry_in_s": 8,
            "attempts": 3,
        }
        heartbeat = {
            "id": "hb-1",
            "bot": "wx",
            "name": "heartbeat",
            "payload": {"source": "client", "uptime_s": 9, "puppet": state},
            "ts": 0,
        }
        assert (await puppet.call("event", heartbeat, timeout=5))["ok"] is True
        line = page.locator("#bots li[data-bot=wx] .puppet-state")
        await line.wait_for(timeout=15_000)  # the panel refreshes every 5 s
        text = await line.inner_text()
        assert "cannot reach WeChat: getaddrinfo ENOTFOUND" in text and "retrying in 8 s" in text
        assert page.problems == []
    finally:
        await puppet.disconnect()
        await server.stop()
