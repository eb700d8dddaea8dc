"""Snapshots of a bot's contacts, rooms and room members, written to the data directory.

`metapuppet serve` writes one shortly after each login and one at a stop, so the contact
list is at hand while the bot is offline. A stop never fails because of one: a snapshot it
cannot write is reported as a :class:`~MetaPuppet._files.SaveFailure`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from pathlib import Path

from . import snippets
from ._files import SaveFailure, write_json
from .client import PuppetClient
from .errors import MetaPuppetError

__all__ = ["snapshot_path", "write_snapshot", "write_snapshots"]

log = logging.getLogger("MetaPuppet.server")


def snapshot_path(data_dir: Path, bot: str) -> Path:
    """``data_dir/snapshot-<bot>.json``, the bot's name made safe for a file name."""
    return data_dir / f"snapshot-{re.sub(r'[^A-Za-z0-9_.-]', '_', bot) or 'bot'}.json"


async def write_snapshot(client: PuppetClient, data_dir: Path, bot: str) -> Path:
    """Ask the bot for its contacts, rooms and members and write them as JSON."""
    snapshot = await client.exec_snippet(snippets.SNAPSHOT, bot=bot, timeout=120.0)
    snapshot = {"bot": bot, "taken_at": time.time(), **snapshot}
    path = snapshot_path(data_dir, bot)
    write_json(path, snapshot)
    log.info(
        "wrote %s: %d contacts, %d rooms",
        path,
        len(snapshot.get("contacts", [])),
        len(snapshot.get("rooms", [])),
    )
    return path


async def write_snapshots(
    client: PuppetClient, data_dir: Path | None, bots: Iterable[str], failures: list[SaveFailure]
) -> list[Path]:
    """A snapshot of each bot; what could not be written is added to ``failures``."""
    written = []
    for name in bots:
        if data_dir is None:
            log.warning("no snapshot for bot %r: no data_dir", name)
            continue
        try:
            written.append(await write_snapshot(client, data_dir, name))
        except MetaPuppetError as exc:
            log.warning("no snapshot for bot %r: %s", name, exc)
        except OSError as exc:
            log.error("could not write the snapshot of bot %r: %s", name, exc)
            what = f"the snapshot of bot {name!r}"
            failures.append(SaveFailure(what, snapshot_path(data_dir, name), str(exc)))
    return written
