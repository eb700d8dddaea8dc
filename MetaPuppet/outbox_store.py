"""The durable queue of proactive messages: one SQLite table in the data directory.

Every message the bot sends on its own initiative (``server.send_later``, a scheduled job)
is a row here before anything is sent, and each change of its state is committed before
the server goes on, so a crash (``kill -9``) loses none: the next start finds it queued, or
in its final state. The file is 0600 in a 0700 folder (it holds message text). Without a
data directory the table lives in memory.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from ._files import private_dir

__all__ = [
    "DELIVERED",
    "EXPIRED",
    "FAILED",
    "FINAL_STATES",
    "QUEUED",
    "SENDING",
    "STATES",
    "OutboxRecord",
    "OutboxStore",
]

QUEUED: Final = "queued"
#: handed to the channel, no answer yet (a crash here ends as failed "interrupted")
SENDING: Final = "sending"
DELIVERED: Final = "delivered"
EXPIRED: Final = "expired"
FAILED: Final = "failed"
STATES: Final = (QUEUED, SENDING, DELIVERED, EXPIRED, FAILED)
FINAL_STATES: Final = frozenset({DELIVERED, EXPIRED, FAILED})

_COLUMNS: Final = (
    "id",
    "bot",
    "contact",
    "room",
    "state",
    "created_at",
    "updated_at",
    "expires_at",
    "attempts",
    "reason",
    "code",
    "message_id",
    "source",
    "preview",
    "message",
)


@dataclass
class OutboxRecord:
    """One proactive message and where it stands (``server.outbox_status(id)``).

    ``state`` is ``queued`` (waiting for the channel to allow it), ``sending``, or one of
    the final states ``delivered`` (``message_id`` set), ``expired`` (``reason`` says why)
    and ``failed`` (``code`` is the channel's error code, ``reason`` its message).
    """

    id: str
    bot: str
    contact: str
    room: bool | None
    state: str
    created_at: float
    updated_at: float
    expires_at: float | None
    attempts: int = 0
    reason: str | None = None
    code: str | None = None
    message_id: str | None = None
    source: str = "python"
    preview: str = ""
    #: the message as the ``say`` snippet takes it (``sayable_to_wire``)
    message: dict[str, Any] | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def to_dict(self, *, with_message: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not with_message:
            data.pop("message")
        return data


class OutboxStore:
    """The table of proactive messages; ``path`` None keeps it in memory."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        if path is None:
            self.db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        else:
            private_dir(path.parent)
            fresh = not path.exists()
            self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            if fresh:
                os.chmod(path, 0o600)
            self.db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before send_later returns (process and power loss)
            self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, bot TEXT NOT NULL, "
            "contact TEXT NOT NULL, room INTEGER, state TEXT NOT NULL, created_at REAL NOT NULL, "
            "updated_at REAL NOT NULL, expires_at REAL, attempts INTEGER NOT NULL DEFAULT 0, "
            "reason TEXT, code TEXT, message_id TEXT, source TEXT, preview TEXT, message TEXT)"
        )
        self.db.execute("CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, bot, contact)")
        self.db.execute("CREATE INDEX IF NOT EXISTS outbox_expiry ON outbox (state, expires_at)")
        self.db.execute("CREATE INDEX IF NOT EXISTS outbox_age ON outbox (updated_at)")

    def close(self) -> None:
        self.db.close()

    def insert(self, record: OutboxRecord) -> None:
        values = _row(record)
        marks = ", ".join("?" for _ in _COLUMNS)
        self.db.execute(f"INSERT INTO outbox ({', '.join(_COLUMNS)}) VALUES ({marks})", values)

    def update(self, record: OutboxRecord) -> None:
        values = _row(record)
        sets = ", ".join(f"{c} = ?" for c in _COLUMNS[1:])
        self.db.execute(f"UPDATE outbox SET {sets} WHERE id = ?", (*values[1:], record.id))

    def get(self, record_id: str) -> OutboxRecord | None:
        rows = self._select("WHERE id = ?", (record_id,), 1)
        return rows[0] if rows else None

    def queued(self, bot: str, contact: str, limit: int = 100) -> list[OutboxRecord]:
        """The queued messages of one chat, oldest first."""
        return self._select(
            "WHERE state = ? AND bot = ? AND contact = ? ORDER BY created_at, rowid",
            (QUEUED, bot, contact),
            limit,
        )

    def waiting_chats(self, limit: int = 500) -> list[tuple[str, str]]:
        """(bot, contact) pairs that have queued messages, the longest waiting first."""
        rows = self.db.execute(
            "SELECT bot, contact, MIN(created_at) AS first FROM outbox WHERE state = ? "
            "GROUP BY bot, contact ORDER BY first LIMIT ?",
            (QUEUED, limit),
        ).fetchall()
        return [(str(bot), str(contact)) for bot, contact, _ in rows]

    def due_to_expire(self, now: float, limit: int = 500) -> list[OutboxRecord]:
        return self._select(
            "WHERE state = ? AND expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at",
            (QUEUED, now),
            limit,
        )

    def next_expiry(self) -> float | None:
        row = self.db.execute(
            "SELECT MIN(expires_at) FROM outbox WHERE state = ? AND expires_at IS NOT NULL",
            (QUEUED,),
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def in_state(self, state: str, limit: int = 10_000) -> list[OutboxRecord]:
        return self._select("WHERE state = ? ORDER BY created_at", (state,), limit)

    def search(
        self,
        *,
        bot: str | None = None,
        contact: str | None = None,
        state: str | None = None,
        limit: int = 100,
    ) -> list[OutboxRecord]:
        """The newest records first, filtered by any of bot, contact and state."""
        where, params = [], []
        for column, value in (("bot", bot), ("contact", contact), ("state", state)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        return self._select(f"{clause} ORDER BY created_at DESC, rowid DESC", tuple(params), limit)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for state, count in self.db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state"):
            counts[str(state)] = int(count)
        return counts

    def count_queued(self, bot: str | None = None, contact: str | None = None) -> int:
        if bot is None:
            row = self.db.execute("SELECT COUNT(*) FROM outbox WHERE state = ?", (QUEUED,))
        else:
            row = self.db.execute(
                "SELECT COUNT(*) FROM outbox WHERE state = ? AND bot = ? AND contact = ?",
                (QUEUED, bot, contact),
            )
        return int(row.fetchone()[0])

    def prune(self, keep: int) -> int:
        """Forget the oldest final records beyond ``keep``; returns how many went."""
        cursor = self.db.execute(
            "DELETE FROM outbox WHERE state IN (?, ?, ?) AND id NOT IN (SELECT id FROM outbox "
            "WHERE state IN (?, ?, ?) ORDER BY updated_at DESC LIMIT ?)",
            (*sorted(FINAL_STATES), *sorted(FINAL_STATES), keep),
        )
        return int(cursor.rowcount)

    def _select(self, clause: str, params: tuple[Any, ...], limit: int) -> list[OutboxRecord]:
        rows = self.db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM outbox {clause} LIMIT ?", (*params, limit)
        ).fetchall()
        return [_record(row) for row in rows]


def _row(record: OutboxRecord) -> tuple[Any, ...]:
    data = asdict(record)
    data["room"] = None if record.room is None else int(record.room)
    data["message"] = None if record.message is None else json.dumps(record.message)
    return tuple(data[c] for c in _COLUMNS)


def _record(row: tuple[Any, ...]) -> OutboxRecord:
    data = dict(zip(_COLUMNS, row, strict=True))
    data["room"] = None if data["room"] is None else bool(data["room"])
    data["message"] = None if data["message"] is None else json.loads(data["message"])
    return OutboxRecord(**data)
