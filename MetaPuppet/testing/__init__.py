"""Test kit: a real MetaPuppet server and a real Node client, from pytest.

::

    from MetaPuppet.testing import mock_wechat

    async with mock_wechat(MyBot()) as wx:        # server on a free port + Node client, logged in
        alice = await wx.contact("Alice")
        await alice.say("hello")                   # a direct message to the bot
        assert (await alice.next_reply(timeout=5)).text == "olleh"

On the mock puppet (default) contacts and rooms live in the Node process
(:mod:`~MetaPuppet.testing.mock`); with ``puppet="ilink"`` they are users of an offline
iLink simulator and the bot runs on MetaPuppet's own ilink puppet
(:mod:`~MetaPuppet.testing.ilink_kit`). Every process the kit starts is stopped on exit,
also when the test fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

from ..config import Config, new_token
from ..robot import RobotBase
from ..server import SocketServerCore
from ..sweet import SweetSocketServer
from .ilink import ILinkSimulator
from .ilink_kit import ILinkBot, ILinkContact, ILinkReply, ILinkWechat, QrScanner
from .kit import Kit, KitBot
from .mock import DEFAULT_USER_NAME, MockBot, MockContact, MockRoom, MockWechat, SentMessage
from .node import NodeClient, NodeClientError, find_client_dir, node_command

__all__ = [
    "DEFAULT_USER_NAME",
    "ILinkBot",
    "ILinkContact",
    "ILinkReply",
    "ILinkSimulator",
    "ILinkWechat",
    "Kit",
    "KitBot",
    "MockBot",
    "MockContact",
    "MockRoom",
    "MockWechat",
    "NodeClient",
    "NodeClientError",
    "QrScanner",
    "SentMessage",
    "find_client_dir",
    "mock_wechat",
    "node_command",
]


@contextlib.asynccontextmanager
async def mock_wechat(
    robot: RobotBase | None = None,
    *,
    bots: Iterable[str] = ("mock-bot",),
    server: SocketServerCore | None = None,
    user_name: str = DEFAULT_USER_NAME,
    log_level: str = "warn",
    timeout: float = 60.0,
    client_options: dict[str, Any] | None = None,
    puppet: str = "mock",
    simulator: ILinkSimulator | None = None,
    puppet_options: dict[str, Any] | None = None,
    qr_scanner: QrScanner | None = None,
) -> AsyncIterator[Any]:
    """Start a server on a free loopback port and one logged-in bot per name in ``bots``.

    ``puppet="mock"`` (default) runs the bots on ``wechaty-puppet-mock``;
    ``puppet="ilink"`` runs them on MetaPuppet's own ilink puppet against an offline iLink
    simulator (``wx.sim``; pass ``simulator`` to configure your own, not started yet), the
    kit scanning the QR code; ``puppet_options`` go to that puppet (``send_budget`` ...);
    ``qr_scanner(bot, qr)`` scans each QR code the puppet shows and returns the confirmed
    account (default: the bot's owner scans and confirms at once; the demo shows the steps).
    Pass ``server`` to test your own server subclass (it must not
    be started yet; it gets a fresh random token when it has none). Everything started
    here is stopped on exit.
    """
    if puppet not in ("mock", "ilink"):
        raise ValueError(f"puppet must be 'mock' or 'ilink', got {puppet!r}")
    if server is None:
        # no outgoing rate limit: tests send faster than a WeChat account should
        server = SweetSocketServer(
            robot=robot, config=Config(), token=new_token(), port=0, rate_limiter=None
        )
    elif robot is not None:
        server.robot = robot
        robot.add_server(server)
    if not server.token:
        server.token = new_token()
    async with contextlib.AsyncExitStack() as stack:
        await server.start(host="127.0.0.1", port=0)
        stack.push_async_callback(server.stop)
        wx: MockWechat | ILinkWechat
        if puppet == "ilink":
            sim = simulator if simulator is not None else ILinkSimulator()
            await sim.start()
            stack.push_async_callback(sim.stop)
            wx = ILinkWechat(server, sim, log_level=log_level, scanner=qr_scanner)
        else:
            wx = MockWechat(server, log_level=log_level)
        stack.push_async_callback(_stop_replacement, wx, server)
        stack.push_async_callback(wx.close)
        for name in bots:
            if isinstance(wx, ILinkWechat):
                await wx.add_bot(
                    name,
                    timeout=timeout,
                    client_options=client_options,
                    puppet_options=puppet_options,
                )
            else:
                await wx.add_bot(
                    name, user_name=user_name, timeout=timeout, client_options=client_options
                )
        yield wx


async def _stop_replacement(wx: MockWechat | ILinkWechat, original: SocketServerCore) -> None:
    if wx.server is not original:  # replaced by restart_server()
        await wx.server.stop()
