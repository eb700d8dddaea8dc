"""The dashboard's feed names people, also those it learns about after the contact list loaded
(issue 13, item 14): a message the bot sends to a new contact, and messages sent before the
page opened, show the contact's name, not a raw id. Real Chromium, real Node client."""

from __future__ import annotations

import pytest

from .test_web_browser import page, wx  # noqa: F401 - the shared fixtures

pytestmark = pytest.mark.e2e


async def sign_in(page, wx):  # noqa: F811
    await page.goto(wx.server.url + "/")
    await page.fill("#token", wx.server.token)
    await page.keyboard.press("Enter")
    await page.locator("#connection.live").wait_for()


async def test_feed_lines_name_contacts_the_page_did_not_know_yet(wx, page):  # noqa: F811
    alice = await wx.contact("Alice")
    await wx.server.say(alice.id, "sent before the page opened")
    await sign_in(page, wx)
    early = page.locator("#feed li", has_text="sent before the page opened")
    await early.wait_for()
    await (
        page.locator("#feed li", has_text="sent before the page opened")
        .filter(has_text="→ Alice")
        .wait_for()
    )

    # a contact newer than the loaded list: the bot writes to her first
    await page.locator("#contacts li", has_text="Alice").wait_for()
    carol = await wx.contact("Carol")
    await wx.server.say(carol.id, "Welcome, Carol")
    line = page.locator("#feed li", has_text="Welcome, Carol")
    await line.wait_for()
    await line.filter(has_text="→ Carol").wait_for(timeout=5_000)
    assert carol.id not in await line.inner_text()
    assert carol.id not in await early.inner_text()
    assert page.problems == []
