"""The send budget of the official bot API, as a pure model with time passed in.

What the real service enforces (ILINK.md, "Sending"): the user writes first; each user
message brings a fresh ``context_token`` and an allowance of ``per_message`` bot messages
(10); bot messages are accepted only within ``window_s`` (24 h) of that user message's
``create_time_ms``. A refused send answers ``ret = -2`` with an empty ``errmsg``.

``scope="token"`` (the default, after the field reports in Tencent/openclaw-weixin #81)
gives every user message its own allowance and window. ``scope="user"`` follows the quoted
rule literally: one allowance per user, reset by that user's latest message, usable with any
token the user was given. Nothing here reads a clock, so the model is tested directly.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["BudgetRules", "Decision", "SendBudget"]

Scope = Literal["token", "user"]
MissingTokenPolicy = Literal["refuse", "drop"]
MAX_TRACKED_TOKENS = 100_000


@dataclass
class BudgetRules:
    """``missing_token``: ``refuse`` answers ``ret = -2``; ``drop`` answers success and delivers
    nothing (what Tencent/openclaw-weixin PR #247 reports), so a test sees the silent loss."""

    per_message: int = 10
    window_s: float = 24 * 3600.0
    scope: Scope = "token"
    missing_token: MissingTokenPolicy = "refuse"

    def __post_init__(self) -> None:
        if self.per_message < 0:
            raise ValueError(f"per_message must be >= 0, got {self.per_message}")
        if self.window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {self.window_s}")
        if self.scope not in ("token", "user"):
            raise ValueError(f"scope must be 'token' or 'user', got {self.scope!r}")
        if self.missing_token not in ("refuse", "drop"):
            raise ValueError(
                f"missing_token must be 'refuse' or 'drop', got {self.missing_token!r}"
            )


@dataclass(frozen=True)
class Decision:
    """``reason``: ok, missing_token, unknown_token, wrong_user, window_closed or exhausted."""

    ok: bool
    reason: str
    remaining: int = 0
    closes_at_ms: int | None = None


@dataclass
class _Allowance:
    bot_id: str
    user_id: str
    issued_ms: int
    sent: int = 0


@dataclass
class SendBudget:
    rules: BudgetRules = field(default_factory=BudgetRules)
    _tokens: OrderedDict[str, _Allowance] = field(default_factory=OrderedDict)
    _latest: dict[tuple[str, str], str] = field(default_factory=dict)

    def issue(self, token: str, bot_id: str, user_id: str, created_ms: int) -> None:
        """A user message arrived carrying ``token``: a fresh allowance starts at ``created_ms``."""
        self._tokens[token] = _Allowance(bot_id, user_id, created_ms)
        key = (bot_id, user_id)
        latest = self._latest.get(key)
        if latest is None or self._tokens[latest].issued_ms <= created_ms:
            self._latest[key] = token
        while len(self._tokens) > MAX_TRACKED_TOKENS:
            old, gone = self._tokens.popitem(last=False)
            if self._latest.get((gone.bot_id, gone.user_id)) == old:
                del self._latest[(gone.bot_id, gone.user_id)]

    def check(self, token: str | None, bot_id: str, user_id: str, now_ms: int) -> Decision:
        if not token:
            return Decision(False, "missing_token")
        allowance = self._tokens.get(token)
        if allowance is None or allowance.bot_id != bot_id:
            return Decision(False, "unknown_token")
        if allowance.user_id != user_id:
            return Decision(False, "wrong_user")
        if self.rules.scope == "user":
            allowance = self._tokens[self._latest[(bot_id, user_id)]]
        closes_at = allowance.issued_ms + int(self.rules.window_s * 1000)
        if now_ms >= closes_at:
            return Decision(False, "window_closed", 0, closes_at)
        left = self.rules.per_message - allowance.sent
        if left <= 0:
            return Decision(False, "exhausted", 0, closes_at)
        return Decision(True, "ok", left, closes_at)

    def consume(self, token: str | None, bot_id: str, user_id: str, now_ms: int) -> Decision:
        """Check, and count the send when it is allowed; ``remaining`` is what is left after it."""
        decision = self.check(token, bot_id, user_id, now_ms)
        if not decision.ok or token is None:
            return decision
        allowance = self._tokens[token]
        if self.rules.scope == "user":
            allowance = self._tokens[self._latest[(bot_id, user_id)]]
        allowance.sent += 1
        return Decision(True, "ok", decision.remaining - 1, decision.closes_at_ms)

    def owner(self, token: str) -> tuple[str, str] | None:
        """(bot_id, user_id) a token was issued for, if it is known."""
        allowance = self._tokens.get(token)
        return None if allowance is None else (allowance.bot_id, allowance.user_id)
