"""The REST API under ``/api/``, its live feed (server-sent events) and the dashboard files.

Every ``/api`` route needs a web token in ``Authorization: Bearer <token>`` and answers
errors with the envelope ``{code, error, message}``. The dashboard page and its static
files hold no data and are served to anyone; everything they show comes from the API.

Why server-sent events for the dashboard's live feed, not Socket.IO in the browser: the
Socket.IO browser client would have to be vendored or bundled (a build step), while a
``text/event-stream`` response read with ``fetch`` needs nothing but the browser, carries
the token in the same header as every other call (never in the URL), and is plain HTTP
that curl can watch. Program clients keep Socket.IO (``subscribe``, ``action``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from .actions import run_action
from .auth import PERM_ACCEPT, PERM_READ, PERM_SEND, describe
from .body import read_json_body
from .channel_routes import CHANNEL_ROUTES
from .errors import WebError
from .filters import EventFilter
from .openapi import build
from .ops_api import OPS_ROUTES, install_metrics
from .routes import Handler, Route, json_response, schema_ref

if TYPE_CHECKING:
    from .hub import WebHub

__all__ = [
    "AUTH_ERRORS",
    "BOT_ERRORS",
    "CONTENT_SECURITY_POLICY",
    "GRANT",
    "KEEPALIVE_S",
    "ROUTES",
    "STATIC_DIR",
    "accept_friendship",
    "error_response",
    "health",
    "install",
    "list_bots",
    "list_clients",
    "list_contacts",
    "list_dialogs",
    "list_events",
    "list_room_members",
    "list_rooms",
    "openapi",
    "send",
    "session",
    "stream_events",
]

log = logging.getLogger("MetaPuppet.web")

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
KEEPALIVE_S: Final = 15.0
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# where the middleware leaves the caller's grant for the handler
GRANT: Final[Any] = web.RequestKey("grant", object) if hasattr(web, "RequestKey") else "grant"
AUTH_ERRORS: Final = ("auth_required", "invalid_token")
BOT_ERRORS: Final = (
    "bot_required",
    "bot_error",
    "bot_not_connected",
    "bot_timeout",
    "not_supported",
    "cluster_unavailable",
)


def error_response(exc: WebError) -> web.Response:
    response = json_response(exc.envelope(), status=exc.status)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="MetaPuppet"'
    return response


def _query(request: web.Request, allowed: tuple[str, ...]) -> dict[str, str]:
    unknown = sorted(set(request.query) - set(allowed))
    if unknown:
        expected = ", ".join(allowed) if allowed else "none"
        raise WebError(
            "invalid_request", f"unknown query parameter {unknown[0]!r} (expected: {expected})"
        )
    return {key: request.query[key] for key in allowed if key in request.query}


def _limit(value: str | None) -> int:
    if value is None:
        return 50
    try:
        limit = int(value)
    except ValueError:
        raise WebError("invalid_request", "'limit' must be a whole number from 1 to 200") from None
    if not 1 <= limit <= 200:
        raise WebError("invalid_request", "'limit' must be a whole number from 1 to 200")
    return limit


def _lookup_params(query: dict[str, str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if "bot" in query:
        params["bot"] = query["bot"]
    if "q" in query and query["q"]:
        params["query"] = query["q"]
    return params


# --------------------------------------------------------------------------- handlers


async def health(hub: WebHub, request: web.Request) -> web.StreamResponse:
    _query(request, ())
    from .. import __version__

    grant = request[GRANT]
    return json_response(
        {
            "status": "ok",
            "version": __version__,
            "bots": hub.host.bots,
            "uptime_s": round(time.time() - hub.started_at, 3),
            "web_clients": len(hub.sessions),
            "permissions": describe(grant.permissions),
        }
    )


async def session(hub: WebHub, request: web.Request) -> web.StreamResponse:
    """Whether the presented token is valid: 200 either way (see the route's summary)."""
    _query(request, ())
    grant = request.get(GRANT)
    if grant is None:
        return json_response({"authenticated": False, "permissions": []})
    return json_response({"authenticated": True, "permissions": describe(grant.permissions)})


async def list_bots(hub: WebHub, request: web.Request) -> web.StreamResponse:
    _query(request, ())
    return json_response({"bots": hub.bots()})


async def list_contacts(hub: WebHub, request: web.Request) -> web.StreamResponse:
    query = _query(request, ("bot", "q"))
    return json_response(await run_action(hub.host, "list_contacts", _lookup_params(query)))


async def list_rooms(hub: WebHub, request: web.Request) -> web.StreamResponse:
    query = _query(request, ("bot", "q"))
    return json_response(await run_action(hub.host, "list_rooms", _lookup_params(query)))


async def list_room_members(hub: WebHub, request: web.Request) -> web.StreamResponse:
    query = _query(request, ("bot",))
    params = {"room": request.match_info["room"], **_lookup_params(query)}
    return json_response(await run_action(hub.host, "room_members", params))


async def send(hub: WebHub, request: web.Request) -> web.StreamResponse:
    _query(request, ())
    body = await read_json_body(request, hub.max_body_bytes)
    has_text, has_file = "text" in body, "file" in body
    if has_text == has_file:
        raise WebError("invalid_request", "give exactly one of 'text' and 'file'")
    return json_response(await run_action(hub.host, "send_text" if has_text else "send_file", body))


async def accept_friendship(hub: WebHub, request: web.Request) -> web.StreamResponse:
    _query(request, ())
    body = await read_json_body(request, hub.max_body_bytes, optional=True)
    params = {**body, "id": request.match_info["friendship"]}
    if set(body) - {"bot"}:
        raise WebError("invalid_request", "the body may only hold 'bot'")
    return json_response(await run_action(hub.host, "accept_friendship", params))


async def list_clients(hub: WebHub, request: web.Request) -> web.StreamResponse:
    query = _query(request, ("all",))
    if query.get("all", "0") not in ("0", "1"):
        raise WebError("invalid_request", "'all' must be 0 or 1")
    return json_response({"clients": hub.host.list_clients(only_online=query.get("all") != "1")})


async def list_dialogs(hub: WebHub, request: web.Request) -> web.StreamResponse:
    _query(request, ())
    return json_response({"dialogs": await hub.dialogs()})


_FILTER_QUERY: Final = ("bot", "event", "room", "contact")


async def list_events(hub: WebHub, request: web.Request) -> web.StreamResponse:
    query = _query(request, (*_FILTER_QUERY, "limit"))
    event_filter = EventFilter.from_query(query)
    return json_response({"events": hub.recent_events(event_filter, _limit(query.get("limit")))})


def _sse(kind: str, data: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def stream_events(hub: WebHub, request: web.Request) -> web.StreamResponse:
    query = _query(request, _FILTER_QUERY)
    event_filter = EventFilter.from_query(query)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    stream = hub.open_stream(event_filter)
    try:
        await response.write(_sse("hello", {"filter": event_filter.to_dict()}))
        while not stream.closed.is_set():
            try:
                kind, data = await asyncio.wait_for(stream.queue.get(), KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if kind == "close":
                break
            if stream.dropped:
                await response.write(_sse("lagged", {"dropped": stream.dropped}))
                stream.dropped = 0
            await response.write(_sse(kind, data))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        hub.close_stream(stream)
    return response


async def openapi(hub: WebHub, request: web.Request) -> web.StreamResponse:
    _query(request, ())
    from .. import __version__

    return json_response(build(ROUTES, __version__))


def _list(key: str, item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [key],
        "properties": {key: {"type": "array", "items": schema_ref(item)}},
    }


ROUTES: Final[tuple[Route, ...]] = (
    Route(
        "GET",
        "/health",
        "getHealth",
        "Server status and the token's permissions",
        "server",
        None,
        health,
        response_schema=schema_ref("Health"),
        errors=(*AUTH_ERRORS, "invalid_request"),
    ),
    Route(
        "GET",
        "/session",
        "getSession",
        "Check a token: 200 with authenticated true or false (sign-in pages use it so a wrong "
        "token is not a failed request)",
        "server",
        None,
        session,
        response_schema={
            "type": "object",
            "required": ["authenticated", "permissions"],
            "properties": {
                "authenticated": {"type": "boolean"},
                "permissions": {"type": "array", "items": {"type": "string"}},
            },
        },
        errors=("invalid_request",),
    ),
    Route(
        "GET",
        "/bots",
        "listBots",
        "Bots with their login state and QR code",
        "bots",
        PERM_READ,
        list_bots,
        response_schema=_list("bots", "Bot"),
        errors=(*AUTH_ERRORS, "permission_denied", "invalid_request"),
    ),
    Route(
        "GET",
        "/contacts",
        "listContacts",
        "The bot's contacts",
        "contacts",
        PERM_READ,
        list_contacts,
        query=("bot", "q"),
        response_schema=_list("contacts", "Contact"),
        errors=(*AUTH_ERRORS, "permission_denied", "invalid_request", *BOT_ERRORS),
    ),
    Route(
        "GET",
        "/rooms",
        "listRooms",
        "The bot's rooms",
        "rooms",
        PERM_READ,
        list_rooms,
        query=("bot", "q"),
        response_schema=_list("rooms", "Room"),
        errors=(*AUTH_ERRORS, "permission_denied", "invalid_request", *BOT_ERRORS),
    ),
    Route(
        "GET",
        "/rooms/{room}/members",
        "listRoomMembers",
        "The members of a room",
        "rooms",
        PERM_READ,
        list_room_members,
        query=("bot",),
        response_schema=_list("members", "Member"),
        errors=(*AUTH_ERRORS, "permission_denied", "invalid_request", "not_found", *BOT_ERRORS),
    ),
    Route(
        "POST",
        "/send",
        "send",
        "Send text or a file to a contact or a room",
        "messages",
        PERM_SEND,
        send,
        request_schema="SendRequest",
        response_schema=schema_ref("SendResult"),
        errors=(
            *AUTH_ERRORS,
            "permission_denied",
            "invalid_json",
            "invalid_request",
            "payload_too_large",
            "send_window_closed",
            *BOT_ERRORS,
        ),
    ),
    Route(
        "POST",
        "/friendships/{friendship}/accept",
        "acceptFriendship",
        "Accept a friend request",
        "friendships",
        PERM_ACCEPT,
        accept_friendship,
        request_schema="AcceptRequest",
        response_schema={"type": "object", "properties": {"accepted": {"type": "string"}}},
        errors=(*AUTH_ERRORS, "permission_denied", "invalid_json", "invalid_request", *BOT_ERRORS),
    ),
    Route(
        "GET",
        "/clients",
        "listClients",
        "Connected clients with their heartbeat",
        "server",
        PERM_READ,
        list_clients,
        query=("all",),
        response_schema=_list("clients", "Client"),
        errors=(*AUTH_ERRORS, "permission_denied", "invalid_request"),
    ),
    Route(
        "GET",
        "/dialogs",
        "listDialogs",
        "Dialogs in progress",
        "dialogs",
        PERM_READ,
        list_dialogs,
        response_schema=_list("dialogs", "Dialog"),
        errors=(*AUTH_ERRORS, "permission_denied", "invalid_request"),
    ),
    Route(
        "GET",
        "/events",
        "listEvents",
        "Recent bot events (heartbeats left out)",
        "events",
        PERM_READ,
        list_events,
        query=(*_FILTER_QUERY, "limit"),
        response_schema=_list("events", "Event"),
        errors=(*AUTH_ERRORS, "permission_denied", "invalid_request"),
    ),
    Route(
        "GET",
        "/events/stream",
        "streamEvents",
        "Live bot events as server-sent events",
        "events",
        PERM_READ,
        stream_events,
        query=_FILTER_QUERY,
        media_type="text/event-stream",
        response_schema={
            "type": "string",
            "description": "`event: events` frames whose data is a "
            "JSON list of Event; `event: clients` when clients come or go.",
        },
        errors=(*AUTH_ERRORS, "permission_denied", "invalid_request"),
    ),
    # send budgets and the mock console (channel_routes.py)
    *CHANNEL_ROUTES,
    Route(
        "GET",
        "/openapi.json",
        "getOpenApi",
        "This document",
        "server",
        None,
        openapi,
        response_schema={"type": "object"},
        errors=(*AUTH_ERRORS, "invalid_request"),
    ),
    *OPS_ROUTES,  # outbox, jobs, plugins, stats (ops_api.py)
)


# --------------------------------------------------------------------------- plumbing


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if not header:
        raise WebError("auth_required", "send the web token as 'Authorization: Bearer <token>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise WebError("auth_required", "the Authorization header must be 'Bearer <token>'")
    return token.strip()


def _middleware(hub: WebHub) -> Any:
    permissions = {route.operation_id: route.permission for route in ROUTES}
    # the one route that answers without a valid token (it says whether the token is valid)
    open_routes = {"getSession"}

    @web.middleware
    async def api_middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            route = request.match_info.route
            if route.name in open_routes:
                header = request.headers.get("Authorization", "")
                scheme, _, token = header.partition(" ")
                grant = hub.authenticate(token.strip()) if scheme.lower() == "bearer" else None
                if grant is None and header:
                    delay = hub.auth_failed(request.remote)
                    if delay:
                        await asyncio.sleep(delay)
                request[GRANT] = grant
                return await handler(request)
            grant = hub.authenticate(_bearer(request))
            if grant is None:
                delay = hub.auth_failed(request.remote)
                log.warning("refused an API call from %s: invalid token", request.remote)
                if delay:
                    await asyncio.sleep(delay)
                raise WebError("invalid_token", "this token does not open the web API")
            request[GRANT] = grant
            hub.require(grant.permissions, permissions.get(route.name or ""))
            response = await handler(request)
            response.headers["Cache-Control"] = "no-store"
            return response
        except WebError as exc:
            response = error_response(exc)
            if exc.error == "payload_too_large":
                response.force_close()  # do not read (and throw away) the rest of the body
            return response
        except web.HTTPNotFound:
            return error_response(
                WebError("not_found", f"no API route {request.path}; see /api/openapi.json")
            )
        except web.HTTPMethodNotAllowed:
            return error_response(
                WebError("method_not_allowed", f"{request.method} is not allowed on {request.path}")
            )
        except web.HTTPRequestEntityTooLarge:
            return error_response(WebError("payload_too_large", "the request body is too large"))
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            log.exception("API call %s %s failed", request.method, request.path)
            return error_response(WebError("internal_error", "the server failed; its log says why"))

    return api_middleware


def _bind(hub: WebHub, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def bound(request: web.Request) -> web.StreamResponse:
        return await handler(hub, request)

    return bound


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path.startswith("/socket.io"):
        return
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if not request.path.startswith("/api/"):
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Frame-Options", "DENY")


def install(hub: WebHub, app: web.Application) -> web.Application:
    """Add the API (a sub-application at /api), the dashboard and their hooks to ``app``."""
    api = web.Application(middlewares=[_middleware(hub)])
    for route in ROUTES:
        api.router.add_route(
            route.method, route.path, _bind(hub, route.handler), name=route.operation_id
        )
    app.add_subapp("/api/", api)
    install_metrics(hub, app)
    if hub.dashboard_enabled:

        async def index(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(
                STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"}
            )

        app.router.add_get("/", index, name="dashboard")
        app.router.add_static("/static/", STATIC_DIR, name="dashboard_static")
    app.on_response_prepare.append(_security_headers)

    async def close_hub(_: web.Application) -> None:
        await hub.close()

    app.on_shutdown.append(close_hub)
    return api
