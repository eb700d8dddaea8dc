"""Transport: connected puppets and the Socket.IO server, behind one seam.

:class:`PuppetLink` is how the rest of the server talks to one puppet;
:class:`PuppetRegistry` finds the link of a bot; :class:`SocketTransport` is the aiohttp +
Socket.IO server with its connect and event handlers. Every reach into python-socketio
and python-engineio internals lives in this package. :class:`FakePuppetLink` is a puppet
in Python for fast tests.
"""

from __future__ import annotations

from .auth import Authenticator, Grant, TokenRegistry
from .fake import FakePuppetLink
from .link import PuppetLink
from .registry import PuppetRegistry
from .sio import PUPPET_ROOM, WEB_ROOM, SocketPuppetLink, SocketTransport, TransportHandlers

__all__ = [
    "PUPPET_ROOM",
    "WEB_ROOM",
    "Authenticator",
    "FakePuppetLink",
    "Grant",
    "PuppetLink",
    "PuppetRegistry",
    "SocketPuppetLink",
    "SocketTransport",
    "TokenRegistry",
    "TransportHandlers",
]
