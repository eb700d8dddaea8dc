"""Measuring helpers shared by the benchmarks."""

from __future__ import annotations

import os
from pathlib import Path


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0..1) of already sorted samples; NaN when empty."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
