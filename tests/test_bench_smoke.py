"""bench/closed_loop.py runs and reports what the optimisers read (a smoke run, no threshold).

The full benchmark is not a test (``make bench``); this runs ``--quick`` (0.3 s windows, a
200-message burst) end to end through the real Node client, and checks the JSON: every
system and scenario measured, the fields present, a non-zero throughput, no message lost,
and the Socket.IO packets counted. Plus fast unit tests of the packet counter.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"

ROW_FIELDS = {
    "contacts",
    "answered",
    "late",
    "lost",
    "msgs_per_s",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "python_cpu_ms_per_msg",
    "node_cpu_ms_per_msg",
    "python_rss_mb",
    "python_peak_rss_mb",
    "load_start",
    "load_end",
    "machine_busy",
    "others_cpu_s",
}


def closed_loop() -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module("closed_loop")


@pytest.mark.e2e
@pytest.mark.bench
def test_quick_run_reports_every_system_and_scenario() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "closed_loop.py"), "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    report = json.loads(done.stdout)
    meta = report["meta"]
    assert len(meta["load_start"]) == 3 and len(meta["load_end"]) == 3
    assert "errors" not in report
    results = report["results"]
    assert set(results) == {"metapuppet", "ceiling", "bare"}
    for system, rows in results.items():
        assert set(rows) == {"k1", "k50", "burst"}, system
        for scenario, row in rows.items():
            where = f"{system} {scenario}"
            assert ROW_FIELDS <= set(row), f"{where}: missing {ROW_FIELDS - set(row)}"
            assert row["msgs_per_s"] > 0 and row["answered"] > 0, where
            assert row["lost"] == 0, where
            assert row["p50_ms"] <= row["p99_ms"] <= row["max_ms"], where
            assert row["node_cpu_ms_per_msg"] > 0, where
            assert row["contacts"] == (1 if scenario == "k1" else 50), where
    assert results["metapuppet"]["burst"]["answered"] == 200
    for scenario, row in results["metapuppet"].items():
        assert row["python_cpu_ms_per_msg"] > 0 and row["python_rss_mb"] > 0, scenario
        assert row["python_peak_rss_mb"] >= row["python_rss_mb"] - 1, scenario
        # at least the contact's message comes in and the reply goes out
        assert row["frames_in_per_msg"] >= 1 and row["frames_out_per_msg"] >= 1, scenario
        assert row["frames_by_kind_per_msg"]["out:event:exec"] > 0, scenario
    assert results["bare"]["k50"]["python_cpu_ms_per_msg"] is None  # no Python in that one
    assert set(report["ratios"]) == {"metapuppet_over_ceiling", "metapuppet_over_bare"}


class FakeEngineIO:
    """Just the two entry points the counter wraps."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.triggered: list[tuple[Any, ...]] = []

    async def send(self, sid: str, data: Any) -> None:
        self.sent.append(data)

    async def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> str:
        self.triggered.append((event, *args))
        return "handled"


async def test_frame_counter_counts_both_ways_and_uninstalls() -> None:
    bench = closed_loop()
    eio = FakeEngineIO()
    counter = bench.FrameCounter(eio)
    counter.install()
    await eio.send("sid", '2["exec",{"code":"x"}]')
    await eio.send("sid", "31[{}]")
    assert await eio._trigger_event("message", "sid", '2["event",{}]') == "handled"
    await eio._trigger_event("connect", "sid", {})  # not a packet
    packets, sizes = counter.snapshot()
    assert packets == {"out:event:exec": 1, "out:ack": 1, "in:event:event": 1}
    assert sizes["out:ack"] == len("31[{}]")
    counter.uninstall()
    await eio.send("sid", "3[]")
    await eio._trigger_event("message", "sid", "3[]")
    assert counter.snapshot()[0] == packets  # no longer counting
    assert len(eio.sent) == 3 and len(eio.triggered) == 3  # every call went through


def test_packet_kinds() -> None:
    kind = closed_loop().packet_kind
    assert kind('2["say",1]') == "event:say"
    assert kind('212["exec",{}]') == "event:exec"  # with an ack id
    assert kind('2/admin,["x"]') == "event:x"  # with a namespace
    assert kind("3[]") == "ack"
    assert kind("51-[]") == "binary_event"
    assert kind(b"\x00\x01") == "attachment"
    assert kind("2") == "event"


def test_burst_is_split_over_the_contacts() -> None:
    bench = closed_loop()
    system = bench.System(
        name="x",
        description="",
        ids=[f"c{i}" for i in range(50)],
        user_id="u",
        node_pid=1,
        python_pid=None,
        run=lambda args, timeout: asyncio.sleep(0),
    )
    options = bench.Options(burst=2000)
    args = bench.scenario_args(system, "burst", options, "t")
    assert len(args["ids"]) * args["per"] == 2000
    assert bench.scenario_args(system, "k1", options, "t")["ids"] == ["c0"]
