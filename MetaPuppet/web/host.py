"""WebHost: the small interface the hub, the REST API and the dashboard see of the server.

Authenticate tokens, list bots and clients, what each bot's channel can do and may send,
subscribe to bot events, act on a bot (run a snippet, send something), and run user
handlers. The server implements it by delegation;
nothing in ``web/`` knows the server class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from ..config import Config
from ..protocol import BotEvent, Capabilities
from ..transport.auth import Authenticator

if TYPE_CHECKING:
    from ..ops import Ops

__all__ = ["WebHost"]


class WebHost(Protocol):
    config: Config
    authenticator: Authenticator
    #: dialogs in progress for the dashboard: a callable returning a list, or None
    dialog_provider: Callable[[], Any] | None
    #: the scheduler, proactive messages, plugins and metrics
    ops: Ops

    @property
    def bots(self) -> list[str]: ...

    def list_clients(self, only_online: bool = True) -> list[dict[str, Any]]: ...

    def capabilities(self, bot: str | None = None) -> Capabilities: ...

    def send_budget(self, bot: str | None, contact: Any) -> dict[str, Any] | None: ...

    def add_event_listener(
        self, listener: Callable[[BotEvent], Any], *, self_messages: bool = True
    ) -> Callable[[], None]: ...

    async def exec_snippet(
        self, code: str, args: Any = None, *, bot: str | None = None, timeout: float = 30.0
    ) -> Any: ...

    async def say(
        self,
        conversation_id: Any,
        something: Any,
        *,
        bot: str | None = None,
        room: bool | None = None,
        mentions: Iterable[Any] = (),
    ) -> str | None: ...

    async def call_handler(self, handler: Callable[..., Any], *args: Any) -> Any: ...

    async def send_later(
        self,
        contact: Any,
        message: Any,
        *,
        expires: Any = None,
        bot: str | None = None,
        room: bool | None = None,
    ) -> Any: ...

    async def async_send_message_to_client(
        self, message: Any, sid: str | None = None, room_name: str | None = None
    ) -> None: ...
