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

from MetaPuppet import SweetSocketServer
from MetaPuppet.config import Config, new_token
from MetaPuppet.testing import mock_wechat

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
