"""Reading a REST request's JSON body within bounds.

Without them a body was read whole whatever its size (six parallel 60 MiB bodies took a
server to a peak of 535 MiB) and a deeply nested one ended in a ``RecursionError`` (a 500).
Now the size is capped (``web.max_body_bytes``; a larger ``Content-Length`` is refused
before anything is read) and so is the nesting (:data:`MAX_JSON_DEPTH`); both are a 4xx
error envelope naming the problem.
"""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web

from .errors import WebError

__all__ = ["MAX_JSON_DEPTH", "read_json_body"]

#: JSON bodies may nest lists and objects this deep (the API's own bodies need 3)
MAX_JSON_DEPTH: Final = 32
CHUNK: Final = 64 * 1024


async def read_json_body(
    request: web.Request, cap: int, *, optional: bool = False
) -> dict[str, Any]:
    """The JSON object in the body: at most ``cap`` bytes (refused from its
    ``Content-Length`` before anything is read, else as soon as it passes the cap) and at
    most :data:`MAX_JSON_DEPTH` levels deep. ``optional``: an empty body is ``{}``."""
    length = request.content_length
    if length is not None and length > cap:
        raise WebError(
            "payload_too_large",
            f"the body is {length} bytes; this server takes at most {cap} (web.max_body_bytes)",
        )
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > cap:
            raise WebError(
                "payload_too_large", f"the body is over {cap} bytes (web.max_body_bytes)"
            )
        chunks.append(chunk)
    raw = b"".join(chunks)
    if optional and not raw.strip():
        return {}
    too_deep = WebError("invalid_json", f"the body is nested more than {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WebError("invalid_json", "the body must be a JSON object") from None
    except RecursionError:
        raise too_deep from None
    if deeper_than(data, MAX_JSON_DEPTH):
        raise too_deep
    if not isinstance(data, dict):
        raise WebError("invalid_json", "the body must be a JSON object, not " + type(data).__name__)
    return data


def deeper_than(data: Any, limit: int) -> bool:
    """Whether ``data`` nests lists and objects more than ``limit`` levels (no recursion)."""
    level: list[Any] = [data]
    for _ in range(limit):
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True
