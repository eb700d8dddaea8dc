"""OpenAPI schemas of the proactive outbox routes (``ops_api.py``)."""

from __future__ import annotations

from typing import Any, Final

__all__ = ["FILE_BODY", "OPS_SCHEMAS"]

_STRING_OR_NULL: Final = {"type": ["string", "null"]}
_NUMBER_OR_NULL: Final = {"type": ["number", "null"]}
#: a file in a JSON body, as every route that sends one takes it
FILE_BODY: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["name", "base64"],
    "additionalProperties": False,
    "properties": {"name": {"type": "string"}, "base64": {"type": "string"}},
}

OPS_SCHEMAS: Final[dict[str, Any]] = {
    "OutboxMessage": {
        "type": "object",
        "description": "A proactive message and the one state it is in.",
        "required": ["id", "bot", "contact", "state", "created_at", "updated_at"],
        "properties": {
            "id": {"type": "string"},
            "bot": {"type": "string"},
            "contact": {"type": "string"},
            "room": {"type": ["boolean", "null"]},
            "state": {
                "type": "string",
                "enum": ["queued", "sending", "delivered", "expired", "failed"],
            },
            "created_at": {"type": "number"},
            "updated_at": {"type": "number"},
            "expires_at": _NUMBER_OR_NULL,
            "attempts": {"type": "integer"},
            "reason": {**_STRING_OR_NULL, "description": "Why it waits, expired or failed."},
            "code": {**_STRING_OR_NULL, "description": "The channel's error code (failed)."},
            "message_id": {**_STRING_OR_NULL, "description": "The channel's id (delivered)."},
            "source": {"type": "string"},
            "preview": {"type": "string"},
        },
    },
    "OutboxRequest": {
        "type": "object",
        "required": ["to"],
        "additionalProperties": False,
        "properties": {
            "to": {"type": "string", "description": "A contact id (or a room id)."},
            "text": {"type": "string", "maxLength": 20000},
            "file": FILE_BODY,
            "kind": {"type": "string", "enum": ["contact", "room"]},
            "bot": {"type": "string"},
            "expires_s": {"type": "number", "exclusiveMinimum": 0},
        },
    },
}
