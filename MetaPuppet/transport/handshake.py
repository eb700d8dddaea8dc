"""The server's side of the mutual handshake (the wire format is in :mod:`..protocol`).

At connect (:meth:`Handshakes.begin`) the client's ``key`` picks the token it holds among
those that open its role; the server answers with its own nonce and its proof
(:meth:`Handshakes.challenge`); the client's ``authenticate`` proof closes it
(:meth:`Handshakes.finish`). A client nonce is accepted once: a recorded connect cannot be
played again (and could not answer the fresh challenge anyway).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from .. import protocol
from ..errors import ProtocolError
from ..protocol import Auth, Handshake
from .auth import Authenticator, Grant

__all__ = ["MAX_REMEMBERED_NONCES", "Handshakes", "Pending"]

#: client nonces remembered against replays (only those that passed the key check, so
#: only token holders fill it)
MAX_REMEMBERED_NONCES: Final = 20_000


@dataclass
class Pending:
    """A connection between its connect and its ``authenticate``."""

    sid: str
    auth: Auth
    token: str
    grant: Grant
    handshake: Handshake
    remote: str | None
    started: float


class Handshakes:
    """Pending handshakes by Socket.IO sid."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator
        self.pending: dict[str, Pending] = {}
        self._nonces: OrderedDict[bytes, None] = OrderedDict()

    def begin(self, sid: str, auth: Auth, remote: str | None) -> Pending | None:
        """Start the handshake of a connect; None when the key matches no token that
        opens the role. Raises :class:`ProtocolError` for a nonce seen before."""
        found = self.authenticator.find(auth.role, auth.bot, auth.nonce, auth.key)
        if found is None:
            return None
        seen = bytes.fromhex(auth.nonce)[:16]
        if seen in self._nonces:
            raise ProtocolError("this connect was seen before (a replayed nonce); refused")
        self._nonces[seen] = None
        while len(self._nonces) > MAX_REMEMBERED_NONCES:
            self._nonces.popitem(last=False)
        token, grant = found
        handshake = Handshake(
            role=auth.role,
            bot=auth.bot,
            client_nonce=auth.nonce,
            server_nonce=protocol.new_nonce(),
            replace=auth.replace,
        )
        pending = Pending(sid, auth, token, grant, handshake, remote, time.monotonic())
        self.pending[sid] = pending
        return pending

    @staticmethod
    def challenge(pending: Pending) -> dict[str, Any]:
        """The ``challenge`` message: the server's nonce and its proof."""
        return {
            "nonce": pending.handshake.server_nonce,
            "proof": protocol.server_proof(pending.token, pending.handshake),
        }

    def finish(self, sid: str, data: Any) -> Pending:
        """Check an ``authenticate`` message; the pending handshake it completes.

        Raises :class:`ProtocolError` when there is none for ``sid`` or the proof is wrong
        (the handshake is over either way: a client gets one try per connection).
        """
        pending = self.pending.pop(sid, None)
        if pending is None:
            raise ProtocolError("no handshake in progress on this connection")
        proof = protocol.parse_proof(data)
        expected = protocol.client_proof(pending.token, pending.handshake)
        if not protocol.proof_matches(expected, proof):
            raise ProtocolError("invalid proof: this client does not hold the token")
        return pending

    def drop(self, sid: str) -> None:
        self.pending.pop(sid, None)
