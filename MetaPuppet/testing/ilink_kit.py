"""The kit on MetaPuppet's own ``ilink`` puppet, against the offline iLink simulator.

The whole chain runs: robot <-> Socket.IO <-> Node Wechaty <-> the ilink puppet <-> HTTP <->
:class:`~MetaPuppet.testing.ilink.ILinkSimulator`. The kit scans the bot's QR code with a
simulated WeChat user of its own; contacts are simulated WeChat users who write to the bot
(iLink bots get direct messages only, so rooms raise :class:`~MetaPuppet.NotSupported`)::

    async with mock_wechat(MyBot(), puppet="ilink") as wx:
        alice = await wx.contact("Alice")
        await alice.say("hello")
        assert (await alice.next_reply()).text == "you said hello"
        wx.sim.expire_session()            # the simulator itself, for everything else
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..errors import NotSupported
from ..server import SocketServerCore
from ..types import FileBox
from .ilink import BotAccount, ILinkSimulator, QrLogin, WeChatUser
from .ilink import SentMessage as SimSentMessage
from .kit import Kit, KitBot

__all__ = ["ILinkBot", "ILinkContact", "ILinkReply", "ILinkWechat", "QrScanner"]

CHANNEL = "ilink"

#: scans one QR code the puppet showed and confirms the login: ``(bot, qr) -> account``
QrScanner = Callable[["ILinkBot", QrLogin], Awaitable[BotAccount]]


class ILinkReply:
    """A message the bot sent to a simulated user, as the user received it."""

    def __init__(self, sent: SimSentMessage) -> None:
        self.sent = sent
        self.room_id: str | None = None

    @property
    def text(self) -> str:
        return self.sent.text

    @property
    def kinds(self) -> list[str]:
        """What each item is: ``text``, ``image``, ``file``, ``voice``, ``video``."""
        return [item.kind for item in self.sent.items]

    async def file(self) -> FileBox:
        """The file this message carried, downloaded from the CDN and decrypted."""
        for item in self.sent.items:
            if item.kind != "text":
                if item.data is None:
                    raise AssertionError(f"the user could not open the {item.kind}: {item.error}")
                name = item.file_name or f"{item.kind}.bin"
                return FileBox.from_bytes(item.data, name)
        raise AssertionError(f"the message carried no file: {self.kinds}")

    def __repr__(self) -> str:
        return f"ILinkReply({self.text!r}, kinds={self.kinds})"


class ILinkContact:
    """A simulated WeChat user who writes to the bot."""

    def __init__(self, bot: ILinkBot, user: WeChatUser) -> None:
        self.bot = bot
        self.user = user
        self.id = user.user_id
        self.name = user.name
        self._taken = 0

    async def say(self, text: str, *, room: Any = None, mention_bot: bool = False, **_: Any) -> str:
        """Send text to the bot; returns the WeChat message id."""
        if room is not None:
            raise NotSupported(CHANNEL, "rooms", "saying something in a room")
        return str(self.user.send_text(text, bot_id=self.bot.bot_id).message_id)

    async def send_file(self, name: str, data: bytes, *, room: Any = None) -> str:
        """Send a file (an image when the name says so) to the bot."""
        if room is not None:
            raise NotSupported(CHANNEL, "rooms", "sending a file to a room")
        mime = mimetypes.guess_type(name)[0] or ""
        if mime.startswith("image/"):
            sent = self.user.send_image(data, bot_id=self.bot.bot_id)
        elif mime.startswith("video/"):
            sent = self.user.send_video(data, bot_id=self.bot.bot_id)
        else:
            sent = self.user.send_file(data, name, bot_id=self.bot.bot_id)
        return str(sent.message_id)

    async def send_friend_request(self, hello: str = "") -> str:
        raise NotSupported(CHANNEL, "friendships", "a friend request")

    async def next_reply(self, timeout: float = 5.0) -> ILinkReply:
        """The next message the bot sent to this user; waits up to ``timeout``."""
        try:
            sent = await self.user.wait_sent(self._taken + 1, timeout)
        except TimeoutError:
            raise AssertionError(
                f"the bot sent nothing more to {self!r} within {timeout:.1f} s"
            ) from None
        self._taken += 1
        return ILinkReply(sent[self._taken - 1])

    def pending_replies(self) -> list[ILinkReply]:
        """Replies received and not yet taken, without waiting."""
        sent = self.user.sent()
        taken, self._taken = self._taken, len(sent)
        return [ILinkReply(s) for s in sent[taken:]]

    def __repr__(self) -> str:
        return f"ILinkContact({self.name!r}, id={self.id!r})"


class ILinkBot(KitBot):
    """One bot account: a Node client on the ilink puppet, logged in by the kit's owner."""

    def __init__(self, wx: ILinkWechat, name: str, owner: WeChatUser) -> None:
        super().__init__(wx, name)
        self.owner = owner
        #: the iLink account (``…@im.bot``) once logged in
        self.bot_id: str | None = None

    @property
    def sim(self) -> ILinkSimulator:
        assert isinstance(self.wx, ILinkWechat)
        return self.wx.sim

    async def contact(self, name: str, **_: Any) -> ILinkContact:
        return ILinkContact(self, self.sim.create_user(name))

    async def room(self, topic: str, members: Iterable[Any] = ()) -> Any:
        raise NotSupported(CHANNEL, "rooms", "creating a room")


class ILinkWechat(Kit[ILinkBot]):
    """The running kit on the ilink puppet: ``server``, ``sim``, one bot per account."""

    def __init__(
        self,
        server: SocketServerCore,
        sim: ILinkSimulator,
        *,
        log_level: str = "warn",
        scanner: QrScanner | None = None,
    ) -> None:
        super().__init__(server, log_level=log_level)
        self.sim = sim
        #: how a QR code gets scanned (None: the bot's owner scans and confirms at once)
        self.scanner = scanner

    async def add_bot(
        self,
        name: str,
        *,
        timeout: float = 60.0,
        client_options: dict[str, Any] | None = None,
        puppet_options: dict[str, Any] | None = None,
        **_: Any,
    ) -> ILinkBot:
        """Start another Node client on the ilink puppet and scan its QR code."""
        options = {"base_url": self.sim.base_url, "cdn_base_url": self.sim.cdn_base_url}
        config = {
            "server": {"token": self.server.token},
            "client": {"url": self.server.url, "bot": name, **(client_options or {})},
            "puppet": {"name": "ilink", "options": {**options, **(puppet_options or {})}},
        }
        owner = self.sim.create_user(f"owner of {name}")
        bot = await self.start_bot(ILinkBot(self, name, owner), config, timeout)
        return bot

    async def during_login(self, bot: ILinkBot, first: bool) -> None:
        """Scan the QR code the puppet shows (after a restart it logs in by itself)."""
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                try:
                    qr = await self.sim.wait_qr(timeout=3600)
                except TimeoutError:
                    continue
                if qr.user_id is None:
                    if self.scanner is not None:
                        account = await self.scanner(bot, qr)
                    else:
                        self.sim.scan(bot.owner, qr.qrcode)
                        account = self.sim.confirm(qr.qrcode)
                    bot.bot_id = account.bot_id
                await asyncio.sleep(0.05)

    async def contact(self, name: str, **payload: Any) -> ILinkContact:
        """A simulated WeChat user who writes to the first bot."""
        return await self.bot().contact(name, **payload)

    async def room(self, topic: str, members: Iterable[Any] = ()) -> Any:
        raise NotSupported(CHANNEL, "rooms", "creating a room")
