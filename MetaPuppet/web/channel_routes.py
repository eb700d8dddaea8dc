"""REST routes about what a bot's channel allows: send budgets, and the mock console.

``api.ROUTES`` includes :data:`CHANNEL_ROUTES`, so the server registers them, the
middleware authenticates them and checks their permission, and the OpenAPI document lists
them like every other route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from .auth import PERM_READ, PERM_SEND
from .body import read_json_body
from .console import mock_friend, mock_say
from .errors import WebError
from .routes import Route, json_response, schema_ref

if TYPE_CHECKING:
    from .hub import WebHub

__all__ = [
    "CHANNEL_ROUTES",
    "get_budget",
    "list_budgets",
    "mock_friend_route",
    "mock_say_route",
    "no_query",
    "read_object",
]

_AUTH: Final = ("auth_required", "invalid_token", "permission_denied")
_BOT: Final = (
    "bot_required",
    "bot_error",
    "bot_not_connected",
    "bot_timeout",
    "not_supported",
    "cluster_unavailable",
)


def no_query(request: web.Request) -> None:
    """These routes take no query parameters: a typo is refused, not ignored."""
    if request.query:
        name = sorted(request.query)[0]
        raise WebError("invalid_request", f"unknown query parameter {name!r} (expected: none)")


async def read_object(hub: WebHub, request: web.Request) -> dict[str, Any]:
    """The JSON object in the body, within the server's body limits (web.max_body_bytes)."""
    return await read_json_body(request, hub.max_body_bytes)


def _known_bot(hub: WebHub, request: web.Request) -> str:
    bot = request.match_info["bot"]
    if not hub.known_bot(bot):
        raise WebError("not_found", f"no bot {bot!r} has connected to this server")
    return bot


async def get_budget(hub: WebHub, request: web.Request) -> web.StreamResponse:
    """What the bot may send one contact now (``budget`` is null without a send budget)."""
    no_query(request)
    bot = _known_bot(hub, request)
    contact = request.match_info["contact"]
    channel = hub.host.capabilities(bot).channel
    budget = hub.host.send_budget(bot, contact)
    return json_response({"bot": bot, "contact": contact, "channel": channel, "budget": budget})


async def list_budgets(hub: WebHub, request: web.Request) -> web.StreamResponse:
    """The contacts who wrote to the bot, newest first, each with its send budget."""
    no_query(request)
    bot = _known_bot(hub, request)
    channel = hub.host.capabilities(bot).channel
    return json_response({"bot": bot, "channel": channel, "budgets": hub.budgets(bot)})


async def mock_say_route(hub: WebHub, request: web.Request) -> web.StreamResponse:
    no_query(request)
    return json_response(await mock_say(hub.host, await read_object(hub, request)))


async def mock_friend_route(hub: WebHub, request: web.Request) -> web.StreamResponse:
    no_query(request)
    return json_response(await mock_friend(hub.host, await read_object(hub, request)))


CHANNEL_ROUTES: Final[tuple[Route, ...]] = (
    Route(
        "GET",
        "/bots/{bot}/budget/{contact}",
        "getSendBudget",
        "What the bot may send a contact now: its send window and the messages left (`budget` "
        "is null on channels without a send budget)",
        "bots",
        PERM_READ,
        get_budget,
        response_schema=schema_ref("BudgetAnswer"),
        errors=(*_AUTH, "invalid_request", "not_found"),
    ),
    Route(
        "GET",
        "/bots/{bot}/budgets",
        "listSendBudgets",
        "The contacts who wrote to the bot since the server started (newest first, at most "
        "1000), each with its send budget; on channels without a contact list (iLink) these "
        "are the contacts the dashboard shows",
        "bots",
        PERM_READ,
        list_budgets,
        response_schema=schema_ref("BudgetList"),
        errors=(*_AUTH, "invalid_request", "not_found"),
    ),
    Route(
        "POST",
        "/mock/say",
        "mockSay",
        "Mock console: a mocked contact (found by name, or created) says something to the bot "
        "or in a room (found by topic, or created); only for bots on the mock puppet",
        "mock",
        PERM_SEND,
        mock_say_route,
        request_schema="MockSayRequest",
        response_schema=schema_ref("MockSayResult"),
        errors=(*_AUTH, "invalid_json", "invalid_request", "payload_too_large", *_BOT),
    ),
    Route(
        "POST",
        "/mock/friend",
        "mockFriendRequest",
        "Mock console: a mocked contact asks the bot to be friends; only for bots on the mock "
        "puppet",
        "mock",
        PERM_SEND,
        mock_friend_route,
        request_schema="MockFriendRequest",
        response_schema=schema_ref("MockFriendResult"),
        errors=(*_AUTH, "invalid_json", "invalid_request", *_BOT),
    ),
)
