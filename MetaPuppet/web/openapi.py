"""The OpenAPI 3.1 document of the REST API, built from the same route table the server
registers (``api.ROUTES``), so the two cannot drift apart."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from .errors import ERROR_CODES, ERROR_DESCRIPTIONS
from .ops_schemas import FILE_BODY, OPS_SCHEMAS

if TYPE_CHECKING:
    from .routes import Route

__all__ = [
    "NULLABLE_NUMBER",
    "NULLABLE_STRING",
    "OPENAPI_VERSION",
    "PATH",
    "QUERY",
    "SCHEMAS",
    "build",
]

OPENAPI_VERSION: Final = "3.1.0"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list_of(key: str, item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [key],
        "properties": {key: {"type": "array", "items": _ref(item)}},
    }


NULLABLE_STRING: Final = {"type": ["string", "null"]}
NULLABLE_NUMBER: Final = {"type": ["number", "null"]}
_FLAG: Final = {"type": "boolean"}
_CONTACT_REF: Final = {
    "type": "object",
    "required": ["id", "name"],
    "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "created": _FLAG},
}

SCHEMAS: Final[dict[str, Any]] = {
    "Error": {
        "type": "object",
        "description": "The one error envelope of the API (and of socket actions).",
        "required": ["code", "error", "message"],
        "properties": {
            "code": {"type": "integer", "description": "The HTTP status."},
            "error": {"type": "string", "enum": sorted(ERROR_CODES), "description": "Stable name."},
            "message": {"type": "string", "description": "What failed and what to do."},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "version", "bots", "uptime_s", "permissions"],
        "properties": {
            "status": {"type": "string", "enum": ["ok"]},
            "version": {"type": "string"},
            "bots": {"type": "array", "items": {"type": "string"}},
            "uptime_s": {"type": "number"},
            "web_clients": {"type": "integer"},
            "permissions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Bot": {
        "type": "object",
        "required": ["bot", "connected", "logged_in"],
        "properties": {
            "bot": {"type": "string"},
            "connected": {"type": "boolean"},
            "status": {"type": "string", "enum": ["online", "stalled", "offline"]},
            "logged_in": {"type": "boolean"},
            "user": {"type": ["object", "null"]},
            "scan": {
                "type": ["object", "null"],
                "description": "Set while a scan is needed: the QR code text and an SVG image.",
                "properties": {
                    "status": {"type": ["integer", "null"]},
                    "status_name": NULLABLE_STRING,
                    "qrcode": {"type": "string"},
                    "qr_image": {**NULLABLE_STRING, "description": "data:image/svg+xml URI"},
                },
            },
            "logout": {
                "type": ["object", "null"],
                "description": "Set after a logout until the next login: its reason (an "
                "expired iLink session says so; scan the new QR code to log in again).",
                "properties": {"reason": NULLABLE_STRING, "at": NULLABLE_NUMBER},
            },
            "channel": {"type": "string", "description": "mock, ilink, or the puppet's name."},
            "capabilities": _ref("Capabilities"),
            "puppet": {
                "type": ["object", "null"],
                "description": "The Node client's view of its puppet (from its heartbeat): "
                "state starting | running | retrying | stopped, and a message such as "
                "'cannot reach WeChat: ...; retrying in 8 s'.",
                "properties": {
                    "state": {"type": "string"},
                    "message": NULLABLE_STRING,
                    "retry_in_s": NULLABLE_NUMBER,
                    "attempts": {"type": ["integer", "null"]},
                },
            },
            "last_heartbeat": NULLABLE_NUMBER,
            "last_event_at": NULLABLE_NUMBER,
        },
    },
    "Capabilities": {
        "type": "object",
        "description": "What the bot's channel can do, as its puppet reports it "
        "(docs/channels.md).",
        "required": ["channel", "send_budget"],
        "properties": {
            "channel": {"type": "string"},
            **{
                flag: _FLAG
                for flag in (
                    "rooms",
                    "friendships",
                    "contact_list",
                    "files",
                    "recall",
                    "typing",
                    "url_links",
                    "mini_programs",
                    "contact_cards",
                    "alias",
                )
            },
            "send_budget": {
                "type": ["object", "null"],
                "properties": {
                    "user_first": _FLAG,
                    "per_user_message": {"type": "integer"},
                    "window_s": {"type": "number"},
                },
            },
        },
    },
    "Budget": {
        "type": "object",
        "description": "What may be sent to one contact now (`server.send_budget`).",
        "required": ["contact", "open", "remaining", "closes_at", "reason"],
        "properties": {
            "contact": {"type": "string"},
            "open": _FLAG,
            "remaining": {"type": ["integer", "null"]},
            "closes_at": {**NULLABLE_NUMBER, "description": "Epoch seconds."},
            "opened_at": NULLABLE_NUMBER,
            "opened_by": {**NULLABLE_STRING, "description": "The user message that opened it."},
            "sent": {"type": "integer"},
            "reason": {**NULLABLE_STRING, "description": "Why nothing may be sent, if so."},
            "rules": {"type": "object"},
        },
    },
    "BudgetAnswer": {
        "type": "object",
        "required": ["bot", "contact", "channel", "budget"],
        "properties": {
            "bot": {"type": "string"},
            "contact": {"type": "string"},
            "channel": {"type": "string"},
            "budget": {"oneOf": [_ref("Budget"), {"type": "null"}]},
        },
    },
    "BudgetList": {
        "type": "object",
        "required": ["bot", "channel", "budgets"],
        "properties": {
            "bot": {"type": "string"},
            "channel": {"type": "string"},
            "budgets": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["contact", "name", "last_message_at", "budget"],
                    "properties": {
                        "contact": {"type": "string"},
                        "name": {"type": "string"},
                        "last_message_at": {"type": "number"},
                        "budget": {"oneOf": [_ref("Budget"), {"type": "null"}]},
                    },
                },
            },
        },
    },
    "MockSayRequest": {
        "type": "object",
        "description": "Give exactly one of `text` and `file`.",
        "required": ["as"],
        "additionalProperties": False,
        "properties": {
            "as": {"type": "string", "description": "The mocked contact's name."},
            "text": {"type": "string", "maxLength": 20000},
            "file": FILE_BODY,
            "room": {"type": "string", "description": "Say it in this room (by topic)."},
            "mention": {**_FLAG, "description": "In a room: @-mention the bot."},
            "bot": {"type": "string", "description": "Needed when several bots are connected."},
        },
    },
    "MockSayResult": {
        "type": "object",
        "required": ["bot", "message_id", "contact", "room"],
        "properties": {
            "bot": {"type": "string"},
            "message_id": NULLABLE_STRING,
            "contact": _CONTACT_REF,
            "room": {
                "type": ["object", "null"],
                "properties": {"id": {"type": "string"}, "topic": {"type": "string"}},
            },
        },
    },
    "MockFriendRequest": {
        "type": "object",
        "required": ["as"],
        "additionalProperties": False,
        "properties": {
            "as": {"type": "string", "description": "The mocked contact's name."},
            "hello": {"type": "string", "description": "The request's greeting."},
            "bot": {"type": "string"},
        },
    },
    "MockFriendResult": {
        "type": "object",
        "required": ["bot", "friendship_id", "contact"],
        "properties": {
            "bot": {"type": "string"},
            "friendship_id": {"type": "string"},
            "contact": _CONTACT_REF,
        },
    },
    "Contact": {
        "type": "object",
        "required": ["id", "name"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "alias": NULLABLE_STRING,
            "friend": {"type": ["boolean", "null"]},
            "type": {"type": ["integer", "null"]},
            "self": {"type": "boolean"},
        },
    },
    "Room": {
        "type": "object",
        "required": ["id", "topic"],
        "properties": {
            "id": {"type": "string"},
            "topic": {"type": "string"},
            "member_count": {"type": ["integer", "null"]},
        },
    },
    "Member": {
        "type": "object",
        "required": ["id", "name"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "alias": NULLABLE_STRING,
        },
    },
    "Client": {
        "type": "object",
        "required": ["sid", "role", "status"],
        "properties": {
            "sid": {"type": "string"},
            "role": {"type": "string", "enum": ["puppet", "web"]},
            "bot": NULLABLE_STRING,
            "remote": NULLABLE_STRING,
            "status": {"type": "string"},
            "connected_at": {"type": "number"},
            "last_heartbeat": NULLABLE_NUMBER,
            "logged_in_as": {"type": ["object", "null"]},
            "puppet": {"type": ["object", "null"]},
        },
    },
    "Event": {
        "type": "object",
        "description": "A bot event as the Node client forwarded it; `ts` in ms since the epoch.",
        "required": ["id", "bot", "name", "payload", "ts"],
        "properties": {
            "id": {"type": "string"},
            "bot": {"type": "string"},
            "name": {"type": "string"},
            "payload": {"type": "object"},
            "ts": {"type": "number"},
        },
    },
    "Dialog": {"type": "object", "description": "Whatever `server.dialog_provider` reports."},
    "SendRequest": {
        "type": "object",
        "description": "Give exactly one of `text` and `file`.",
        "required": ["to"],
        "additionalProperties": False,
        "properties": {
            "to": {"type": "string", "description": "A contact id or a room id."},
            "kind": {
                "type": "string",
                "enum": ["contact", "room"],
                "description": "Default: room when `to` contains '@' and the channel has rooms, "
                "else contact.",
            },
            "text": {"type": "string", "maxLength": 20000},
            "file": FILE_BODY,
            "bot": {"type": "string", "description": "Needed when several bots are connected."},
        },
    },
    "SendResult": {
        "type": "object",
        "required": ["message_id", "to", "kind"],
        "properties": {
            "message_id": NULLABLE_STRING,
            "to": {"type": "string"},
            "kind": {"type": "string", "enum": ["contact", "room"]},
        },
    },
    "AcceptRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"bot": {"type": "string"}},
    },
    **OPS_SCHEMAS,
}

QUERY: Final[dict[str, dict[str, Any]]] = {
    "bot": {"description": "The bot to ask; needed when several are connected."},
    "q": {"description": "Case-insensitive search in names, aliases, topics and ids."},
    "event": {"description": "Comma-separated event names (message, scan, login, ...)."},
    "room": {"description": "Comma-separated room ids."},
    "contact": {"description": "Comma-separated contact ids."},
    "limit": {
        "description": "At most this many (1-200, default 50).",
        "schema": {"type": "integer"},
    },
    "all": {
        "description": "`1` to include clients that went offline.",
        "schema": {"type": "string", "enum": ["0", "1"]},
    },
}


PATH: Final[dict[str, str]] = {
    "bot": "The bot's name.",
    "contact": "A contact id (URL-encoded; iLink ids contain '@').",
    "room": "A room id.",
    "friendship": "The friend request's id (from its `friendship` event).",
}


def _parameter(name: str, where: str = "query") -> dict[str, Any]:
    if where == "path":
        return {
            "name": name,
            "in": "path",
            "required": True,
            "description": PATH.get(name, ""),
            "schema": {"type": "string"},
        }
    spec = QUERY.get(name, {})
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": spec.get("description", ""),
        "schema": spec.get("schema", {"type": "string"}),
    }


def _errors(codes: Iterable[str]) -> dict[str, Any]:
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(ERROR_CODES[code], []).append(code)
    return {
        str(status): {
            "description": "; ".join(f"`{c}`: {ERROR_DESCRIPTIONS[c]}" for c in names),
            "content": {"application/json": {"schema": _ref("Error")}},
        }
        for status, names in sorted(by_status.items())
    }


def build(routes: Iterable[Route], version: str) -> dict[str, Any]:
    """The document for ``routes`` (paths are those under ``/api``)."""
    paths: dict[str, Any] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "operationId": route.operation_id,
            "summary": route.summary,
            "tags": [route.tag],
            "parameters": [_parameter(p, "path") for p in route.path_params]
            + [_parameter(q) for q in route.query],
        }
        if route.permission is not None:
            operation["description"] = f"Needs the `{route.permission}` permission."
        if route.request_schema is not None:
            operation["requestBody"] = {
                "required": route.method == "POST" and route.request_schema != "AcceptRequest",
                "content": {"application/json": {"schema": _ref(route.request_schema)}},
            }
        ok: dict[str, Any] = {"description": "OK"}
        if route.media_type is not None:
            ok["content"] = {route.media_type: {"schema": route.response_schema}}
        operation["responses"] = {"200": ok, **_errors(route.errors)}
        paths.setdefault("/api" + route.path, {})[route.method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "MetaPuppet web API",
            "version": version,
            "description": (
                "Read the bot's contacts and rooms, send messages, watch events. Every route "
                "needs a web token: `Authorization: Bearer <token>`. Errors are one envelope "
                "`{code, error, message}`; `error` is one of the stable names listed in "
                "components.schemas.Error."
            ),
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
        },
    }
