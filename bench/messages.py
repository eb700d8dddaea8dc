"""Message throughput end to end: 50 chats on the mock puppet, a routed handler answering each.

    python bench/messages.py                 # a table
    python bench/messages.py --json          # one JSON object
    python bench/messages.py --profile       # plus the Python server's hottest functions

Both measurements run in the same Node process, timed there:

- ``raw``: the mock alone. Contacts say N messages to the bot and a ``bot.on('message')``
  handler in Node counts them (no answer). This is the ceiling the mock puppet sets.
- ``e2e``: each of 50 contacts says a message, waits for the bot's answer, says the next
  (50 in flight). The message goes mock -> Wechaty -> Node client -> Socket.IO -> Python
  server -> router -> handler -> ``say`` snippet -> Node -> mock, and the latency is from
  the contact's ``say`` to the answer showing up in that chat. Rate limits are off.

CPU seconds of both processes during the e2e run show which side is the bottleneck.
Target (issue 4): >= 2,000 messages/s end to end, or the bottleneck named.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _measure import cpu_seconds, percentile

from MetaPuppet import Message, RobotBase
from MetaPuppet.testing import mock_wechat

RAW_SNIPPET = """
const ids = args.ids
const total = ids.length * args.per
let count = 0
let finish
const done = new Promise((resolve) => { finish = resolve })
const onMessage = (m) => {
  if (!m.self() && m.text().startsWith('raw:') && ++count === total) finish()
}
bot.on('message', onMessage)
const started = performance.now()
for (let i = 0; i < args.per; i++) {
  for (const id of ids) mock.say(id, { text: `raw:${i}` })
  if (i % 10 === 9) await new Promise((resolve) => setImmediate(resolve))
}
const timer = setTimeout(finish, args.timeout_ms)
await done
clearTimeout(timer)
const ms = performance.now() - started
bot.off('message', onMessage)
return { count, ms }
"""

E2E_SNIPPET = """
const ids = args.ids
const waiting = new Map()
const latencies = []
const onMessage = (m) => {
  if (!m.self()) return
  const chat = m.listener()?.id
  const entry = waiting.get(chat)
  if (entry === undefined || m.text() !== entry.expect) return
  waiting.delete(chat)
  latencies.push(performance.now() - entry.at)
  entry.resolve()
}
bot.on('message', onMessage)
const deadline = Date.now() + args.timeout_ms
let answered = 0
const started = performance.now()
await Promise.all(ids.map(async (id, n) => {
  for (let i = 0; i < args.per; i++) {
    const text = `e2e:${n}:${i}`
    const got = new Promise((resolve) => {
      waiting.set(id, { resolve, at: performance.now(), expect: `re:${text}` })
    })
    mock.say(id, { text })
    const left = deadline - Date.now()
    if (left <= 0) return
    let timer
    const late = new Promise((resolve) => { timer = setTimeout(() => resolve('late'), left) })
    if ((await Promise.race([got, late])) === 'late') return
    clearTimeout(timer)
    answered++
  }
}))
const ms = performance.now() - started
bot.off('message', onMessage)
return { answered, ms, latencies }
"""


class Answerer(RobotBase):
    """Answers ``e2e:...`` with ``re:e2e:...`` through a routed handler; nothing else."""

    async def on_message(self, message: Message) -> Any:
        return None


def make_robot() -> Answerer:
    robot = Answerer()

    @robot.router.on_message(regex=r"^e2e:")
    async def answer(message: Message) -> str:
        return f"re:{message.text}"

    return robot


def turn_off_websocket_deflate() -> None:
    """Experiment: make this process's aiohttp WebSockets refuse permessage-deflate.

    python-engineio's aiohttp driver builds ``WebSocketResponse`` with aiohttp's default
    ``compress=True``, and the Node ``ws`` client offers deflate, so every frame is zlib
    compressed on both sides. The real fix belongs in the server (or the client's
    ``perMessageDeflate: false``); this only measures what it would gain.
    """
    from aiohttp import web
    from engineio.async_drivers import aiohttp as engineio_aiohttp

    class PlainWebSocketResponse(web.WebSocketResponse):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["compress"] = False
            super().__init__(*args, **kwargs)

    engineio_aiohttp.WebSocketResponse = PlainWebSocketResponse


# Loaded into the Node client with NODE_OPTIONS=--import (V8's --cpu-prof may not go in
# NODE_OPTIONS): exposes the inspector's CPU profiler to snippets, so only the e2e run is
# profiled.
PROFILER_PRELOAD = """
import { Session } from 'node:inspector/promises'
import { writeFileSync } from 'node:fs'
const session = new Session()
session.connect()
globalThis.__benchProfiler = {
  async start() {
    await session.post('Profiler.enable')
    await session.post('Profiler.setSamplingInterval', { interval: 250 })
    await session.post('Profiler.start')
  },
  async stop(path) {
    const { profile } = await session.post('Profiler.stop')
    writeFileSync(path, JSON.stringify(profile))
    return path
  },
}
"""


def node_profile_summary(path: Path, top: int = 12) -> str:
    """Where the Node process spent the e2e run: self time by package and by function."""
    data = json.loads(path.read_text())
    nodes = {n["id"]: n["callFrame"] for n in data["nodes"]}
    by_function: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    for sample in data["samples"]:
        frame = nodes[sample]
        url = frame.get("url") or ""
        name = frame.get("functionName") or "(anonymous)"
        if "node_modules/" in url:
            parts = url.rsplit("node_modules/", 1)[1].split("/")
            package = "/".join(parts[:2]) if parts[0].startswith("@") else parts[0]
        elif "/socket_client/src/" in url:
            package = "socket_client"
        elif url.startswith("node:"):
            package = "node:" + url[5:].split("/")[0]
        elif not url:
            package = name  # (idle), (garbage collector), (program)
        else:
            package = url.rsplit("/", 1)[-1]
        by_function[f"{name} ({url.rsplit('/', 1)[-1]}:{frame.get('lineNumber', 0) + 1})"] += 1
        by_package[package] += 1
    idle = by_package.pop("(idle)", 0)
    by_function.pop("(idle) (:0)", None)
    total = sum(by_package.values()) or 1
    lines = [
        f"Node CPU profile of the e2e run: busy {total / (total + idle):.0%} of the samples;"
        " shares of busy time:",
        "  by package:",
    ]
    lines += [f"    {count / total:6.1%}  {name}" for name, count in by_package.most_common(top)]
    lines.append("  by function (self time):")
    lines += [f"    {count / total:6.1%}  {name}" for name, count in by_function.most_common(top)]
    return "\n".join(lines)


async def run(
    chats: int, per_chat: int, raw_per_chat: int, profile: bool, node_profile: Path | None = None
) -> dict[str, Any]:
    saved_options = os.environ.get("NODE_OPTIONS")
    if node_profile is not None:
        node_profile.mkdir(parents=True, exist_ok=True)
        preload = node_profile / "profiler-preload.mjs"
        preload.write_text(PROFILER_PRELOAD)
        os.environ["NODE_OPTIONS"] = f"{saved_options or ''} --import {preload}".strip()
    try:
        return await _run(chats, per_chat, raw_per_chat, profile, node_profile)
    finally:
        if saved_options is None:
            os.environ.pop("NODE_OPTIONS", None)
        else:
            os.environ["NODE_OPTIONS"] = saved_options


async def _run(
    chats: int, per_chat: int, raw_per_chat: int, profile: bool, node_profile: Path | None
) -> dict[str, Any]:
    async with mock_wechat(make_robot(), bots=["bench"]) as wx:
        bot = wx.bot()
        contacts = [await bot.contact(f"Contact {i}") for i in range(chats)]
        ids = [c.id for c in contacts]
        assert bot.node is not None and bot.node.process is not None
        node_pid = bot.node.process.pid

        # warm up both paths (JIT, snippet cache, socket buffers)
        await bot.exec(RAW_SNIPPET, {"ids": ids, "per": 2, "timeout_ms": 30_000}, timeout=60)
        await bot.exec(E2E_SNIPPET, {"ids": ids, "per": 2, "timeout_ms": 30_000}, timeout=60)

        raw = await bot.exec(
            RAW_SNIPPET, {"ids": ids, "per": raw_per_chat, "timeout_ms": 120_000}, timeout=180
        )
        await asyncio.sleep(0.5)  # let the server drain the raw messages it was forwarded

        profiler = cProfile.Profile() if profile else None
        cpu_before = (cpu_seconds(os.getpid()), cpu_seconds(node_pid))
        wall = time.perf_counter()
        if profiler:
            profiler.enable()
        if node_profile is not None:
            await bot.exec("await globalThis.__benchProfiler.start()")
        e2e = await bot.exec(
            E2E_SNIPPET, {"ids": ids, "per": per_chat, "timeout_ms": 120_000}, timeout=180
        )
        if profiler:
            profiler.disable()
        wall = time.perf_counter() - wall
        if node_profile is not None:
            written = await bot.exec(
                "return await globalThis.__benchProfiler.stop(args.path)",
                {"path": str(node_profile / "e2e.cpuprofile")},
            )
        cpu_python = cpu_seconds(os.getpid()) - cpu_before[0]
        cpu_node = cpu_seconds(node_pid) - cpu_before[1]

    latencies = e2e["latencies"]
    report: dict[str, Any] = {
        "chats": chats,
        "raw": {
            "messages": raw["count"],
            "msgs_per_s": raw["count"] / (raw["ms"] / 1000),
        },
        "e2e": {
            "messages": e2e["answered"],
            "expected": chats * per_chat,
            "msgs_per_s": e2e["answered"] / (e2e["ms"] / 1000),
            "p50_ms": statistics.median(latencies),
            "p99_ms": percentile(sorted(latencies), 0.99),
        },
        "cpu_during_e2e": {
            "wall_s": wall,
            "python_s": cpu_python,
            "node_s": cpu_node,
            "python_busy": cpu_python / wall,
            "node_busy": cpu_node / wall,
        },
    }
    report["ratio_e2e_to_raw"] = report["e2e"]["msgs_per_s"] / report["raw"]["msgs_per_s"]
    report["target_met"] = report["e2e"]["msgs_per_s"] >= 2000
    busiest = max(("python", cpu_python), ("node", cpu_node), key=lambda p: p[1])
    report["bottleneck"] = f"{busiest[0]} process ({busiest[1] / wall:.0%} of one core)"
    if node_profile is not None:
        report["node_profile"] = node_profile_summary(Path(written))
    if profiler:
        out = io.StringIO()
        for sort in ("tottime", "cumulative"):
            pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(25)
        report["profile"] = out.getvalue()
    return report


def print_table(report: dict[str, Any]) -> None:
    raw, e2e, cpu = report["raw"], report["e2e"], report["cpu_during_e2e"]
    print(f"{'path':<5} {'messages':>9} {'msgs/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'raw':<5} {raw['messages']:>9} {raw['msgs_per_s']:>9.0f} {'-':>8} {'-':>8}")
    print(
        f"{'e2e':<5} {e2e['messages']:>9} {e2e['msgs_per_s']:>9.0f} "
        f"{e2e['p50_ms']:>8.2f} {e2e['p99_ms']:>8.2f}"
    )
    print(
        f"\ne2e/raw throughput {report['ratio_e2e_to_raw']:.2f}x; target >= 2000 msg/s: "
        f"{'met' if report['target_met'] else 'MISSED'}"
    )
    print(
        f"CPU during e2e ({cpu['wall_s']:.2f} s): python {cpu['python_busy']:.0%}, "
        f"node {cpu['node_busy']:.0%} of one core -> bottleneck: {report['bottleneck']}"
    )
    if "profile" in report:
        print("\nPython server profile (e2e run):")
        print(report["profile"])
    if "node_profile" in report:
        print()
        print(report["node_profile"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--chats", type=int, default=50)
    parser.add_argument("--per-chat", type=int, default=100, help="e2e messages per chat")
    parser.add_argument("--raw-per-chat", type=int, default=200, help="raw messages per chat")
    parser.add_argument("--profile", action="store_true", help="profile the Python side")
    parser.add_argument(
        "--node-profile",
        type=Path,
        metavar="DIR",
        help="also profile the Node client (V8 --cpu-prof into DIR) and summarise it",
    )
    parser.add_argument(
        "--no-deflate",
        action="store_true",
        help="experiment: refuse WebSocket compression (see turn_off_websocket_deflate)",
    )
    args = parser.parse_args(argv)
    if args.no_deflate:
        turn_off_websocket_deflate()
    report = asyncio.run(
        run(args.chats, args.per_chat, args.raw_per_chat, args.profile, args.node_profile)
    )
    if args.json:
        report.pop("profile", None)
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
