"""Files MetaPuppet writes into its data directory: atomic, and private to the user.

Data files hold message text, contact lists and send budgets, so they are created 0600 in
0700 directories whatever the umask says (the mode is set with chmod after creation: a
umask can only take bits away). A file that cannot be written at a stop is reported as a
:class:`SaveFailure`, never raised out of the stop.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SaveFailure", "private_dir", "private_file", "write_json"]


@dataclass(frozen=True, slots=True)
class SaveFailure:
    """Something a stop could not save: what it was, where it should have gone, and why."""

    what: str
    path: Path | None
    error: str

    def __str__(self) -> str:
        where = f" to {self.path}" if self.path is not None else ""
        return f"{self.what}{where} ({self.error})"


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents 0700; an existing ``path`` is made 0700."""
    missing: list[Path] = []
    current = path
    while not current.exists() and current.parent != current:
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue
        folder.chmod(0o700)
    if not missing and path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty and 0600 (in a 0700 folder) unless it exists; tighten it if it
    does. For files other code writes afterwards (an SQLite database)."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o777 != 0o600:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path


def write_json(path: Path, data: Any) -> None:
    """Write atomically: a crash leaves the old file or the new one, never half of one."""
    private_dir(path.parent)
    temporary = path.with_suffix(path.suffix + ".tmp")
    text = json.dumps(data, ensure_ascii=False)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            fd = -1
            out.write(text)
    finally:
        if fd != -1:
            os.close(fd)
    os.replace(temporary, path)
