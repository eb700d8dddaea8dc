"""Route: one REST API route, as the server registers it and the OpenAPI document says."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from .hub import WebHub

__all__ = ["Handler", "Route", "json_response", "schema_ref"]

Handler = Callable[["WebHub", web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One API route: what the server registers and what the OpenAPI document says."""

    method: str
    path: str  # under /api
    operation_id: str
    summary: str
    tag: str
    permission: str | None
    handler: Handler
    query: tuple[str, ...] = ()
    request_schema: str | None = None
    response_schema: Mapping[str, Any] | None = None
    media_type: str | None = "application/json"
    errors: tuple[str, ...] = ()

    @property
    def path_params(self) -> list[str]:
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]


def json_response(data: Any, status: int = 200) -> web.Response:
    """JSON as every route writes it: UTF-8 text, not ``\\u`` escapes."""
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, ensure_ascii=False))


def schema_ref(name: str) -> dict[str, str]:
    """A reference to one of the OpenAPI document's component schemas."""
    return {"$ref": f"#/components/schemas/{name}"}
