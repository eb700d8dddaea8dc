"""Handled events: which ids the robot has handled, and what each acknowledgement carried.

The pipeline asks :meth:`SeenStore.lookup` before it hands an event to the robot and calls
:meth:`SeenStore.record` once the event is handled, *before* it acknowledges it: a copy
the Node client sends again (its acknowledgement was lost in a crash of either side) is
then answered from the record, with the same typed actions, instead of running again.

Two stores, one small interface, so that another backend (Redis, for several server
processes) can be added beside them:

- :class:`MemorySeenStore`: this process only (tests, benchmarks, no ``data_dir``). It keeps
  64-bit hashes of the last ``max_ids`` ids, not the ids (a few MB instead of a dozen for
  50,000), and the actions of the last ``max_actions`` acknowledgements that had some.
- :class:`FileSeenStore`: the same, plus a journal in the data directory
  (``seen-event-ids.jsonl``, one line per handled event, group-committed: the lines of every
  event handled in one turn of the loop go out in one write, and each acknowledgement waits
  for its line). The journal rotates at ``max_ids`` lines into ``seen-event-ids.1.jsonl``,
  so the last ``max_ids`` ids are always on disk, and a graceful stop folds both into
  ``seen-event-ids.json``. A write survives a SIGKILL of the server (the page cache outlives
  the process; there is no fsync, as for the Node client's outbox).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any, Final

import orjson

from ._files import SaveFailure, private_dir, write_json

__all__ = [
    "MAX_ACTIONS",
    "MAX_IDS",
    "Actions",
    "FileSeenStore",
    "MemorySeenStore",
    "SeenStore",
]

log = logging.getLogger("MetaPuppet.server")

#: ids remembered (the guarantee: a copy of one of the last 50,000 events is recognised)
MAX_IDS: Final = 50_000
#: acknowledgements whose actions are kept, to answer a re-sent copy the same way
MAX_ACTIONS: Final = 4_096

Actions = list[dict[str, Any]]


class SeenStore(ABC):
    """Which events were handled, and the actions each acknowledgement carried."""

    def open(self) -> None:  # noqa: B027 - optional hook
        """Read what a previous process left (at start)."""

    @abstractmethod
    async def lookup(self, event_id: str) -> Actions | None:
        """The actions recorded for a handled event (``[]`` when none or forgotten), or
        None when the event was not handled."""

    @abstractmethod
    async def record(self, event_id: str, actions: Actions | None) -> None:
        """Note that ``event_id`` was handled; durable (as far as the store goes) once this
        returns, so the acknowledgement may go."""

    def close(self) -> SaveFailure | None:
        """Save what must survive a restart; what could not be saved, or None."""
        return None


class MemorySeenStore(SeenStore):
    """Handled events in this process: hashes of the last ``max_ids`` ids, and the actions
    of the last ``max_actions`` acknowledgements that carried some."""

    def __init__(self, max_ids: int = MAX_IDS, max_actions: int = MAX_ACTIONS) -> None:
        self.max_ids = max_ids
        self.max_actions = max_actions
        self._ids: set[int] = set()
        self._order: deque[int] = deque()
        self._actions: OrderedDict[int, Actions] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def known(self, event_id: str) -> bool:
        return hash(event_id) in self._ids

    async def lookup(self, event_id: str) -> Actions | None:
        key = hash(event_id)
        if key not in self._ids:
            return None
        return self._actions.get(key, [])

    async def record(self, event_id: str, actions: Actions | None) -> None:
        self.remember(event_id, actions)

    def remember(self, event_id: str, actions: Actions | None) -> None:
        key = hash(event_id)
        if key not in self._ids:
            self._ids.add(key)
            self._order.append(key)
            if len(self._order) > self.max_ids:
                old = self._order.popleft()
                self._ids.discard(old)
                self._actions.pop(old, None)
        if actions:
            self._actions[key] = actions
            if len(self._actions) > self.max_actions:
                self._actions.popitem(last=False)


class FileSeenStore(MemorySeenStore):
    """:class:`MemorySeenStore` plus a group-committed journal in ``folder``."""

    def __init__(
        self, folder: Path, max_ids: int = MAX_IDS, max_actions: int = MAX_ACTIONS
    ) -> None:
        super().__init__(max_ids, max_actions)
        self.folder = folder
        self.snapshot_path = folder / "seen-event-ids.json"
        self.journal_path = folder / "seen-event-ids.jsonl"
        self.previous_path = folder / "seen-event-ids.1.jsonl"
        self._fd: int | None = None
        self._lines = 0
        self._buffer: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        self._failing: str | None = None

    # ------------------------------------------------------------------ start

    def open(self) -> None:
        loaded: list[tuple[str, Actions | None]] = []
        if self.snapshot_path.is_file():
            loaded += _read_snapshot(self.snapshot_path)
        for path in (self.previous_path, self.journal_path):
            if path.is_file():
                loaded += _read_journal(path)
        for event_id, actions in loaded[-self.max_ids :]:
            self.remember(event_id, actions)
        if loaded:
            log.info("remembered %d handled event ids from %s", len(self), self.folder)
        if self.journal_path.is_file():
            self._lines = sum(1 for _ in _read_journal(self.journal_path))

    # ------------------------------------------------------------------ recording

    async def record(self, event_id: str, actions: Actions | None) -> None:
        self.remember(event_id, actions)
        record: dict[str, Any] = {"i": event_id, "x": actions} if actions else {"i": event_id}
        self._buffer.append(_dumps(record) + b"\n")
        waiter = self._waiter
        if waiter is None:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            loop.call_soon(self._flush)
        await asyncio.shield(waiter)

    def _flush(self) -> None:
        """Write every line recorded in this turn of the loop at once (group commit)."""
        waiter, self._waiter = self._waiter, None
        lines, self._buffer = self._buffer, []
        try:
            if lines:
                self._write(b"".join(lines), len(lines))
        finally:
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _write(self, data: bytes, count: int) -> None:
        try:
            if self._fd is None:
                private_dir(self.folder)
                self._fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                os.fchmod(self._fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            self._lines += count
            if self._failing is not None:
                log.info("the handled event ids are written to %s again", self.journal_path)
                self._failing = None
            if self._lines >= self.max_ids:
                self._rotate()
        except OSError as exc:
            # the events stay remembered in memory; only a crash would forget them now
            if self._failing is None:
                log.error(
                    "cannot write the handled event ids to %s: %s; a crash of this server "
                    "would run the events handled meanwhile again (their sends are not "
                    "repeated: the Node client keeps the send records)",
                    self.journal_path,
                    exc,
                )
            self._failing = str(exc)
            self._close_fd()

    def _rotate(self) -> None:
        self._close_fd()
        os.replace(self.journal_path, self.previous_path)
        self._lines = 0

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    # ------------------------------------------------------------------ stop

    def close(self) -> SaveFailure | None:
        """Fold the journal into ``seen-event-ids.json`` (the last ``max_ids`` ids)."""
        self._flush()
        self._close_fd()
        try:
            loaded: list[tuple[str, Actions | None]] = []
            if self.snapshot_path.is_file():
                loaded += _read_snapshot(self.snapshot_path)
            for path in (self.previous_path, self.journal_path):
                if path.is_file():
                    loaded += _read_journal(path)
            kept = _last_unique(loaded, self.max_ids)
            actions = [[i, x] for i, x in kept[-self.max_actions :] if x]
            write_json(
                self.snapshot_path, {"version": 2, "ids": [i for i, _ in kept], "actions": actions}
            )
            for path in (self.previous_path, self.journal_path):
                path.unlink(missing_ok=True)
            self._lines = 0
        except (OSError, ValueError) as exc:  # ValueError: text UTF-8 cannot hold
            log.error("could not save the handled event ids to %s: %s", self.snapshot_path, exc)
            return SaveFailure("the handled event ids", self.snapshot_path, str(exc))
        return None


def _dumps(record: Any) -> bytes:
    try:
        return orjson.dumps(record)
    except TypeError:
        # what orjson refuses and JSON can still say: a lone UTF-16 surrogate in a reply
        return json.dumps(record, separators=(",", ":")).encode("ascii")


def _loads(line: bytes) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)  # an escaped lone surrogate, as _dumps wrote it


def _last_unique(
    records: list[tuple[str, Actions | None]], limit: int
) -> list[tuple[str, Actions | None]]:
    """The last ``limit`` distinct ids, oldest first, each with its latest actions."""
    latest: dict[str, Actions | None] = {}
    for event_id, actions in records:
        latest.pop(event_id, None)
        latest[event_id] = actions
    return list(latest.items())[-limit:]


def _read_snapshot(path: Path) -> list[tuple[str, Actions | None]]:
    """``seen-event-ids.json``: a list of ids (before protocol 3) or ``{ids, actions}``."""
    try:
        data = _loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        log.warning("ignored unreadable %s: %s", path, exc)
        return []
    if isinstance(data, list):
        return [(i, None) for i in data if isinstance(i, str)]
    if not isinstance(data, dict) or not isinstance(data.get("ids"), list):
        log.warning("ignored %s: not a list of handled event ids", path)
        return []
    actions: dict[str, Actions] = {}
    for item in data.get("actions") or []:
        if isinstance(item, list) and len(item) == 2 and isinstance(item[1], list):
            actions[str(item[0])] = item[1]
    return [(i, actions.get(i)) for i in data["ids"] if isinstance(i, str)]


def _read_journal(path: Path) -> list[tuple[str, Actions | None]]:
    """The journal's records; a damaged line (a crash mid-write) is skipped."""
    found: list[tuple[str, Actions | None]] = []
    bad = 0
    try:
        text = path.read_bytes()
    except OSError as exc:
        log.warning("ignored unreadable %s: %s", path, exc)
        return found
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = _loads(line)
            event_id = record["i"]
            actions = record.get("x")
        except (ValueError, TypeError, KeyError, AttributeError):
            bad += 1
            continue
        if isinstance(event_id, str):
            found.append((event_id, actions if isinstance(actions, list) else None))
    if bad:
        log.warning("%s: skipped %d unreadable lines", path, bad)
    return found
