"""bench/cluster.py runs and reports what docs/scaling.md reads (a smoke run, no threshold).

The full benchmark is not a test; this runs ``--quick`` with K=5 and the K=1 loop only,
through real Node clients, a real redis-server and a second server process, and checks
the JSON: the three systems measured, nothing lost, Redis commands counted for the cluster
systems only, the load average reported.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.e2e
@pytest.mark.bench
def test_quick_run_measures_single_cluster_and_two_processes() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    done = subprocess.run(
        [sys.executable, str(BENCH / "cluster.py"), "--quick", "--json",
         "--scenarios", "k1", "--contacts", "5"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    report = json.loads(done.stdout)
    assert len(report["meta"]["load_start"]) == 3 and len(report["meta"]["load_end"]) == 3
    results = report["results"]
    assert set(results) == {"single", "cluster1", "cluster2"}
    for name, rows in results.items():
        row = rows["k1"]
        assert row["msgs_per_s"] > 0 and row["answered"] > 0 and row["lost"] == 0, name
        assert row["p50_ms"] <= row["p99_ms"], name
        assert row["python_cpu_ms_per_msg"] > 0 and row["node_cpu_ms_per_msg"] > 0, name
        assert len(row["load_end"]) == 3, name
    assert "redis_per_msg" not in results["single"]["k1"]  # no Redis at all
    for name in ("cluster1", "cluster2"):
        row = results[name]["k1"]
        # at least the event's record per answered message (a quick event's claim is
        # taken back before it goes out), in at least one round trip per a few messages
        assert row["redis_per_msg"] >= 1, row
        assert row["redis_by_command_per_msg"].get("set", 0) >= 1, row
        assert row["redis_round_trips_per_msg"] > 0, row
    # two bots, one per process: both loops answered
    assert results["cluster2"]["k1"]["contacts"] == 1
    assert set(report["ratios"]) == {"cluster1_over_single", "cluster2_over_single"}
