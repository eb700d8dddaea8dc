"""MetaPuppet: drive a real Wechaty WeChat bot from Python.

::

    from MetaPuppet import RobotBase, SweetSocketServer

    class Reverse(RobotBase):
        async def on_message(self, msg):
            return msg.text[::-1]

    server = SweetSocketServer(robot=Reverse())
    server.run()            # serves from a background thread; start the Node client next
"""

from __future__ import annotations

from . import utils
from .config import Config, load_config
from .errors import (
    ConfigError,
    MetaPuppetError,
    ProtocolError,
    PuppetDisconnected,
    PuppetNotConnected,
    SnippetCompileError,
    SnippetError,
    SnippetTimeout,
)
from .protocol import PROTOCOL_VERSION, BotEvent
from .robot import RobotBase, TestBot
from .server import AmbiguousBot, PuppetLink, SocketServerCore
from .sweet import SweetSocketServer
from .wechaty import (
    Contact,
    ContactGender,
    Contacts,
    ContactSelf,
    ContactType,
    FileBox,
    Friendship,
    FriendshipType,
    Message,
    MessageType,
    MiniProgram,
    Room,
    RoomEvent,
    RoomInvitation,
    Rooms,
    UrlLink,
)

__version__ = "0.2.0"

__all__ = [
    "PROTOCOL_VERSION",
    "AmbiguousBot",
    "BotEvent",
    "Config",
    "ConfigError",
    "Contact",
    "ContactGender",
    "ContactSelf",
    "ContactType",
    "Contacts",
    "FileBox",
    "Friendship",
    "FriendshipType",
    "Message",
    "MessageType",
    "MetaPuppetError",
    "MiniProgram",
    "ProtocolError",
    "PuppetDisconnected",
    "PuppetLink",
    "PuppetNotConnected",
    "RobotBase",
    "Room",
    "RoomEvent",
    "RoomInvitation",
    "Rooms",
    "SnippetCompileError",
    "SnippetError",
    "SnippetTimeout",
    "SocketServerCore",
    "SweetSocketServer",
    "TestBot",
    "UrlLink",
    "load_config",
    "utils",
]
