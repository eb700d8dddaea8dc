"""REST routes for the operator's features: proactive messages, jobs, plugins, live stats,
and ``/metrics`` (Prometheus). The routes join the one route table in ``api.py`` (so the
OpenAPI document lists them); ``/metrics`` lives outside ``/api`` where scrapers expect it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from ..errors import MetaPuppetError
from ..outbox_store import STATES
from ..protocol import MAX_ID_LENGTH
from .actions import (
    MAX_TEXT_LENGTH,
    bot_field,
    check_fields,
    file_field,
    string_field,
    translate,
)
from .auth import PERM_READ, PERM_SEND
from .body import read_json_body
from .errors import WebError
from .routes import Route, json_response

if TYPE_CHECKING:
    from .hub import WebHub

__all__ = ["OPS_ROUTES", "install_metrics"]

log = logging.getLogger("MetaPuppet.web")

_AUTH: Final = ("auth_required", "invalid_token", "permission_denied", "invalid_request")
OUTBOX_QUERY: Final = ("bot", "contact", "state", "limit")


def _query(request: web.Request, allowed: tuple[str, ...]) -> dict[str, str]:
    unknown = sorted(set(request.query) - set(allowed))
    if unknown:
        raise WebError(
            "invalid_request",
            f"unknown query parameter {unknown[0]!r} (expected: {', '.join(allowed) or 'none'})",
        )
    return {key: request.query[key] for key in allowed if key in request.query}


async def list_outbox(hub: WebHub, request: web.Request) -> web.StreamResponse:
    query = _query(request, OUTBOX_QUERY)
    state = query.get("state")
    if state is not None and state not in STATES:
        raise WebError("invalid_request", f"'state' must be one of {', '.join(STATES)}")
    try:
        limit = int(query.get("limit", "50"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 200:
        raise WebError("invalid_request", "'limit' must be a whole number from 1 to 200")
    outbox = hub.host.ops.outbox
    records = outbox.messages(
        bot=query.get("bot"), contact=query.get("contact"), state=state, limit=limit
    )
    return json_response({"messages": [r.to_dict() for r in records], "counts": outbox.counts()})


async def get_outbox_message(hub: WebHub, request: web.Request) -> web.StreamResponse:
    _query(request, ())
    record = hub.host.ops.outbox.status(request.match_info["message"])
    if record is None:
        raise WebError("not_found", "no proactive message with this id (or it was forgotten)")
    return json_response(record.to_dict())


async def send_later(hub: WebHub, request: web.Request) -> web.StreamResponse:
    _query(request, ())
    params = await read_json_body(request, hub.max_body_bytes)
    check_fields(params, {"to", "text", "file", "bot", "kind", "expires_s"}, {"to"})
    to = string_field(params, "to", max_length=MAX_ID_LENGTH, required=True)
    if ("text" in params) == ("file" in params):
        raise WebError("invalid_request", "give exactly one of 'text' and 'file'")
    message: Any = (
        string_field(params, "text", max_length=MAX_TEXT_LENGTH, required=True)
        if "text" in params
        else file_field(params, hub.host.ops.outbox.max_bytes)
    )
    kind = params.get("kind")
    if kind not in (None, "contact", "room"):
        raise WebError("invalid_request", "'kind' must be 'contact' or 'room'")
    expires = params.get("expires_s")
    if expires is not None and (
        isinstance(expires, bool) or not isinstance(expires, int | float) or expires <= 0
    ):
        raise WebError("invalid_request", "'expires_s' must be a positive number of seconds")
    try:
        record = await hub.host.send_later(
            to,
            message,
            bot=bot_field(params),
            expires=expires,
            room=None if kind is None else kind == "room",
        )
    except MetaPuppetError as exc:
        if type(exc).__name__ == "OutboxFull":
            raise WebError("outbox_full", str(exc)) from None
        raise translate(exc) from None
    except (TypeError, ValueError) as exc:
        raise WebError("invalid_request", str(exc)) from None
    return json_response(record.to_dict())


async def list_jobs(hub: WebHub, request: web.Request) -> web.StreamResponse:
    _query(request, ())
    ops = hub.host.ops
    return json_response({"jobs": ops.jobs(), "runs": ops.runs()[-50:]})


async def list_plugins(hub: WebHub, request: web.Request) -> web.StreamResponse:
    _query(request, ())
    plugins = hub.host.ops.plugins
    return json_response({"plugins": plugins.summary(), "panels": await plugins.panels()})


async def get_stats(hub: WebHub, request: web.Request) -> web.StreamResponse:
    _query(request, ())
    ops = hub.host.ops
    return json_response(
        {
            "per_minute": ops.metrics.per_minute(),
            "proactive": ops.outbox.counts(),
            "node_outbox": {
                bot: {"pending": pending, "bytes": size}
                for bot, (pending, size) in ops.metrics.node_outbox.items()
            },
        }
    )


def _object(*required: str, **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": properties}


OPS_ROUTES: Final[tuple[Route, ...]] = (
    Route(
        "GET",
        "/outbox",
        "listOutbox",
        "Proactive messages (send_later), newest first, with counts by state",
        "outbox",
        PERM_READ,
        list_outbox,
        query=OUTBOX_QUERY,
        response_schema=_object(
            "messages",
            "counts",
            messages={"type": "array", "items": {"$ref": "#/components/schemas/OutboxMessage"}},
            counts={"type": "object", "additionalProperties": {"type": "integer"}},
        ),
        errors=_AUTH,
    ),
    Route(
        "POST",
        "/outbox",
        "sendLater",
        "Queue a proactive message: delivered now if the channel's send window allows, else "
        "when the user writes again; expires after expires_s",
        "outbox",
        PERM_SEND,
        send_later,
        request_schema="OutboxRequest",
        response_schema={"$ref": "#/components/schemas/OutboxMessage"},
        errors=(
            *_AUTH,
            "invalid_json",
            "payload_too_large",
            "outbox_full",
            "bot_required",
            "bot_not_connected",
        ),
    ),
    Route(
        "GET",
        "/outbox/{message}",
        "getOutboxMessage",
        "One proactive message and its state",
        "outbox",
        PERM_READ,
        get_outbox_message,
        response_schema={"$ref": "#/components/schemas/OutboxMessage"},
        errors=(*_AUTH, "not_found"),
    ),
    Route(
        "GET",
        "/jobs",
        "listJobs",
        "Scheduled jobs with their next run, and the latest runs",
        "jobs",
        PERM_READ,
        list_jobs,
        response_schema=_object(
            "jobs",
            "runs",
            jobs={"type": "array", "items": {"type": "object"}},
            runs={"type": "array", "items": {"type": "object"}},
        ),
        errors=_AUTH,
    ),
    Route(
        "GET",
        "/plugins",
        "listPlugins",
        "Plugins (loaded, disabled, broken) and their dashboard panels",
        "plugins",
        PERM_READ,
        list_plugins,
        response_schema=_object(
            "plugins",
            "panels",
            plugins={"type": "array", "items": {"type": "object"}},
            panels={"type": "array", "items": {"type": "object"}},
        ),
        errors=_AUTH,
    ),
    Route(
        "GET",
        "/stats",
        "getStats",
        "Messages per minute and handler latency for the last hour (the dashboard's chart)",
        "server",
        PERM_READ,
        get_stats,
        response_schema=_object(
            "per_minute",
            per_minute={"type": "array", "items": {"type": "object"}},
            proactive={"type": "object"},
            node_outbox={"type": "object"},
        ),
        errors=_AUTH,
    ),
)


def install_metrics(hub: WebHub, app: web.Application) -> None:
    """``GET /metrics``: the Prometheus text format, behind a web token with the ``read``
    permission unless ``metrics.public`` is true."""

    async def metrics(request: web.Request) -> web.StreamResponse:
        ops = hub.host.ops
        if not ops.metrics_public:
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            grant = hub.authenticate(token.strip()) if scheme.lower() == "bearer" else None
            if grant is None or PERM_READ not in grant.permissions:
                if header and grant is None:  # a wrong token: slowed down like the API's
                    delay = hub.auth_failed(request.remote)
                    log.warning("refused a /metrics scrape from %s: invalid token", request.remote)
                    if delay:
                        await asyncio.sleep(delay)
                return web.Response(
                    status=401,
                    text="send a web token with the read permission: Authorization: Bearer ...\n",
                    headers={"WWW-Authenticate": 'Bearer realm="MetaPuppet"'},
                )
        try:
            body, content_type = ops.metrics.render()
        except ImportError:
            return web.Response(
                status=501,
                text="/metrics needs prometheus_client: pip install metapuppet[metrics]\n",
            )
        response = web.Response(body=body, headers={"Cache-Control": "no-store"})
        response.headers["Content-Type"] = content_type
        return response

    app.router.add_get("/metrics", metrics, name="metrics")
