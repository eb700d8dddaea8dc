"""The Socket.IO packet codec: orjson instead of the standard library's json.

Encoding and decoding JSON was about an eighth of the server's time per message
(``bench/closed_loop.py --profile``); orjson does the same work several times faster. The
codec also turns off python-socketio's scan of every payload for ``bytes`` (binary
attachments): MetaPuppet sends files as base64 text, so that scan never finds anything.

It applies to this server's packets only (a subclass, passed as ``serializer``), not to
python-socketio clients in the same process. Checked against python-socketio 5.18.1.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import socketio

__all__ = ["FastPacket", "OrjsonCodec"]


class OrjsonCodec:
    """The ``json`` module interface python-socketio and python-engineio call."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        try:
            return orjson.dumps(obj).decode("utf-8")
        except TypeError:
            # what orjson refuses and JSON can still say: a lone UTF-16 surrogate (escaped
            # as \udXXX), an integer past 64 bits; anything else fails here as before
            return json.dumps(obj, separators=(",", ":"))

    @staticmethod
    def loads(text: str | bytes, **_: Any) -> Any:
        return orjson.loads(text)


class FastPacket(socketio.packet.Packet):  # type: ignore[misc]
    """A Socket.IO packet encoded with orjson, never as a binary event."""

    uses_binary_events = False
    json = OrjsonCodec
