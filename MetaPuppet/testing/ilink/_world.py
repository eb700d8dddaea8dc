"""The simulated service's state and rules, without HTTP: the wire handlers and the control
API both call into one :class:`World`, so a rule (the budget, a cursor, a QR state) exists once.

Everything runs on the simulator's event loop; the methods are synchronous and wake the
long-polls through one change signal.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import secrets
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from ._budget import BudgetRules, SendBudget
from ._cdn import Cdn, is_int, item_problems, item_summary
from ._clock import Clock
from ._hostile import deliver_hostile
from ._model import (
    QR_STATUSES,
    BotAccount,
    Fault,
    InboundMessage,
    QrLogin,
    RefusedSend,
    SentMessage,
    SimSettings,
    SimulatorError,
    SimUser,
    TypingEvent,
)

__all__ = ["World"]

log = logging.getLogger("MetaPuppet.testing.ilink")
JSON = dict[str, Any]

MAX_QRCODES = 1000
MAX_USERS = 10_000
MAX_SENT_PER_USER = 10_000
MAX_EVENTS = 10_000


class World:
    """All state of one simulated iLink service (accounts, users, QR logins, CDN, budget)."""

    def __init__(
        self, clock: Clock, settings: SimSettings | None = None, budget: BudgetRules | None = None
    ) -> None:
        self.clock = clock
        self.settings = settings or SimSettings()
        self.budget = SendBudget(budget or BudgetRules())
        self.base_url = ""
        self.redirect_host = ""
        self.users: OrderedDict[str, SimUser] = OrderedDict()
        self.accounts: OrderedDict[str, BotAccount] = OrderedDict()
        self.qrcodes: OrderedDict[str, QrLogin] = OrderedDict()
        self.faults: list[Fault] = []
        self.counts: Counter[str] = Counter()
        self.host_counts: Counter[str] = Counter()
        self.violations: deque[str] = deque(maxlen=MAX_EVENTS)
        self.refused: deque[RefusedSend] = deque(maxlen=MAX_EVENTS)
        self.notifications: deque[JSON] = deque(maxlen=MAX_EVENTS)
        self._sent: dict[str, deque[SentMessage]] = {}
        self._typing: dict[str, deque[TypingEvent]] = {}
        self._tokens: dict[str, str] = {}
        self._current_bot: str | None = None
        self.cdn = Cdn(self.settings, clock)
        self._cursor_key = os.urandom(16)
        self._next_id = (
            (1 << 62) + secrets.randbelow(1 << 40)
            if self.settings.big_message_ids
            else 7_000_000 + secrets.randbelow(1 << 20)
        )
        self._changed = asyncio.Event()
        self.stopping = False

    # --- waking long-polls ---------------------------------------------------------------

    def notify(self) -> None:
        """Something changed: every long-poll re-checks what it waits for."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """True as soon as ``condition()`` holds; False at ``timeout`` or when stopping."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while not condition():
            remaining = deadline - loop.time()
            if self.stopping or remaining <= 0:
                return False
            event = self._changed
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return condition()
        return True

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def violation(self, text: str) -> str:
        self.violations.append(text)
        log.warning("ilink simulator: client broke the protocol: %s", text)
        return text

    def count(self, endpoint: str, host: str) -> None:
        self.counts[endpoint] += 1
        self.host_counts[f"{host}:{endpoint}"] += 1

    def take_fault(self, endpoint: str) -> Fault | None:
        for fault in self.faults:
            if fault.endpoint == endpoint:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    # --- users and accounts --------------------------------------------------------------

    def create_user(self, name: str | None = None) -> SimUser:
        if len(self.users) >= MAX_USERS:
            raise SimulatorError(f"the simulator holds at most {MAX_USERS} users")
        user_id = "o9cq80" + secrets.token_urlsafe(16)[:22] + "@im.wechat"
        user = SimUser(user_id, name or f"user{len(self.users) + 1}")
        self.users[user_id] = user
        return user

    def user(self, user: SimUser | str) -> SimUser:
        user_id = user.user_id if isinstance(user, SimUser) else user
        found = self.users.get(user_id)
        if found is None:
            raise SimulatorError(f"no simulated WeChat user {user_id!r}; create_user() first")
        return found

    def account(self, bot_id: str | None = None) -> BotAccount:
        """The named bot account, or the one logged in last."""
        chosen = bot_id or self._current_bot
        if chosen is None or chosen not in self.accounts:
            raise SimulatorError(
                "no bot account is bound yet: a QR login must be confirmed first"
                if bot_id is None
                else f"no bot account {bot_id!r}"
            )
        return self.accounts[chosen]

    def account_for_token(self, token: str) -> BotAccount | None:
        bot_id = self._tokens.get(token)
        return None if bot_id is None else self.accounts[bot_id]

    def bind(self, owner_id: str) -> BotAccount:
        """A confirmed login: the owner's bot gets a new token; any earlier one stops working."""
        account = next((a for a in self.accounts.values() if a.owner_id == owner_id), None)
        if account is None:
            bot_id = secrets.token_hex(6) + "@im.bot"
            account = BotAccount(bot_id, owner_id, epoch=secrets.token_hex(4))
            account.log = deque(maxlen=self.settings.max_backlog)
            self.accounts[bot_id] = account
        if account.token is not None:
            self._tokens.pop(account.token, None)
        account.token = secrets.token_urlsafe(32)
        account.logins += 1
        account.typing_tickets.clear()
        self._tokens[account.token] = account.bot_id
        self._current_bot = account.bot_id
        self.notify()
        return account

    def expire_session(self, bot_id: str | None = None) -> BotAccount:
        """Every call with this bot's token answers errcode -14 until a new QR login."""
        account = self.account(bot_id)
        if account.token is not None:
            self._tokens.pop(account.token, None)
            account.token = None
        self.notify()
        return account

    def expired_answer(self) -> JSON:
        shape = self.settings.expired_shape
        out: JSON = {}
        if shape in ("ret", "both"):
            out["ret"] = -14
        if shape in ("errcode", "both"):
            out["errcode"] = -14
        out["errmsg"] = "session timeout"
        return out

    # --- QR login ------------------------------------------------------------------------

    def new_qrcode(self, local_tokens: list[str]) -> QrLogin:
        qrcode = secrets.token_hex(16)
        short = secrets.token_urlsafe(4)[:6]
        img = f"https://liteapp.weixin.qq.com/q/{short}?qrcode={qrcode}&bot_type=3"
        qr = QrLogin(qrcode, img, self.clock(), list(local_tokens))
        self.qrcodes[qrcode] = qr
        while len(self.qrcodes) > MAX_QRCODES:
            self.qrcodes.popitem(last=False)
        return qr

    def qr(self, qrcode: str | None = None) -> QrLogin:
        """The named QR login, or the newest one still open (not confirmed, expired or bound)."""
        if qrcode is not None:
            found = self.qrcodes.get(qrcode)
            if found is None:
                raise SimulatorError(f"no QR code {qrcode!r} was issued")
            return found
        for qr in reversed(self.qrcodes.values()):
            if self.qr_status(qr) not in (
                "confirmed",
                "expired",
                "binded_redirect",
                "verify_code_blocked",
            ):
                return qr
        raise SimulatorError("no open QR code: the client has not called get_bot_qrcode")

    def qr_status(self, qr: QrLogin) -> str:
        if qr.status in ("wait", "scaned", "need_verifycode"):
            if self.clock() - qr.created_s >= self.settings.qr_ttl_s:
                qr.status = "expired"
        return qr.status

    def scan(self, user: SimUser | str, qrcode: str | None = None) -> QrLogin:
        found = self.user(user)
        qr = self.qr(qrcode)
        status = self.qr_status(qr)
        if status != "wait":
            raise SimulatorError(
                f"QR code {qr.qrcode} is {status!r}, it can be scanned only in 'wait'"
            )
        qr.user_id = found.user_id
        qr.redirect = self.settings.redirect_on_scan
        bound = next((a for a in self.accounts.values() if a.owner_id == found.user_id), None)
        if bound is not None and bound.token is not None and bound.token in qr.local_tokens:
            qr.status = "binded_redirect"
        elif self.settings.verify_code is not None:
            qr.status = "need_verifycode"
            qr.verify_code = self.settings.verify_code
            qr.attempts_left = max(1, self.settings.verify_attempts)
        else:
            qr.status = "scaned"
        self.notify()
        return qr

    def confirm(self, qrcode: str | None = None) -> BotAccount:
        qr = self.qr(qrcode)
        status = self.qr_status(qr)
        if status != "scaned" or qr.user_id is None:
            hint = " (the pairing code was not entered yet)" if status == "need_verifycode" else ""
            raise SimulatorError(f"QR code {qr.qrcode} is {status!r}, not 'scaned'{hint}")
        account = self.bind(qr.user_id)
        qr.status = "confirmed"
        qr.bot_id = account.bot_id
        self.notify()
        return account

    def set_qr_state(
        self, status: str, qrcode: str | None = None, user: SimUser | str | None = None
    ) -> QrLogin:
        """Force a QR login into any state; ``scaned_but_redirect`` turns the redirect on."""
        if status not in QR_STATUSES:
            raise SimulatorError(f"unknown QR status {status!r}; use one of {QR_STATUSES}")
        qr = self.qrcodes.get(qrcode) if qrcode else None
        if qrcode and qr is None:
            raise SimulatorError(f"no QR code {qrcode!r} was issued")
        if qr is None:
            qr = self.qr()
        if user is not None:
            qr.user_id = self.user(user).user_id
        if status in (
            "scaned",
            "confirmed",
            "need_verifycode",
            "binded_redirect",
            "scaned_but_redirect",
        ):
            if qr.user_id is None:
                raise SimulatorError(f"status {status!r} needs the user who scanned (pass user)")
        if status == "scaned_but_redirect":
            qr.redirect = True
            status = "scaned"
        if status == "need_verifycode":
            qr.verify_code = (
                qr.verify_code or self.settings.verify_code or f"{secrets.randbelow(100):02d}"
            )
            qr.attempts_left = max(1, self.settings.verify_attempts)
        if status == "confirmed":
            assert qr.user_id is not None
            qr.bot_id = self.bind(qr.user_id).bot_id
        if status == "wait":
            qr.created_s = self.clock()
        qr.status = status
        self.notify()
        return qr

    def qr_answer(self, qr: QrLogin, host: str, verify_code: str | None) -> JSON:
        """What ``get_qrcode_status`` answers now at ``host`` (``main`` or ``redirect``)."""
        status = self.qr_status(qr)
        if status == "need_verifycode" and verify_code:
            if hmac.compare_digest(verify_code, qr.verify_code or ""):
                qr.status = status = "scaned"
            else:
                qr.attempts_left -= 1
                qr.status = status = "verify_code_blocked" if qr.attempts_left <= 0 else status
            self.notify()
        if qr.redirect and host == "main" and status not in ("wait", "expired"):
            return {"status": "scaned_but_redirect", "redirect_host": self.redirect_host}
        answer: JSON = {"status": status}
        if status == "confirmed" and qr.bot_id is not None:
            account = self.accounts[qr.bot_id]
            answer.update(
                bot_token=account.token or "",
                ilink_bot_id=account.bot_id,
                ilink_user_id=qr.user_id,
                baseurl=self.redirect_base_url if host == "redirect" else self.base_url,
            )
        return answer

    @property
    def redirect_base_url(self) -> str:
        scheme = urlsplit(self.base_url).scheme or "http"
        return f"{scheme}://{self.redirect_host}" if self.redirect_host else ""

    @property
    def cdn_base_url(self) -> str:
        return self.cdn.base_url

    @cdn_base_url.setter
    def cdn_base_url(self, url: str) -> None:
        self.cdn.base_url = url

    def media_item(
        self,
        kind: str,
        data: bytes,
        key_form: str = "auto",
        file_name: str | None = None,
        transcript: str | None = None,
        playtime_ms: int | None = None,
    ) -> JSON:
        """A media item as WeChat sends it: ciphertext on the CDN, the key in one of its forms."""
        return self.cdn.media_item(kind, data, key_form, file_name, transcript, playtime_ms)

    # --- messages to the bot -------------------------------------------------------------

    def _message_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def deliver(
        self,
        user: SimUser | str,
        items: list[JSON],
        bot_id: str | None = None,
        create_time_ms: int | None = None,
        payload_override: JSON | None = None,
    ) -> InboundMessage:
        """A user message to the bot: it gets a seq, a message_id and a fresh context_token."""
        sender = self.user(user)
        account = self.account(bot_id)
        created = self.now_ms() if create_time_ms is None else int(create_time_ms)
        token: str | None = secrets.token_urlsafe(36)
        message_id = self._message_id()
        seq = account.next_seq
        account.next_seq += 1
        payload: JSON = {
            "seq": seq,
            "message_id": message_id,
            "from_user_id": sender.user_id,
            "to_user_id": account.bot_id,
            "client_id": secrets.token_hex(8),
            "create_time_ms": created,
            "update_time_ms": created,
            "session_id": hashlib.sha1(f"{account.bot_id}|{sender.user_id}".encode()).hexdigest(),
            "message_type": 1,
            "message_state": 2,
            "item_list": items,
            "context_token": token,
        }
        if payload_override is not None:
            payload = payload_override
            token = (
                payload.get("context_token")
                if isinstance(payload.get("context_token"), str)
                else None
            )
        if token:
            self.budget.issue(token, account.bot_id, sender.user_id, created)
        if account.log.maxlen is not None and len(account.log) == account.log.maxlen:
            dropped_seq, _ = account.log[0]
            if dropped_seq > account.acked:
                log.warning(
                    "ilink simulator: backlog of %s is full (%d), dropping undelivered seq %d",
                    account.bot_id,
                    account.log.maxlen,
                    dropped_seq,
                )
        account.log.append((seq, payload))
        self.notify()
        return InboundMessage(
            str(message_id), seq, account.bot_id, sender.user_id, token, created, payload
        )

    def text_item(self, text: str) -> JSON:
        return {"type": 1, "create_time_ms": self.now_ms(), "text_item": {"text": text}}

    def quote_item(
        self, text: str, quoted: InboundMessage | SentMessage | str, title: str | None
    ) -> JSON:
        """A text item that quotes an earlier message (``ref_msg``)."""
        if isinstance(quoted, InboundMessage):
            items = quoted.payload.get("item_list") or [self.text_item("")]
            ref: JSON = {"message_item": items[0], "svr_id": quoted.message_id}
        elif isinstance(quoted, SentMessage):
            ref = {"message_item": self.text_item(quoted.text)}
        else:
            ref = {"message_item": self.text_item(quoted)}
        ref["title"] = title if title is not None else item_summary(ref["message_item"])
        item = self.text_item(text)
        item["ref_msg"] = ref
        return item

    def hostile(self, user: SimUser | str, kind: str, bot_id: str | None = None) -> InboundMessage:
        """A message built to break a careless client; see ``HOSTILE_KINDS``."""
        return deliver_hostile(self, user, kind, bot_id)

    # --- getupdates cursors --------------------------------------------------------------

    def cursor(self, account: BotAccount, seq: int) -> str:
        body = f"v1|{account.bot_id}|{account.epoch}|{seq}"
        mac = hmac.new(self._cursor_key, body.encode(), hashlib.sha256).hexdigest()[:24]
        return base64.urlsafe_b64encode(f"{body}|{mac}".encode()).decode("ascii")

    def read_cursor(self, account: BotAccount, buf: str) -> int | None:
        try:
            text = base64.urlsafe_b64decode(buf.encode("ascii")).decode("utf-8")
            version, bot_id, epoch, seq, mac = text.split("|")
        except ValueError:
            return None
        body = f"{version}|{bot_id}|{epoch}|{seq}"
        good = hmac.new(self._cursor_key, body.encode(), hashlib.sha256).hexdigest()[:24]
        if not hmac.compare_digest(good, mac) or bot_id != account.bot_id or epoch != account.epoch:
            return None
        return int(seq)

    def updates_start(self, account: BotAccount, buf: str) -> int:
        """The seq after which to deliver. A cursor the client presents acknowledges it."""
        if buf:
            seq = self.read_cursor(account, buf)
            if seq is not None:
                account.acked = max(account.acked, seq)
                return seq
            self.violation(
                "getupdates: get_updates_buf was not issued by this service for this bot"
            )
        mode = self.settings.empty_cursor
        if mode == "all":
            return 0
        if mode == "new":
            return account.next_seq - 1
        return account.acked

    def pending(self, account: BotAccount, after: int) -> list[tuple[int, JSON]]:
        out = [(seq, payload) for seq, payload in account.log if seq > after]
        return out[: max(1, self.settings.max_batch)]

    @property
    def longpolling_timeout_ms(self) -> int:
        fixed = self.settings.longpolling_timeout_ms
        return fixed if fixed is not None else int(self.settings.updates_hold_s * 1000)

    # --- CDN -----------------------------------------------------------------------------

    # --- what the bot sends --------------------------------------------------------------

    def send(self, account: BotAccount, body: JSON) -> JSON:
        """``sendmessage``: shape check, then the budget, then the media are read back."""
        msg = body.get("msg")
        if not isinstance(msg, dict):
            return {"ret": -1, "errmsg": "sendmessage: msg must be an object"}
        to_user = msg.get("to_user_id")
        items = msg.get("item_list")
        problems = []
        if not isinstance(to_user, str) or not to_user:
            problems.append("msg.to_user_id must be a non-empty string")
        if not isinstance(items, list) or not items:
            problems.append("msg.item_list must be a non-empty list")
        else:
            problems.extend(item_problems(items))
        token = msg.get("context_token")
        if token is not None and not isinstance(token, str):
            problems.append("msg.context_token must be a string")
        if msg.get("message_type") not in (None, 2):
            problems.append(f"msg.message_type must be 2 (bot), got {msg.get('message_type')!r}")
        if problems:
            return {"ret": -1, "errmsg": "sendmessage: " + "; ".join(problems)}
        assert isinstance(to_user, str) and isinstance(items, list)
        now = self.now_ms()
        decision = self.budget.consume(token or None, account.bot_id, to_user, now)
        if not decision.ok:
            dropped = (
                decision.reason == "missing_token" and self.budget.rules.missing_token == "drop"
            )
            self.refused.append(
                RefusedSend(account.bot_id, to_user, token or None, decision.reason, dropped, now)
            )
            self.notify()
            if dropped:
                return self.send_ok()
            return {"ret": -2, "errmsg": ""}
        sent = SentMessage(
            account.bot_id,
            to_user,
            msg.get("client_id") if isinstance(msg.get("client_id"), str) else None,
            token,
            msg.get("message_state") if is_int(msg.get("message_state")) else None,
            tuple(self.cdn.read_item(item) for item in items),
            now,
        )
        self._sent.setdefault(to_user, deque(maxlen=MAX_SENT_PER_USER)).append(sent)
        self.notify()
        return self.send_ok()

    def send_ok(self) -> JSON:
        return {"ret": 0} if self.settings.send_ok_body == "ret0" else {}

    def sent_to(self, user: SimUser | str) -> list[SentMessage]:
        user_id = user.user_id if isinstance(user, SimUser) else user
        return list(self._sent.get(user_id, ()))

    # --- typing --------------------------------------------------------------------------

    def typing_ticket(self, account: BotAccount, user_id: object) -> JSON:
        if not isinstance(user_id, str) or user_id not in self.users:
            return {"ret": -1, "errmsg": f"getconfig: unknown ilink_user_id {user_id!r}"}
        ticket = account.typing_tickets.get(user_id)
        if ticket is None:
            ticket = base64.b64encode(os.urandom(24)).decode("ascii")
            account.typing_tickets[user_id] = ticket
        return {"ret": 0, "typing_ticket": ticket}

    def set_typing(self, account: BotAccount, body: JSON) -> JSON:
        user_id = body.get("ilink_user_id")
        status = body.get("status", 1)
        ticket = body.get("typing_ticket")
        if not isinstance(user_id, str) or account.typing_tickets.get(user_id) is None:
            return {
                "ret": -1,
                "errmsg": "sendtyping: no typing_ticket was issued for this ilink_user_id",
            }
        if not isinstance(ticket, str) or not hmac.compare_digest(
            ticket, account.typing_tickets[user_id]
        ):
            return {"ret": -1, "errmsg": "sendtyping: typing_ticket is not the one getconfig gave"}
        if status not in (1, 2):
            return {
                "ret": -1,
                "errmsg": f"sendtyping: status must be 1 (typing) or 2 (cancel), got {status!r}",
            }
        events = self._typing.setdefault(user_id, deque(maxlen=MAX_EVENTS))
        events.append(TypingEvent(user_id, int(status), self.now_ms()))
        self.notify()
        return {"ret": 0}

    def typing_events(self, user: SimUser | str) -> list[TypingEvent]:
        user_id = user.user_id if isinstance(user, SimUser) else user
        return list(self._typing.get(user_id, ()))

    def is_typing(self, user: SimUser | str) -> bool:
        events = self.typing_events(user)
        return bool(events) and events[-1].status == 1

    def all_sent(self) -> Iterable[SentMessage]:
        for messages in self._sent.values():
            yield from messages
