"""The errors MetaPuppet raises. All derive from :class:`MetaPuppetError`."""

from __future__ import annotations

from typing import Any


class MetaPuppetError(Exception):
    """Base class of every error MetaPuppet raises on purpose."""


class ConfigError(MetaPuppetError):
    """The configuration is missing something or holds a bad value."""


class ProtocolError(MetaPuppetError):
    """A peer sent something that does not follow the wire protocol."""


class AuthenticationError(MetaPuppetError, ConnectionError):
    """A client could not authenticate: the server refused it, or the server could not
    prove that it holds the token (then the client sends it nothing more)."""


class PuppetNotConnected(MetaPuppetError):
    """No Node puppet client (for the requested bot) is connected."""


class PuppetDisconnected(PuppetNotConnected):
    """The puppet disconnected while a call to it was pending."""


class ClusterUnavailable(MetaPuppetError):
    """Cluster mode: the shared Redis cannot be reached, so this call cannot be made now.

    Events meanwhile stay in the Node clients' outboxes; everything resumes when Redis is
    back. The message names the Redis URL (never its password).
    """


class AmbiguousBot(MetaPuppetError, ValueError):
    """Several bots are connected and the call did not say which one to use."""


class NotSupported(MetaPuppetError):
    """The bot's channel cannot do this (an iLink bot has no rooms, for example).

    Raised at once, before anything is sent: ``channel`` names the puppet's channel and
    ``capability`` what it lacks (see ``server.capabilities(bot)`` and docs/channels.md).
    """

    def __init__(self, channel: str, capability: str, what: str | None = None) -> None:
        self.channel = channel
        self.capability = capability
        doing = f"{what}: " if what else ""
        super().__init__(
            f"{doing}the {channel!r} channel does not support {capability.replace('_', ' ')} "
            "(see docs/channels.md for what each channel can do)"
        )


class SendWindowClosed(MetaPuppetError):
    """The channel's send budget does not allow this message now (nothing was sent).

    On iLink a bot may write only after the user wrote, a limited number of messages per
    user message, within a window after it. ``closed_at`` is when the window closed (epoch
    seconds; None when it never opened) and ``reopens`` says what opens it again.
    """

    def __init__(
        self,
        bot: str,
        contact: str,
        reason: str,
        *,
        closed_at: float | None = None,
        reopens: str = "a new message from the user opens it again",
    ) -> None:
        self.bot = bot
        self.contact = contact
        self.reason = reason
        self.closed_at = closed_at
        self.reopens = reopens
        super().__init__(f"cannot send to {contact!r} on bot {bot!r}: {reason}; {reopens}")


class SnippetError(MetaPuppetError):
    """A snippet failed on the Node side.

    ``kind`` is ``compile``, ``runtime``, ``serialize`` or ``bad_request``; ``name``,
    ``message`` and ``stack`` are the Node-side error's own; ``code`` is the error's own
    code when it has one (the iLink puppet's ``-2``, ``-14``, ``"http_500"`` ...).
    """

    def __init__(
        self,
        kind: str,
        name: str,
        message: str,
        stack: str | None = None,
        *,
        bot: str | None = None,
        code: int | str | None = None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.message = message
        self.stack = stack
        self.bot = bot
        self.code = code
        where = f" on bot {bot!r}" if bot else ""
        super().__init__(f"{kind} error{where}: {name}: {message}")

    @classmethod
    def from_wire(cls, error: Any, *, bot: str | None = None) -> SnippetError:
        if not isinstance(error, dict):
            return cls("runtime", "Error", f"malformed error from puppet: {error!r}", bot=bot)
        kind = str(error.get("kind") or "runtime")
        name = str(error.get("name") or "Error")
        message = str(error.get("message") or "")
        stack = error.get("stack")
        stack = str(stack) if stack is not None else None
        code = error.get("code")
        if isinstance(code, bool) or not isinstance(code, int | str):
            code = None
        if kind == "timeout":
            return SnippetTimeout(message, bot=bot)
        error_class = SnippetCompileError if kind == "compile" else cls
        return error_class(kind, name, message, stack, bot=bot, code=code)


class SnippetCompileError(SnippetError):
    """The snippet did not compile (esbuild rejected it)."""


class SnippetTimeout(SnippetError, TimeoutError):
    """The snippet did not finish within its timeout."""

    def __init__(self, message: str, *, bot: str | None = None) -> None:
        super().__init__("timeout", "SnippetTimeout", message, None, bot=bot)


__all__ = [
    "AmbiguousBot",
    "AuthenticationError",
    "ClusterUnavailable",
    "ConfigError",
    "MetaPuppetError",
    "NotSupported",
    "ProtocolError",
    "PuppetDisconnected",
    "PuppetNotConnected",
    "SendWindowClosed",
    "SnippetCompileError",
    "SnippetError",
    "SnippetTimeout",
]
