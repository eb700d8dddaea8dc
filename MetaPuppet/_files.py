"""Files MetaPuppet writes into its data directory: atomic, and private to the user.

Data files hold message text, contact lists and send budgets, so they are created 0600 in
0700 directories whatever the umask says.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["private_dir", "write_json"]


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) if needed; the folder itself is made 0700."""
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
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
