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
from .dialog import (
    Dialog,
    DialogError,
    DialogReplayError,
    SideEffectFailed,
    SideEffectInterrupted,
    UnexpectedAnswer,
)
from .dispatch import CONTINUE, Invocation, Router, log_calls, throttle
from .errors import (
    AmbiguousBot,
    AuthenticationError,
    ClusterUnavailable,
    ConfigError,
    MetaPuppetError,
    NotSupported,
    ProtocolError,
    PuppetDisconnected,
    PuppetNotConnected,
    SendWindowClosed,
    SnippetCompileError,
    SnippetError,
    SnippetTimeout,
)
from .protocol import PROTOCOL_VERSION, BotEvent, Capabilities, SendBudget
from .ratelimit import Rate, RateLimiter
from .robot import RobotBase, TestBot
from .server import SocketServerCore
from .storage import BaseStorage, MemoryStorage, SQLiteStorage, StorageKey
from .sweet import SweetSocketServer
from .transport import FakePuppetLink, PuppetLink
from .types import (
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
    "CONTINUE",
    "PROTOCOL_VERSION",
    "AmbiguousBot",
    "AuthenticationError",
    "BaseStorage",
    "BotEvent",
    "Capabilities",
    "ClusterUnavailable",
    "Config",
    "ConfigError",
    "Contact",
    "ContactGender",
    "ContactSelf",
    "ContactType",
    "Contacts",
    "Dialog",
    "DialogError",
    "DialogReplayError",
    "FakePuppetLink",
    "FileBox",
    "Friendship",
    "FriendshipType",
    "Invocation",
    "MemoryStorage",
    "Message",
    "MessageType",
    "MetaPuppetError",
    "MiniProgram",
    "NotSupported",
    "ProtocolError",
    "PuppetDisconnected",
    "PuppetLink",
    "PuppetNotConnected",
    "Rate",
    "RateLimiter",
    "RobotBase",
    "Room",
    "RoomEvent",
    "RoomInvitation",
    "Rooms",
    "Router",
    "SQLiteStorage",
    "SendBudget",
    "SendWindowClosed",
    "SideEffectFailed",
    "SideEffectInterrupted",
    "SnippetCompileError",
    "SnippetError",
    "SnippetTimeout",
    "SocketServerCore",
    "StorageKey",
    "SweetSocketServer",
    "TestBot",
    "UnexpectedAnswer",
    "UrlLink",
    "load_config",
    "log_calls",
    "throttle",
    "utils",
]
