"""Connect a Python program to a MetaPuppet server, with the mutual handshake done for you.

A web client (a dashboard of your own, a bridge to another platform) holds a web token;
the server and the client each prove they hold it (see :mod:`MetaPuppet.protocol`) and
the token itself never travels::

    from MetaPuppet.web_client import connect

    sio = await connect("http://127.0.0.1:8080", WEB_TOKEN)   # a python-socketio AsyncClient
    sio.on("events", lambda batch: print(batch))
    await sio.call("subscribe", {"events": ["message"]})

:func:`connect_sync` does the same with the threaded ``socketio.Client``. Both raise
:class:`~MetaPuppet.errors.AuthenticationError` when the server refuses the client, and
when it cannot prove it holds the token (another program listening on that address): the
client then disconnects without sending anything else. Reconnections (python-socketio's
own) run the handshake again, with fresh nonces.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import socketio

from . import protocol
from .errors import AuthenticationError, ProtocolError
from .protocol import Capabilities, Handshake, Role

__all__ = ["Handshaker", "connect", "connect_sync"]

log = logging.getLogger("MetaPuppet.web_client")


class Handshaker:
    """One client's side of the handshake, for any Socket.IO client: :meth:`auth` makes
    each connect's payload (a fresh nonce each time); :meth:`answer` checks a
    ``challenge`` and returns the ``authenticate`` message, or raises."""

    def __init__(
        self,
        url: str,
        token: str,
        role: Role = protocol.ROLE_WEB,
        *,
        bot: str | None = None,
        capabilities: Capabilities | None = None,
        replace: bool = False,
    ) -> None:
        if not isinstance(token, str) or not token:
            raise ValueError("a token is needed (a web token, or the server's token)")
        self.url = url
        self._token = token
        self.role: Role = role
        self.bot = bot
        self.capabilities = capabilities
        self.replace = replace
        self._nonce = ""

    def auth(self) -> dict[str, Any]:
        payload = protocol.auth_payload(
            self._token,
            self.role,
            bot=self.bot,
            capabilities=self.capabilities,
            replace=self.replace,
        )
        self._nonce = payload["nonce"]
        return payload

    def answer(self, data: Any) -> dict[str, Any]:
        try:
            challenge = protocol.parse_challenge(data)
        except ProtocolError as exc:
            message = f"the server at {self.url} sent a bad challenge: {exc}"
            raise AuthenticationError(message) from None
        handshake = Handshake(self.role, self.bot, self._nonce, challenge.nonce, self.replace)
        expected = protocol.server_proof(self._token, handshake)
        if not self._nonce or not protocol.proof_matches(expected, challenge.proof):
            message = (
                f"the server at {self.url} could not prove it holds the token: refusing to "
                "talk to it (is another program listening on that address?)"
            )
            log.error("%s", message)
            raise AuthenticationError(message)
        return {"proof": protocol.client_proof(self._token, handshake)}

    def check(self, ack: Any) -> dict[str, Any]:
        """The server's answer to ``authenticate``: returned when ok, raised otherwise."""
        if isinstance(ack, dict) and ack.get("ok") is True:
            return ack
        error = ack.get("error") if isinstance(ack, dict) else None
        reason = error.get("message") if isinstance(error, dict) else None
        shown = reason if isinstance(reason, str) else repr(ack)[:200]
        raise AuthenticationError(f"the server at {self.url} refused this client: {shown}")


def _refusal(data: Any) -> str:
    """The reason in a ``connect_error`` (python-socketio hands the server's data)."""
    if isinstance(data, dict):
        data = data.get("message", data)
    return str(data)[:300]


def _refused(url: str, exc: Exception, reasons: list[str]) -> AuthenticationError:
    reason = reasons[-1] if reasons else (exc.args[0] if exc.args else exc)
    return AuthenticationError(f"the server at {url} refused the connection: {reason}")


async def connect(
    url: str,
    token: str,
    *,
    role: Role = protocol.ROLE_WEB,
    bot: str | None = None,
    client: socketio.AsyncClient | None = None,
    capabilities: Capabilities | None = None,
    replace: bool = False,
    transports: Iterable[str] | None = ("websocket",),
    wait_timeout: float = 10.0,
    on_authenticated: Callable[[dict[str, Any]], Any] | None = None,
    **options: Any,
) -> socketio.AsyncClient:
    """Connect and authenticate; returns the client (``client``, or a new one).

    ``role="puppet"`` with ``bot`` connects as a puppet (tests, tools); ``transports=None``
    lets python-socketio start with long-polling and upgrade; other ``options`` go to
    ``AsyncClient.connect`` (``headers``, ``namespaces`` ...). ``on_authenticated(answer)``
    (sync or async) runs after every successful handshake, reconnections included: the
    place to subscribe or announce the client (python-socketio's ``connect`` event comes
    before the handshake, when the server still refuses everything else).
    """
    sio = client if client is not None else socketio.AsyncClient()
    shaker = Handshaker(url, token, role, bot=bot, capabilities=capabilities, replace=replace)
    outcome: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    def settle(result: dict[str, Any] | None, error: BaseException | None) -> None:
        if outcome.done():
            return
        if error is not None:
            outcome.set_exception(error)
        else:
            assert result is not None
            outcome.set_result(result)

    async def on_challenge(data: Any = None) -> None:
        try:
            message = shaker.answer(data)
            ack = await sio.call(protocol.EV_AUTHENTICATE, message, timeout=wait_timeout)
            answer = shaker.check(ack)
            settle(answer, None)
            if on_authenticated is not None:
                result = on_authenticated(answer)
                if inspect.isawaitable(result):
                    await result
        except (AuthenticationError, socketio.exceptions.TimeoutError) as exc:
            if isinstance(exc, socketio.exceptions.TimeoutError):
                exc = AuthenticationError(f"the server at {url} did not answer authenticate")
            settle(None, exc)
            log.warning("%s", exc)
            await sio.disconnect()

    reasons: list[str] = []
    sio.on(protocol.EV_CHALLENGE, on_challenge)
    sio.on("connect_error", lambda data=None: reasons.append(_refusal(data)))
    try:
        await sio.connect(
            url,
            auth=shaker.auth,
            transports=None if transports is None else list(transports),
            wait_timeout=wait_timeout,
            **options,
        )
    except socketio.exceptions.ConnectionError as exc:
        raise _refused(url, exc, reasons) from None
    try:
        await asyncio.wait_for(asyncio.shield(outcome), wait_timeout)
    except TimeoutError:
        await sio.disconnect()
        raise AuthenticationError(
            f"the server at {url} sent no challenge within {wait_timeout:.0f} s "
            "(is it a MetaPuppet server of the same version?)"
        ) from None
    except AuthenticationError:
        await sio.disconnect()
        raise
    return sio


def connect_sync(
    url: str,
    token: str,
    *,
    role: Role = protocol.ROLE_WEB,
    bot: str | None = None,
    client: socketio.Client | None = None,
    capabilities: Capabilities | None = None,
    replace: bool = False,
    transports: Iterable[str] | None = ("websocket",),
    wait_timeout: float = 10.0,
    on_authenticated: Callable[[dict[str, Any]], Any] | None = None,
    **options: Any,
) -> socketio.Client:
    """:func:`connect` for plain threads: a threaded ``socketio.Client``, authenticated;
    ``on_authenticated(answer)`` runs on the client's thread after every handshake."""
    sio = client if client is not None else socketio.Client()
    shaker = Handshaker(url, token, role, bot=bot, capabilities=capabilities, replace=replace)
    done = threading.Event()
    failure: list[BaseException] = []

    def on_challenge(data: Any = None) -> None:
        try:
            message = shaker.answer(data)
            ack = sio.call(protocol.EV_AUTHENTICATE, message, timeout=wait_timeout)
            answer = shaker.check(ack)
            done.set()
            if on_authenticated is not None:
                on_authenticated(answer)
        except (AuthenticationError, socketio.exceptions.TimeoutError) as exc:
            if isinstance(exc, socketio.exceptions.TimeoutError):
                exc = AuthenticationError(f"the server at {url} did not answer authenticate")
            if not done.is_set():
                failure.append(exc)
            log.warning("%s", exc)
            sio.disconnect()
        done.set()

    reasons: list[str] = []
    sio.on(protocol.EV_CHALLENGE, on_challenge)
    sio.on("connect_error", lambda data=None: reasons.append(_refusal(data)))
    try:
        sio.connect(
            url,
            auth=shaker.auth,
            transports=None if transports is None else list(transports),
            wait_timeout=wait_timeout,
            **options,
        )
    except socketio.exceptions.ConnectionError as exc:
        raise _refused(url, exc, reasons) from None
    if not done.wait(wait_timeout):
        sio.disconnect()
        raise AuthenticationError(
            f"the server at {url} sent no challenge within {wait_timeout:.0f} s"
        )
    if failure:
        sio.disconnect()
        raise failure[0]
    return sio
