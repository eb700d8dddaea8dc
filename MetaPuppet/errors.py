"""The errors MetaPuppet raises. All derive from :class:`MetaPuppetError`."""

from __future__ import annotations

from typing import Any


class MetaPuppetError(Exception):
    """Base class of every error MetaPuppet raises on purpose."""


class ConfigError(MetaPuppetError):
    """The configuration is missing something or holds a bad value."""


class ProtocolError(MetaPuppetError):
    """A peer sent something that does not follow the wire protocol."""


class PuppetNotConnected(MetaPuppetError):
    """No Node puppet client (for the requested bot) is connected."""


class PuppetDisconnected(PuppetNotConnected):
    """The puppet disconnected while a call to it was pending."""


class AmbiguousBot(MetaPuppetError, ValueError):
    """Several bots are connected and the call did not say which one to use."""


class SnippetError(MetaPuppetError):
    """A snippet failed on the Node side.

    ``kind`` is ``compile``, ``runtime``, ``serialize`` or ``bad_request``; ``name``,
    ``message`` and ``stack`` are the Node-side error's own.
    """

    def __init__(
        self,
        kind: str,
        name: str,
        message: str,
        stack: str | None = None,
        *,
        bot: str | None = None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.message = message
        self.stack = stack
        self.bot = bot
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
        if kind == "timeout":
            return SnippetTimeout(message, bot=bot)
        error_class = SnippetCompileError if kind == "compile" else cls
        return error_class(kind, name, message, stack, bot=bot)


class SnippetCompileError(SnippetError):
    """The snippet did not compile (esbuild rejected it)."""


class SnippetTimeout(SnippetError, TimeoutError):
    """The snippet did not finish within its timeout."""

    def __init__(self, message: str, *, bot: str | None = None) -> None:
        super().__init__("timeout", "SnippetTimeout", message, None, bot=bot)


__all__ = [
    "AmbiguousBot",
    "ConfigError",
    "MetaPuppetError",
    "ProtocolError",
    "PuppetDisconnected",
    "PuppetNotConnected",
    "SnippetCompileError",
    "SnippetError",
    "SnippetTimeout",
]
