"""Cluster benchmark (issue 14): the closed loop without Redis, in cluster mode, on two processes.

    python bench/cluster.py                      # 20 s windows, K=1 and K=50, a table
    python bench/cluster.py --seconds 10 --repeat 3
    python bench/cluster.py --quick --json       # a smoke run of a few seconds (CI)

The measurement is bench/closed_loop.py's (its driver, its ``measure``: K mocked contacts each
send a message, wait for the reversed reply, send the next; timed in Node; CPU from /proc),
run on three systems that are all up at once and measured in turn, interleaved, so that they
share the machine's state:

- ``single``: one server process without Redis (this process), one bot.
- ``cluster1``: one server process in cluster mode (this process, on a redis-server the bench
  starts) with one bot: what cluster mode costs a process (shared dedupe, rate buckets,
  dialog store in Redis, every event published to the other processes).
- ``cluster2``: two server processes on that Redis (this process, A, and a
  ``metapuppet serve --redis URL`` child, B), one bot connected to each, both loops driven
  at once with K contacts each; msgs/s is the sum, latencies are both bots'. The driver of
  the bot on B is an ``exec`` from A that crosses the cluster (one call per measurement).

Every system has the same outgoing rate limit, high enough never to wait
(``--rate-limit``), so its check runs per reply as in a deployment (in memory, on the
process holding the bot, in every system); the dialog store is the one ``serve``
picks (memory here for ``single``, which would be SQLite under ``serve``; Redis in cluster
mode).

Per system and scenario: msgs/s, p50/p99, CPU ms per answered message of the Python
server processes (the sum for ``cluster2``) and of the Node clients, and Redis commands per
answered message: the delta of ``INFO stats`` ``total_commands_processed`` on the bench's
redis-server over the measured call divided by the replies, with the ``INFO commandstats``
breakdown, and Redis round trips per answered message: the delta of ``total_reads_processed``
(one read event per request or pipeline that arrives in one piece, every client and the
pub/sub included). Both include the processes' background work (each renews its liveness every
``cluster.refresh_s``: about 12 commands a second per process) and the two ``INFO`` calls. The
load average before and after each row says how busy the (shared) machine was.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import closed_loop as cl
import redis.asyncio as redis_asyncio

from MetaPuppet import Config, SweetSocketServer
from MetaPuppet._loop import run as run_on_loop
from MetaPuppet.config import new_token
from MetaPuppet.storage import RedisStorage
from MetaPuppet.testing import NodeClient

__all__ = ["SYSTEMS", "main", "run"]

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SYSTEMS = ("single", "cluster1", "cluster2")
SCENARIOS = ("k1", "k50", "burst")
#: high enough never to make a closed loop wait, so only the check's cost is measured
DEFAULT_RATE_LIMIT = "per_chat=10000/1s:10000,per_bot=100000/1s:100000"


class RedisServer:
    """A redis-server of the bench's own on a free loopback port (no persistence)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = cl.free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise cl.BenchError("redis-server is not on PATH (apt-get install redis-server)")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        client = redis_asyncio.Redis.from_url(self.url)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    await client.ping()
                    return
                except Exception:
                    if time.monotonic() > deadline or self.process.poll() is not None:
                        raise cl.BenchError("redis-server did not start") from None
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(5)
            self.process = None


class RedisStats:
    """Commands the bench's redis-server processed (``INFO stats`` / ``commandstats``)."""

    def __init__(self, url: str) -> None:
        self.client = redis_asyncio.Redis.from_url(url)

    async def snapshot(self) -> tuple[int, dict[str, int]]:
        """(commands processed, calls by command); the reads (request batches) go into
        ``by_command`` under ``_reads``."""
        stats = await self.client.info("stats")
        commands = await self.client.info("commandstats")
        by_command = {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in commands.items()
            if isinstance(value, dict)
        }
        # a read event is one request or pipeline that arrived in one piece: a round trip
        by_command["_reads"] = int(stats.get("total_reads_processed", 0))
        return int(stats["total_commands_processed"]), by_command

    async def close(self) -> None:
        await self.client.aclose()


class ServeProcess:
    """Process B: ``metapuppet serve --redis URL`` with closed_loop's robot."""

    def __init__(self, folder: Path, token: str, redis: str, prefix: str, rate: str) -> None:
        self.folder = folder
        self.port = cl.free_port()
        self.redis = redis
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "server": {"token": token, "port": self.port, "data_dir": "data", "rate_limit": rate},
            "cluster": {"key_prefix": prefix, "channel": prefix},
        }
        (folder / "config.json").write_text(json.dumps(config))
        self.log = folder / "serve.log"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 60.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("METAPUPPET_")}
        env["PYTHONPATH"] = os.pathsep.join([str(BENCH), str(ROOT)])
        with open(self.log, "ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "MetaPuppet", "serve",
                "--config", str(self.folder / "config.json"),
                "--bot", "closed_loop:make_robot", "--redis", self.redis,
                cwd=self.folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while "MetaPuppet serving" not in self.log.read_text(errors="replace"):
            if self.process.returncode is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise cl.BenchError(f"process B did not start:\n{tail}")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()


class Bots:
    """Node clients on the mock, each connected to one server; driven from ``via``."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.nodes: list[NodeClient] = []

    async def start(
        self, via: SweetSocketServer, name: str, url: str, contacts: int
    ) -> dict[str, Any]:
        node = NodeClient(
            {
                "server": {"token": self.token},
                "client": {"url": url, "bot": name},
                "puppet": {"name": "wechaty-puppet-mock"},
            },
            log_level="warn",
        )
        self.nodes.append(node)
        await node.start()
        deadline = time.monotonic() + 60
        while not any(
            c["bot"] == name and c.get("logged_in_as") and c["status"] == "online"
            for c in via.list_clients()
        ):
            if time.monotonic() > deadline:
                raise cl.BenchError(f"bot {name} did not log in (seen from {via.url})")
            await asyncio.sleep(0.05)
        user = str(await via.exec_snippet("return bot.currentUser.id", bot=name, timeout=30))
        ids = [
            str(
                await via.exec_snippet(
                    "return mock.contact(args.name)", {"name": f"Contact {i}"}, bot=name
                )
            )
            for i in range(contacts)
        ]
        assert node.process is not None
        return {"user": user, "ids": ids, "pid": node.process.pid}

    async def stop(self) -> None:
        for node in self.nodes:
            await node.stop()


def driver(server: SweetSocketServer, bot: str) -> Callable[[dict[str, Any], float], Any]:
    async def run(args: dict[str, Any], timeout: float) -> dict[str, Any]:
        result: dict[str, Any] = await server.exec_snippet(
            cl.DRIVER, args, bot=bot, timeout=timeout
        )
        return result

    return run


class Measured:
    """Wraps a system's ``run`` to count, over each call, what ``measure`` cannot: Redis
    commands, and the CPU of the second bot's processes (``cluster2``)."""

    def __init__(
        self,
        runs: list[tuple[Callable[..., Awaitable[dict[str, Any]]], str]],
        stats: RedisStats | None,
        extra_pids: list[int],
        redis_pid: int | None = None,
    ) -> None:
        self.runs = runs  # (run, user id of its bot)
        self.stats = stats
        self.extra_pids = extra_pids
        self.redis_pid = redis_pid
        self.last: dict[str, Any] = {}
        #: the second bot's contacts (``cluster2``)
        self.second_ids: list[str] = []

    async def __call__(self, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        before = await self.stats.snapshot() if self.stats is not None else None
        cpu0 = {pid: cl.group_cpu_seconds(pid) for pid in self.extra_pids}
        redis0 = cl.group_cpu_seconds(self.redis_pid) if self.redis_pid else 0.0
        calls = []
        for index, (run, user) in enumerate(self.runs):
            mine = dict(args, userId=user, tag=f"{args['tag']}b{index}")
            if index:  # the second bot's contacts (same count, its own ids)
                mine["ids"] = self.second_ids[: len(args["ids"])]
            calls.append(run(mine, timeout))
        results = await asyncio.gather(*calls)
        self.last = {"extra_cpu_s": {pid: cl.group_cpu_seconds(pid) - c for pid, c in cpu0.items()}}
        if self.redis_pid:
            self.last["redis_cpu_s"] = cl.group_cpu_seconds(self.redis_pid) - redis0
        if self.stats is not None and before is not None:
            total, by_command = await self.stats.snapshot()
            self.last["redis_commands"] = total - before[0]
            self.last["redis_reads"] = by_command.pop("_reads") - before[1].get("_reads", 0)
            self.last["redis_by_command"] = {
                name: calls - before[1].get(name, 0)
                for name, calls in by_command.items()
                if calls - before[1].get(name, 0) > 0 and name != "_reads"
            }
        if len(results) == 1:
            return results[0]
        merged = dict(results[0])
        for key in ("answered", "late", "lost"):
            merged[key] = sum(r[key] for r in results)
        merged["window_ms"] = max(r["window_ms"] for r in results)
        merged["latencies_us"] = [us for r in results for us in r["latencies_us"]]
        return merged


@contextlib.asynccontextmanager
async def systems(options: argparse.Namespace) -> AsyncIterator[dict[str, Any]]:
    """Start every system; yields {name: (System, Measured)} and the pids to keep quiet."""
    folder = Path(tempfile.mkdtemp(prefix="metapuppet-bench-cluster-"))
    token = new_token()
    redis = RedisServer(folder)
    stats: RedisStats | None = None
    servers: list[SweetSocketServer] = []
    bots = Bots(token)
    serve_b: ServeProcess | None = None
    found: dict[str, Any] = {}

    def server(prefix: str | None) -> SweetSocketServer:
        raw = Config().raw
        raw["server"]["rate_limit"] = options.rate_limit
        robot = cl.make_robot()
        if prefix is not None:
            raw["cluster"] = {"redis_url": redis.url, "key_prefix": prefix, "channel": prefix}
            # what `serve --redis` picks: the dialogs in the shared Redis
            robot.dialog_store = RedisStorage.from_url(redis.url, namespace=f"{prefix}:dialog")
        made = SweetSocketServer(robot=robot, config=Config(raw=raw), token=token, port=0)
        servers.append(made)
        return made

    try:
        if {"cluster1", "cluster2"} & set(options.systems):
            await redis.start()
            stats = RedisStats(redis.url)
        quiet: list[int] = [os.getpid()]
        if redis.process is not None:
            quiet.append(redis.process.pid)
        # servers first, then every bot at once (Node clients take seconds to log in)
        wanted: list[tuple[str, SweetSocketServer, str, str]] = []  # system, via, bot, url
        if "single" in options.systems:
            single = server(None)
            await single.start()
            wanted.append(("single", single, "single", single.url))
        if "cluster1" in options.systems:
            one = server(f"b1{uuid.uuid4().hex[:8]}")
            await one.start()
            wanted.append(("cluster1", one, "cluster1", one.url))
        if "cluster2" in options.systems:
            prefix = f"b2{uuid.uuid4().hex[:8]}"
            a = server(prefix)
            await a.start()
            serve_b = ServeProcess(folder / "b", token, redis.url, prefix, options.rate_limit)
            await serve_b.start()
            wanted.append(("cluster2", a, "cluster2-a", a.url))
            wanted.append(("cluster2", a, "cluster2-b", serve_b.url))
        started = await asyncio.gather(
            *(bots.start(via, bot, url, options.contacts) for _, via, bot, url in wanted)
        )
        got = {bot: one for (_, _, bot, _), one in zip(wanted, started, strict=True)}
        redis_pid = None if redis.process is None else redis.process.pid
        for name, via, bot, _ in wanted:
            if name != "cluster2":
                measured = Measured(
                    [(driver(via, bot), got[bot]["user"])],
                    None if name == "single" else stats,
                    [],
                    None if name == "single" else redis_pid,
                )
                found[name] = (got[bot], measured, [got[bot]["pid"]])
        if serve_b is not None:
            assert serve_b.process is not None
            a_got, b_got = got["cluster2-a"], got["cluster2-b"]
            via = next(v for n, v, _, _ in wanted if n == "cluster2")
            measured = Measured(
                [
                    (driver(via, "cluster2-a"), a_got["user"]),
                    (driver(via, "cluster2-b"), b_got["user"]),
                ],
                stats,
                [b_got["pid"], serve_b.process.pid],
                redis_pid,
            )
            measured.second_ids = b_got["ids"]
            found["cluster2"] = (a_got, measured, [a_got["pid"], b_got["pid"], serve_b.process.pid])
        for _, _, pids in found.values():
            quiet.extend(pids)
        yield {"systems": found, "quiet": sorted(set(quiet)), "redis": redis.url}
    finally:
        await bots.stop()
        if serve_b is not None:
            await serve_b.stop()
        for made in servers:
            await made.stop()
        if stats is not None:
            await stats.close()
        redis.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def run(options: argparse.Namespace) -> dict[str, Any]:
    measure_options = cl.Options(
        seconds=options.seconds,
        contacts=options.contacts,
        burst=options.burst,
        frames=False,
        # closed_loop's quick settle (0.1 s steps) never sees this many processes at once
        # idle: one 10 ms CPU tick of any of them in a step counts as busy
        quick=False,
        repeat=options.repeat,
    )
    report: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "seconds": options.seconds,
            "contacts": options.contacts,
            "burst": options.burst,
            "repeat": options.repeat,
            "rate_limit": options.rate_limit,
            "cpus": os.cpu_count(),
            "load_start": [round(x, 2) for x in os.getloadavg()],
        },
        "results": {},
    }
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    began = time.monotonic()
    async with systems(options) as up:
        report["meta"]["startup_s"] = round(time.monotonic() - began, 1)
        serial = 0
        for _ in range(options.repeat):
            for scenario in options.scenarios:
                for name in SYSTEMS:
                    if name not in up["systems"]:
                        continue
                    got, measured, pids = up["systems"][name]
                    system = cl.System(
                        name=name,
                        description=name,
                        ids=got["ids"],
                        user_id=got["user"],
                        node_pid=got["pid"],
                        python_pid=os.getpid(),
                        run=measured,
                    )
                    serial += 1
                    row = await cl.measure(system, scenario, measure_options, serial, up["quiet"])
                    rows.setdefault(name, {}).setdefault(scenario, []).append(
                        finish(row, measured, name)
                    )
    for name, by_scenario in rows.items():
        for scenario, runs in by_scenario.items():
            ordered = sorted(runs, key=lambda r: float(r["msgs_per_s"]))
            chosen = dict(ordered[(len(ordered) - 1) // 2])
            if len(runs) > 1:
                chosen["msgs_per_s_runs"] = [round(r["msgs_per_s"], 1) for r in runs]
                chosen["p99_ms_runs"] = [round(r["p99_ms"], 2) for r in runs]
            report["results"].setdefault(name, {})[scenario] = chosen
    report["ratios"] = ratios(rows)
    report["meta"]["total_s"] = round(time.monotonic() - began, 1)
    report["meta"]["load_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def finish(row: dict[str, Any], measured: Measured, name: str) -> dict[str, Any]:
    """Add what ``Measured`` counted to ``measure``'s row."""
    replies = row["answered"] + row["late"]
    extra = measured.last.get("extra_cpu_s", {})
    if name == "cluster2" and replies:
        # B's server and its bot's Node client, next to A's and the first bot's
        node_b, python_b = list(extra.values())[:2]
        row["python_cpu_ms_per_msg"] += python_b * 1000 / replies
        row["node_cpu_ms_per_msg"] += node_b * 1000 / replies
    if "redis_cpu_s" in measured.last and replies:
        row["redis_cpu_ms_per_msg"] = round(measured.last["redis_cpu_s"] * 1000 / replies, 4)
    if "redis_commands" in measured.last:
        row["redis_commands"] = measured.last["redis_commands"]
        row["redis_per_msg"] = (
            round(measured.last["redis_commands"] / replies, 2) if replies else None
        )
        row["redis_round_trips_per_msg"] = (
            round(measured.last.get("redis_reads", 0) / replies, 2) if replies else None
        )
        row["redis_by_command_per_msg"] = {
            k: round(v / replies, 3)
            for k, v in sorted(measured.last["redis_by_command"].items(), key=lambda kv: -kv[1])
            if replies
        }
    return row


def ratios(rows: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, float]]:
    """msgs/s of each cluster system over ``single``'s: the median of side-by-side runs."""
    out: dict[str, dict[str, float]] = {}
    base = rows.get("single", {})
    for name in ("cluster1", "cluster2"):
        for scenario, runs in rows.get(name, {}).items():
            pairs = [
                r["msgs_per_s"] / b["msgs_per_s"]
                for r, b in zip(runs, base.get(scenario, []), strict=False)
                if b["msgs_per_s"]
            ]
            if pairs:
                out.setdefault(f"{name}_over_single", {})[scenario] = round(
                    statistics.median(pairs), 3
                )
    return out


def print_table(report: dict[str, Any]) -> None:
    meta = report["meta"]
    print(
        f"cluster closed loop: {meta['seconds']:g} s windows, K=1 and K={meta['contacts']} per "
        f"bot, repeat {meta['repeat']}; load {meta['load_start']} -> {meta['load_end']} "
        f"({meta['cpus']} CPUs)"
    )
    print(
        f"{'system':<10}{'scen':<6}{'msgs/s':>8}{'p50':>8}{'p99':>8}{'py ms':>7}{'node ms':>8}"
        f"{'redis/msg':>10}{'rt/msg':>7}{'load':>11}  runs"
    )
    fmt = cl._fmt  # noqa: SLF001 - the same number format as closed_loop's table
    for name in SYSTEMS:
        for scenario, row in report["results"].get(name, {}).items():
            load = f"{row['load_start'][0]:.1f}->{row['load_end'][0]:.1f}"
            print(
                f"{name:<10}{scenario:<6}{fmt(row['msgs_per_s'], '.0f'):>8}"
                f"{fmt(row['p50_ms'], '.2f'):>8}{fmt(row['p99_ms'], '.2f'):>8}"
                f"{fmt(row['python_cpu_ms_per_msg'], '.3f'):>7}"
                f"{fmt(row['node_cpu_ms_per_msg'], '.3f'):>8}"
                f"{fmt(row.get('redis_per_msg'), '.2f'):>10}"
                f"{fmt(row.get('redis_round_trips_per_msg'), '.2f'):>7}{load:>11}"
                f"  {row.get('msgs_per_s_runs', '')}"
                + (f"  {row['error']}" if "error" in row else "")
            )
    print(
        "latency ms from the contact's say to the reply (timed in Node); py/node ms: CPU per "
        "answered message (cluster2: both servers / both Node clients); redis/msg: commands "
        "the redis-server processed per answered message; rt/msg: its read events (requests or "
        "pipelines, all clients, pub/sub included) per answered message; load: 1-min load "
        "average"
    )
    for key, by_scenario in report.get("ratios", {}).items():
        print(
            f"{key.replace('_', ' ')}: "
            + ", ".join(f"{s} {v:.2f}x" for s, v in by_scenario.items())
        )
    for name in ("cluster1", "cluster2"):
        row = report["results"].get(name, {}).get("k50")
        if row and row.get("redis_by_command_per_msg"):
            kinds = ", ".join(f"{k} {v:g}" for k, v in row["redis_by_command_per_msg"].items())
            print(f"{name} k50 Redis commands per message: {kinds}")


def parse_options(argv: list[str] | None) -> tuple[argparse.Namespace, bool]:
    assert __doc__ is not None
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seconds", type=float, default=20.0, help="window length (20)")
    parser.add_argument("--contacts", type=int, default=50, help="K per bot (50)")
    parser.add_argument("--burst", type=int, default=2000, help="messages said at once (2000)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--repeat", type=int, default=1, help="N runs; report the median")
    parser.add_argument(
        "--systems", help=f"comma-separated subset of {','.join(SYSTEMS)} (default: all)"
    )
    parser.add_argument(
        "--scenarios", help=f"comma-separated subset of {','.join(SCENARIOS)} (default: k1,k50)"
    )
    parser.add_argument(
        "--rate-limit",
        default=DEFAULT_RATE_LIMIT,
        help=f"every system's outgoing rate limit (default {DEFAULT_RATE_LIMIT}: never waits)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = min(args.seconds, 0.5)
        args.burst = min(args.burst, 200)
    args.systems = tuple(s.strip() for s in (args.systems or ",".join(SYSTEMS)).split(","))
    args.scenarios = tuple(s.strip() for s in (args.scenarios or "k1,k50").split(","))
    unknown = sorted(set(args.systems) - set(SYSTEMS)) + sorted(
        set(args.scenarios) - set(SCENARIOS)
    )
    if unknown:
        parser.error(f"unknown system or scenario: {', '.join(unknown)}")
    if args.seconds <= 0 or min(args.contacts, args.burst, args.repeat) < 1:
        parser.error("--seconds, --contacts, --burst and --repeat must be positive")
    return args, args.json


def main(argv: list[str] | None = None) -> int:
    options, as_json = parse_options(argv)
    report = run_on_loop(run(options), "asyncio")
    if as_json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_table(report)
    failed = any("error" in row for rows in report["results"].values() for row in rows.values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
