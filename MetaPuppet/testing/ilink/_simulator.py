"""``ILinkSimulator``: the composition root. It owns the HTTP sites (the main host and the
host a QR login can be redirected to) and adds the Python control API on top of the world.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

from ._api import ApiRoutes
from ._budget import BudgetRules
from ._clock import Clock, ManualClock
from ._control import MAX_CONTROL_BODY, ControlRoutes
from ._model import (
    BotAccount,
    Fault,
    InboundMessage,
    QrLogin,
    SentMessage,
    SimSettings,
    SimulatorError,
    SimUser,
    TypingEvent,
)
from ._world import World

__all__ = ["ILinkSimulator", "WeChatUser"]


@dataclass
class WeChatUser(SimUser):
    """A simulated WeChat user bound to its simulator: ``alice.send_text("hi")``."""

    sim: ILinkSimulator = field(repr=False, compare=False, kw_only=True)

    def scan(self, qrcode: str | None = None) -> QrLogin:
        return self.sim.scan(self, qrcode)

    def send_text(
        self, text: str, *, bot_id: str | None = None, create_time_ms: int | None = None
    ) -> InboundMessage:
        return self.sim.deliver(self, [self.sim.text_item(text)], bot_id, create_time_ms)

    def send_image(
        self, data: bytes, *, key_form: str = "auto", bot_id: str | None = None
    ) -> InboundMessage:
        return self.sim.deliver(self, [self.sim.media_item("image", data, key_form)], bot_id)

    def send_voice(
        self,
        data: bytes,
        *,
        transcript: str | None = None,
        playtime_ms: int | None = None,
        key_form: str = "auto",
        bot_id: str | None = None,
    ) -> InboundMessage:
        item = self.sim.media_item(
            "voice", data, key_form, transcript=transcript, playtime_ms=playtime_ms
        )
        return self.sim.deliver(self, [item], bot_id)

    def send_file(
        self, data: bytes, file_name: str, *, key_form: str = "auto", bot_id: str | None = None
    ) -> InboundMessage:
        return self.sim.deliver(
            self, [self.sim.media_item("file", data, key_form, file_name=file_name)], bot_id
        )

    def send_video(
        self, data: bytes, *, key_form: str = "auto", bot_id: str | None = None
    ) -> InboundMessage:
        return self.sim.deliver(self, [self.sim.media_item("video", data, key_form)], bot_id)

    def send_quote(
        self,
        text: str,
        quoted: InboundMessage | SentMessage | str,
        *,
        title: str | None = None,
        bot_id: str | None = None,
    ) -> InboundMessage:
        return self.sim.deliver(self, [self.sim.quote_item(text, quoted, title)], bot_id)

    def send_items(
        self, items: list[dict[str, Any]], *, bot_id: str | None = None
    ) -> InboundMessage:
        return self.sim.deliver(self, items, bot_id)

    def send_hostile(self, kind: str, *, bot_id: str | None = None) -> InboundMessage:
        return self.sim.hostile(self, kind, bot_id)

    def sent(self) -> list[SentMessage]:
        """What the bot sent to this user, media decrypted."""
        return self.sim.sent_to(self)

    async def wait_sent(self, count: int = 1, timeout: float = 5.0) -> list[SentMessage]:
        return await self.sim.wait_sent(self, count, timeout)

    def typing(self) -> list[TypingEvent]:
        return self.sim.typing_events(self)


class ILinkSimulator(World):
    """An offline iLink service on loopback; see the package docstring for what it does.

    ::

        async with ILinkSimulator() as sim:
            # point the client at sim.base_url / sim.cdn_base_url
            qr = await sim.wait_qr()
            alice = sim.create_user("Alice")
            alice.scan()
            sim.confirm()
            alice.send_text("hello")
            [reply] = await alice.wait_sent(1)

    ``clock`` (default a :class:`ManualClock` at the current time) drives send windows, QR
    expiry and message timestamps. ``redirect_port=None`` runs without the second host.
    Keyword ``settings`` overrides are :class:`SimSettings` fields (``updates_hold_s=0.5``).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        redirect_port: int | None = 0,
        clock: Clock | None = None,
        budget: BudgetRules | None = None,
        control_token: str | None = None,
        **settings: Any,
    ) -> None:
        config = SimSettings()
        config.update(settings)
        super().__init__(clock or ManualClock(), config, budget)
        self.host = host
        self._port = port
        self._redirect_port_wanted = redirect_port
        self.control_token = control_token or secrets.token_urlsafe(24)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.redirect_port: int | None = None

    # --- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            raise SimulatorError("the simulator is already started")
        self.stopping = False
        app = web.Application(
            client_max_size=max(self.settings.max_upload_bytes + 1024, MAX_CONTROL_BODY)
        )
        ApiRoutes(self, self._host_of).add_to(app)
        ControlRoutes(self, self.control_token).add_to(app)
        runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self._port)
            await site.start()
            self.port = int(runner.addresses[-1][1])
            if self._redirect_port_wanted is not None:
                redirect = web.TCPSite(runner, self.host, self._redirect_port_wanted)
                await redirect.start()
                self.redirect_port = int(runner.addresses[-1][1])
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.base_url = f"http://{self.host}:{self.port}"
        self.cdn_base_url = f"{self.base_url}/c2c"
        self.redirect_host = f"{self.host}:{self.redirect_port}" if self.redirect_port else ""

    async def stop(self) -> None:
        """Ends every held long-poll and hang at once, then closes the sockets."""
        runner, self._runner = self._runner, None
        self.stopping = True
        self.notify()
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> ILinkSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _host_of(self, request: web.Request) -> str:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        if sockname and self.redirect_port and int(sockname[1]) == self.redirect_port:
            return "redirect"
        return "main"

    @property
    def control_url(self) -> str:
        return f"{self.base_url}/_sim"

    # --- Python control API --------------------------------------------------------------

    def create_user(self, name: str | None = None) -> WeChatUser:
        base = super().create_user(name)
        user = WeChatUser(base.user_id, base.name, sim=self)
        self.users[user.user_id] = user
        return user

    async def wait_qr(self, timeout: float = 5.0, after: QrLogin | None = None) -> QrLogin:
        """The open QR code the client fetched (a newer one than ``after``, if given)."""

        def fetched() -> bool:
            try:
                return self.qr() is not after
            except SimulatorError:
                return False

        if not await self.wait_until(fetched, timeout):
            raise TimeoutError(f"the client fetched no new QR code within {timeout} s")
        return self.qr()

    async def login(self, user: SimUser | None = None, timeout: float = 5.0) -> BotAccount:
        """The whole happy path: wait for the client's QR, scan it, confirm."""
        await self.wait_qr(timeout)
        self.scan(user or self.create_user("owner"))
        return self.confirm()

    async def wait_sent(
        self, user: SimUser | str, count: int = 1, timeout: float = 5.0
    ) -> list[SentMessage]:
        """The bot's messages to ``user`` once there are at least ``count`` of them."""
        if not await self.wait_until(lambda: len(self.sent_to(user)) >= count, timeout):
            got = len(self.sent_to(user))
            raise TimeoutError(f"the bot sent {got} message(s), not {count}, within {timeout} s")
        return self.sent_to(user)

    async def wait_for(
        self, condition: Callable[[], bool], timeout: float = 5.0, what: str = "condition"
    ) -> None:
        if not await self.wait_until(condition, timeout):
            raise TimeoutError(f"{what} did not happen within {timeout} s")

    def add_fault(
        self,
        endpoint: str,
        kind: str,
        count: int = 1,
        *,
        status: int = 500,
        seconds: float | None = None,
    ) -> Fault:
        """The next ``count`` requests to ``endpoint`` misbehave (see ``FAULT_KINDS``)."""
        fault = Fault(endpoint, kind, count, status, seconds)
        self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self.faults.clear()

    def request_count(self, endpoint: str | None = None) -> int:
        """Requests that reached the simulator, for one endpoint or all of them."""
        return self.counts[endpoint] if endpoint else sum(self.counts.values())

    def reset_counts(self) -> None:
        self.counts.clear()
        self.host_counts.clear()

    def set_budget(self, **changes: Any) -> BudgetRules:
        rules = self.budget.rules
        merged = {
            k: getattr(rules, k) for k in ("per_message", "window_s", "scope", "missing_token")
        }
        merged.update(changes)
        self.budget.rules = BudgetRules(**merged)
        return self.budget.rules

    def configure(self, **changes: Any) -> SimSettings:
        self.settings.update(changes)
        self.notify()
        return self.settings

    def advance_clock(self, seconds: float) -> None:
        advance = getattr(self.clock, "advance", None)
        if advance is None:
            raise SimulatorError(
                "this simulator's clock cannot be moved (pass a ManualClock or OffsetClock)"
            )
        advance(seconds)
        self.notify()
