"""The one error envelope of the web side: ``{code, error, message}``.

``code`` is the HTTP status (also in socket acknowledgements, where there is no status
line), ``error`` a stable machine-readable name from :data:`ERROR_CODES`, ``message`` a
sentence for a person saying what failed and what to do.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ERROR_CODES",
    "ERROR_DESCRIPTIONS",
    "WebError",
]

#: Stable error names and their HTTP status. Never rename one; add new ones instead.
ERROR_CODES: dict[str, int] = {
    "invalid_json": 400,
    "invalid_request": 400,
    "unknown_action": 400,
    "bot_required": 400,
    "auth_required": 401,
    "invalid_token": 401,
    "permission_denied": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "send_window_closed": 409,
    "payload_too_large": 413,
    "not_supported": 422,
    "internal_error": 500,
    "bot_error": 502,
    "bot_not_connected": 503,
    "outbox_full": 503,
    "cluster_unavailable": 503,
    "bot_timeout": 504,
    "host_not_allowed": 421,
}

#: One line per code, for docs/web.md and the OpenAPI document.
ERROR_DESCRIPTIONS: dict[str, str] = {
    "invalid_json": "The request body is not a JSON object.",
    "invalid_request": "A field is missing, unknown or has a bad value; the message names it.",
    "unknown_action": "The socket `action` names no known action.",
    "bot_required": "Several bots are connected and the request did not say which (`bot`).",
    "auth_required": "No token: send `Authorization: Bearer <token>`.",
    "invalid_token": "The token is not a web token of this server.",
    "permission_denied": "The token is valid but lacks the permission this call needs.",
    "not_found": "No such route under /api/.",
    "method_not_allowed": "The route exists but not with this HTTP method.",
    "send_window_closed": "The channel's send budget does not allow this message now (iLink: "
    "the user has not written, or the window after their message is used up or over); "
    "nothing was sent.",
    "payload_too_large": "The request body is larger than the server accepts.",
    "not_supported": "The bot's channel cannot do this (rooms on iLink, the mock console on "
    "a real puppet); the message names the channel and what it lacks.",
    "internal_error": "The server failed; its log says why.",
    "bot_error": "The bot (the Node side) failed to carry out the call.",
    "bot_not_connected": "No puppet for the requested bot is connected.",
    "outbox_full": "The queue of proactive messages is full (proactive.max_queued / max_per_chat).",
    "cluster_unavailable": "Cluster mode: the shared Redis cannot be reached, so the call "
    "cannot be made now; try again once it is back (docs/scaling.md).",
    "bot_timeout": "The bot did not answer in time.",
    "host_not_allowed": "The `Host` header names no name of this server (a DNS rebinding "
    "attempt, or a name missing from `server.allowed_hosts`).",
}


class WebError(Exception):
    """A failure to report to a web client as the error envelope."""

    def __init__(self, error: str, message: str) -> None:
        if error not in ERROR_CODES:
            raise ValueError(f"unknown web error code {error!r}")
        super().__init__(message)
        self.error = error
        self.message = message

    @property
    def status(self) -> int:
        return ERROR_CODES[self.error]

    def envelope(self) -> dict[str, Any]:
        return {"code": self.status, "error": self.error, "message": self.message}
