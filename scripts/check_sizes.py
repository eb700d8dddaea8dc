"""Fail when a module of the package grows past 600 lines: split it by concept first.

python scripts/check_sizes.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 600


def main() -> int:
    too_long = []
    for path in sorted((ROOT / "MetaPuppet").rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > LIMIT:
            too_long.append(f"{path.relative_to(ROOT)}: {lines} lines (limit {LIMIT})")
    for line in too_long:
        print(line)
    if not too_long:
        print(f"every module of MetaPuppet/ is at most {LIMIT} lines")
    return 1 if too_long else 0


if __name__ == "__main__":
    sys.exit(main())
