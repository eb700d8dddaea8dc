"""Dialog throughput and memory: 1,000 concurrent dialogs x 5 steps through a fake puppet.

    python bench/dialogs.py                  # memory and SQLite stores, a table
    python bench/dialogs.py --json           # one JSON object
    python bench/dialogs.py --redis auto     # add a Redis store (a private redis-server)
    python bench/dialogs.py --redis redis://localhost:6379/0

Each store runs in a fresh Python process, so its RSS is its own. In each: a server with a
fake puppet (answers every snippet at once, no Node), 1,000 participants each start a
dialog, then answer 5 questions; every round delivers one answer from each participant
at once (1,000 chats in flight; the server's per-chat order and handler cap apply).

- ``baseline``: the same events answered by a plain routed handler (no dialog, no store);
- ``steps/s``: answers processed per second (each one: lock, load, replay, save, ask);
- ``RSS``: the server process while all 1,000 dialogs are live (after round 4 of 5).

Targets (issue 4): RSS < 80 MB with 1,000 live dialogs; SQLite >= 0.5 x memory steps/s.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from MetaPuppet import Config, Message, RobotBase, SweetSocketServer
from MetaPuppet.dialog import Dialog
from MetaPuppet.protocol import BotEvent
from MetaPuppet.server import PuppetLink
from MetaPuppet.storage import BaseStorage, MemoryStorage, SQLiteStorage


class InstantPuppet(PuppetLink):
    """A puppet that answers every call at once and counts the messages said."""

    def __init__(self, bot: str = "bench") -> None:
        self.bot = bot
        self.said = 0

    async def call(self, event: str, data: Any, timeout: float) -> Any:
        if isinstance(data, dict) and "sayable" in (data.get("args") or {}):
            self.said += 1
        return {"ok": True, "result": None}


class Quiet(RobotBase):
    async def on_message(self, message: Message) -> Any:
        return None


def make_robot(store: BaseStorage | None, steps: int) -> RobotBase:
    robot = Quiet(dialog_store=store)
    if store is None:

        @robot.router.on_message()
        async def plain(message: Message) -> str:
            return f"got {message.text}"

        return robot

    @robot.dialog(trigger="go", name="bench")
    async def survey(d: Dialog) -> str:
        total = 0
        for step in range(steps):
            total += await d.ask_int(f"question {step + 1} of {steps}, total so far {total}")
        return f"total {total}"

    return robot


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


_ids = itertools.count()


def message(user: str, text: str) -> BotEvent:
    n = next(_ids)
    payload = {
        "id": f"msg-{n}",
        "type": 7,
        "text": text,
        "talkerId": user,
        "listenerId": "bench-bot",
        "roomId": None,
        "self": False,
        "mentionSelf": False,
        "mentionIdList": [],
        "talker": {"id": user, "name": user},
    }
    return BotEvent(id=f"ev-{n}", bot="bench", name="message", payload=payload, ts=time.time())


async def deliver_round(server: SweetSocketServer, users: list[str], text: str) -> float:
    """One message from every user at once; returns the seconds until all are handled."""
    started = time.perf_counter()
    await asyncio.gather(*(server.handle_event(message(user, text)) for user in users))
    while pending := [t for t in server._tasks if not t.done()]:
        await asyncio.wait(pending)
    return time.perf_counter() - started


async def measure(
    store_kind: str, dialogs: int, steps: int, redis_url: str | None
) -> dict[str, Any]:
    directory = tempfile.mkdtemp(prefix="metapuppet-bench-")
    store: BaseStorage | None
    if store_kind == "memory":
        store = MemoryStorage()
    elif store_kind == "sqlite":
        store = SQLiteStorage(Path(directory) / "dialogs.db")
    elif store_kind == "redis":
        from MetaPuppet.storage import RedisStorage

        assert redis_url is not None
        store = RedisStorage.from_url(redis_url, namespace=f"bench-{os.getpid()}")
    else:
        store = None  # the baseline: a plain handler
    server = SweetSocketServer(
        robot=make_robot(store, steps), config=Config(), token="b" * 24, rate_limiter=None
    )
    await server.start(host="127.0.0.1", port=0)
    puppet = InstantPuppet()
    server.attach_puppet(puppet)
    users = [f"user{i}" for i in range(dialogs)]
    gc.collect()
    rss_before = rss_mb()

    start_seconds = await deliver_round(server, users, "go")
    step_seconds = 0.0
    rss_live = rss_before
    for step in range(steps):
        step_seconds += await deliver_round(server, users, str(step + 1))
        if step == steps - 2:
            rss_live = rss_mb()  # every dialog live, one question from its end
    expected_said = dialogs * (steps + 1)  # each question, then the total
    await server.stop()
    if store is not None:
        await store.close()
    return {
        "store": store_kind,
        "dialogs": dialogs,
        "steps": steps,
        "start_s": start_seconds,
        "steps_s": step_seconds,
        "steps_per_s": dialogs * steps / step_seconds,
        "rss_before_mb": rss_before,
        "rss_live_mb": rss_live,
        "said": puppet.said,
        "said_ok": puppet.said == (expected_said if store is not None else dialogs * (steps + 1)),
    }


def run_child(store: str, dialogs: int, steps: int, redis_url: str | None) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", store, "--dialogs", str(dialogs)]
    command += ["--steps", str(steps)]
    if redis_url:
        command += ["--redis", redis_url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {store} run failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run(dialogs: int, steps: int, redis_url: str | None) -> dict[str, Any]:
    stores = ["baseline", "memory", "sqlite"] + (["redis"] if redis_url else [])
    results = {store: run_child(store, dialogs, steps, redis_url) for store in stores}
    memory_rate = results["memory"]["steps_per_s"]
    report: dict[str, Any] = {
        "load_average": os.getloadavg()[0],
        "results": results,
        "ratio_sqlite_to_memory": results["sqlite"]["steps_per_s"] / memory_rate,
        "ratio_memory_to_baseline": memory_rate / results["baseline"]["steps_per_s"],
    }
    if redis_url:
        report["ratio_redis_to_memory"] = results["redis"]["steps_per_s"] / memory_rate
    report["target_rss_met"] = all(
        r["rss_live_mb"] < 80 for name, r in results.items() if name != "baseline"
    )
    report["target_sqlite_met"] = report["ratio_sqlite_to_memory"] >= 0.5
    return report


def print_table(report: dict[str, Any]) -> None:
    print(
        f"{'store':<9} {'steps/s':>9} {'start s':>8} {'RSS before':>11} {'RSS live':>9} {'ok':>3}"
    )
    for name, r in report["results"].items():
        print(
            f"{name:<9} {r['steps_per_s']:>9.0f} {r['start_s']:>8.2f} "
            f"{r['rss_before_mb']:>9.1f}MB {r['rss_live_mb']:>7.1f}MB "
            f"{'yes' if r['said_ok'] else 'NO':>3}"
        )
    first = next(iter(report["results"].values()))
    print(
        f"\n{first['dialogs']} dialogs x {first['steps']} steps; baseline = the same events to "
        "a plain handler"
    )
    print(
        f"memory/baseline {report['ratio_memory_to_baseline']:.2f}x; sqlite/memory "
        f"{report['ratio_sqlite_to_memory']:.2f}x (target >= 0.5: "
        f"{'met' if report['target_sqlite_met'] else 'MISSED'}); RSS < 80 MB: "
        f"{'met' if report['target_rss_met'] else 'MISSED'}"
    )
    if "ratio_redis_to_memory" in report:
        print(f"redis/memory {report['ratio_redis_to_memory']:.2f}x")
    print(f"(load average at the end: {report['load_average']:.2f})")


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A private redis-server on a Unix socket (for ``--redis auto``)."""
    sock = directory / "redis.sock"
    process = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(sock), "--save", "",
         "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not sock.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("redis-server did not start (is it installed?)")
        time.sleep(0.02)
    return process, f"unix://{sock}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--dialogs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--redis", help="also measure a RedisStorage at this URL ('auto': start one)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = asyncio.run(measure(args.child, args.dialogs, args.steps, args.redis))
        json.dump(result, sys.stdout)
        return 0
    redis_process = None
    if args.redis == "auto":
        redis_process, args.redis = start_redis(Path(tempfile.mkdtemp(prefix="bench-redis-")))
    try:
        report = run(args.dialogs, args.steps, args.redis)
    finally:
        if redis_process is not None:
            redis_process.terminate()
            redis_process.wait(10)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
