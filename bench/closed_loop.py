"""Closed-loop message benchmark (issue 12): MetaPuppet against the mock's ceiling and the SDK.

    python bench/closed_loop.py                 # 20 s windows, a table
    python bench/closed_loop.py --json          # one JSON object
    python bench/closed_loop.py --seconds 5     # shorter windows
    python bench/closed_loop.py --quick         # a smoke run of a few seconds (CI)
    python bench/closed_loop.py --sdk           # also python-wechaty 0.10.7 over gRPC
    python bench/closed_loop.py --profile       # plus a cProfile of the server at K=50
    python bench/closed_loop.py --systems metapuppet --scenarios k50 --repeat 3   # an A/B

What is measured. K mocked contacts (wechaty-puppet-mock, in a Node process) each send a
message to the bot, wait for its reply (the text reversed), send the next. Every scenario
starts with 2 warm-up round trips per contact; then either

- ``k1`` / ``k50``: a closed loop for ``--seconds`` with K=1 / K=``--contacts``; only replies
  inside the window count (msgs/s = replies in the window / window length), or
- ``burst``: ``--burst`` messages (2,000) said at once by the K contacts (all queued in the
  same instant); msgs/s = all of them / (last reply - first send).

Scenarios run in that order in one server process, so its bounded caches (dedupe ids, the
dashboard's feed) fill as the run goes: the RSS of a later row includes what earlier rows
left (``python_rss_start_mb`` says where a row started); run one scenario alone for a
fresh-process figure.

The loop is one JavaScript text, ``closed_loop_driver.js``, run inside the Node process
that holds the mock, so a round trip is timed in Node: from the contact's ``say`` to the
reply appearing in that contact's chat (the mock's own message event on the listener), and
the Python side of the bench does no work per message. Each ``say`` is made from a
macrotask of its own (``setImmediate``; the burst queues all of them at the same instant),
as a message arriving from the network would be; a bot that answers in Node could otherwise
run the whole loop as one chain of microtasks and starve timers and I/O until it ends.
Before each measurement every process of every system must be idle (at most 0.1 of a core
over 0.2 s; ``settle_s`` says how long that took), so no backlog of one measurement runs
into the next. Systems, each on its own mock:

- ``metapuppet``: the real Node client on the mock (``MetaPuppet.testing.mock_wechat``), the
  MetaPuppet server in this process, a robot whose routed handler returns the reversed text.
- ``ceiling``: the same Node client, answered in Node by a ``bot.on('message')`` handler a
  snippet installs (the issue's "mock's own ceiling"). The client still forwards every event
  (the contact's message and the bot's echo) to the server, which acknowledges and ignores
  them, and that work shares the Node event loop with the loop: this ceiling rises when
  forwarding gets cheaper, so read it together with ``bare``.
- ``bare``: the ceiling without MetaPuppet at all (``mock_peer.mjs ceiling``: Wechaty, the mock
  and the same handler in a plain Node process): what the mock and Wechaty can do.
- ``sdk`` (``--sdk``): python-wechaty 0.10.7 (the official Python SDK) logged in over gRPC to
  the same mock served by ``wechaty-puppet-service``'s ``PuppetServer`` (``mock_peer.mjs grpc``,
  TLS off, explicit endpoint), answering through ``Message.say`` (``sdk_bot.py``). It runs in
  a venv of its own, built once under ``bench/.cache/`` (git-ignored), never a project
  dependency. python-wechaty 0.10.7 does not import on Python >= 3.11 (a dataclass with a
  mutable default, ``WechatyOptions.puppet_options``, is a ValueError there), so that venv
  needs Python 3.8-3.10: ``--sdk-python``, or one found on PATH or under ~/.pyenv. It also
  needs ``pyee<9`` (it imports ``AsyncIOEventEmitter``) and ``urllib3<2`` (``get_host``);
  the versions are pinned in ``SDK_REQUIREMENTS``.

In every system the mock's ``messageSendText`` returns the new message's id, as a real
puppet's does (the driver installs that once per process; see the driver's comment): without
it python-wechaty requests message '' and logs an error per reply.

Per scenario and system: msgs/s; p50/p90/p99/max latency; CPU ms per answered message of
the Python process (the MetaPuppet server is this process; for the SDK the python-wechaty
process) and of the Node process (the one holding the mock; its process group); the
Python RSS at the end and its peak during the scenario (VmHWM, reset before each scenario
through /proc/<pid>/clear_refs); Socket.IO packets (and bytes) per answered message each
way, counted on the Python side; the load average, the machine's CPU busy fraction and the
CPU seconds other processes used during the measurement. CPU and frames are divided by every
reply the measured call saw (the window plus the at most K replies in flight at its end).

What runs in this process besides the server: one pending ``exec`` (the driver) per
measurement, the packet counter (a wrapped call per packet, about 1 us each, some 2 % of
the server's CPU per message today; ``--no-frames`` turns it off) and, between
measurements, reading the peers' pipes. The test kit's event listener
(which keeps every event and every reply) is detached once the bot is up, so it costs the
server nothing. The machine is usually shared: compare ratios measured in one run (with
``--repeat N`` every figure is the run with the median msgs/s and each ratio the median of
side-by-side runs); the ``others`` column says how much other work ran.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import glob
import json
import os
import pstats
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _measure import cpu_seconds, percentile

from MetaPuppet import Message, RobotBase
from MetaPuppet._loop import run as run_on_loop
from MetaPuppet.testing import MockWechat, find_client_dir, mock_wechat

__all__ = ["SDK_REQUIREMENTS", "main", "run"]

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CACHE = BENCH / ".cache"
DRIVER = (BENCH / "closed_loop_driver.js").read_text(encoding="utf-8")
PEER = BENCH / "mock_peer.mjs"
SDK_BOT = BENCH / "sdk_bot.py"

#: python-wechaty 0.10.7 and the versions it was released against (see the docstring)
SDK_REQUIREMENTS = [
    "wechaty==0.10.7",
    "wechaty-puppet==0.4.23",
    "wechaty-puppet-service==0.8.10",
    "wechaty-grpc==0.20.19",
    "grpclib==0.4.9",
    "betterproto==1.2.5",
    "pyee==8.2.2",
    "urllib3==1.26.20",
]

SDK_PYTHONS = ("3.8", "3.9", "3.10")

SYSTEMS = ("metapuppet", "ceiling", "bare", "sdk")
SCENARIOS = ("k1", "k50", "burst")
WARMUP_ROUNDS = 2
GRACE_MS = 10_000  # a message unanswered this long after its window is reported lost

# Installed in the MetaPuppet Node client for the ``ceiling`` system: answers ``ce:`` texts in
# Node (the robot in Python only answers ``cl:``). Removed by CEILING_OFF.
CEILING_ON = """
const reverse = (text) => text.split('').reverse().join('')
const handler = async (message) => {
  if (message.self()) return
  const text = message.text()
  if (!text.startsWith('ce:')) return
  await message.say(reverse(text))
}
globalThis.__benchCeiling = handler
bot.on('message', handler)
return true
"""
CEILING_OFF = """
if (globalThis.__benchCeiling) bot.off('message', globalThis.__benchCeiling)
globalThis.__benchCeiling = undefined
return true
"""


class BenchError(RuntimeError):
    """The benchmark could not run a system (the message says which and why)."""


# --------------------------------------------------------------------------- process metrics


def _proc_stat_fields(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds of every live process in process group ``pgid`` plus their reaped children.

    The Node processes are started as group leaders, so this covers the process, its
    threads and any child it spawned (esbuild's service, say).
    """
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = _proc_stat_fields(int(entry.name))
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:  # state, ppid, pgrp, ...
            total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / tick


def process_cpu(pid: int) -> float:
    """CPU seconds of this process, or of the process group another pid leads."""
    return cpu_seconds(pid) if pid == os.getpid() else group_cpu_seconds(pid)


def status_kb(pid: int, key: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM), or None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return total - idle, total


def cpu_pressure_us() -> int | None:
    """Microseconds some runnable task waited for a CPU, machine-wide (Linux PSI), or None."""
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return int(some.rsplit("total=", 1)[1])
    except (OSError, IndexError, ValueError):
        return None


async def settle(
    pids: list[int], *, idle: float = 0.1, step: float = 0.2, timeout: float = 30.0
) -> float:
    """Wait until every process in ``pids`` (process groups) uses less than ``idle`` of a core
    over ``step`` seconds, so that no backlog of the previous measurement runs into the next;
    returns the seconds waited (``timeout`` at most)."""
    started = time.perf_counter()
    while True:
        before = [process_cpu(pid) for pid in pids]
        await asyncio.sleep(step)
        used = [process_cpu(pid) - b for pid, b in zip(pids, before, strict=True)]
        waited = time.perf_counter() - started
        if max(used, default=0.0) < idle * step or waited >= timeout:
            return waited


def node_warnings(path: Path, keep: int = 5) -> dict[str, Any]:
    """How many warning or error lines the Node client logged in the run, and the last few."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return {"count": None, "last": []}
    bad = [line[:300] for line in lines if " WARN " in line or " ERROR " in line]
    return {"count": len(bad), "last": bad[-keep:]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --------------------------------------------------------------------------- frame counting


class FrameCounter:
    """Counts Socket.IO packets and bytes through an Engine.IO server, both ways.

    Wraps, at run time, the two places every packet passes: ``eio.send`` (each encoded
    Socket.IO packet and each binary attachment goes out through it) and
    ``eio._trigger_event('message', sid, data)`` (each one comes in through it; python-engineio
    4.x internals, checked against 4.15). Engine.IO pings are not counted. A
    proper hook would be a counter in ``MetaPuppet.transport`` (``SocketTransport.stats``:
    packets and bytes by direction and kind), bumped where the transport already handles each
    frame, so the bench and the dashboard could read it without patching.
    """

    def __init__(self, eio: Any) -> None:
        self.eio = eio
        self.packets: dict[str, int] = {}
        self.bytes: dict[str, int] = {}
        self._undo: list[Callable[[], None]] = []

    def install(self) -> None:
        # Plain functions handing back the original coroutine (no extra coroutine frame per
        # packet) and plain dicts: about a microsecond per packet.
        eio, packets, sizes = self.eio, self.packets, self.bytes
        original_send = eio.send
        original_trigger = eio._trigger_event

        def send(sid: str, data: Any) -> Awaitable[Any]:
            kind = "out:" + packet_kind(data)
            packets[kind] = packets.get(kind, 0) + 1
            sizes[kind] = sizes.get(kind, 0) + len(data)
            return original_send(sid, data)  # type: ignore[no-any-return]

        def trigger(event: str, *args: Any, **kwargs: Any) -> Awaitable[Any]:
            if event == "message" and len(args) == 2:
                data = args[1]
                kind = "in:" + packet_kind(data)
                packets[kind] = packets.get(kind, 0) + 1
                sizes[kind] = sizes.get(kind, 0) + len(data)
            return original_trigger(event, *args, **kwargs)  # type: ignore[no-any-return]

        eio.send = send
        eio._trigger_event = trigger

        def undo() -> None:
            del eio.send  # back to the class's methods
            del eio._trigger_event

        self._undo.append(undo)

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def snapshot(self) -> tuple[Counter[str], Counter[str]]:
        return Counter(self.packets), Counter(self.bytes)


_KINDS = {"3": "ack", "5": "binary_event", "6": "binary_ack", "0": "connect", "1": "disconnect"}


def packet_kind(data: Any) -> str:
    """``event:<name>``, ``ack``, ``binary_event`` ... for one encoded Socket.IO packet."""
    if type(data) is not str:
        return "attachment"
    if data[:1] == "2":
        start = data.find('["')
        end = data.find('"', start + 2)
        return "event:" + data[start + 2 : end] if start >= 0 and end > 0 else "event"
    return _KINDS.get(data[:1], "other")


# --------------------------------------------------------------------------- the systems


class Reverser(RobotBase):
    """Answers ``cl:...`` with the text reversed through a routed handler; nothing else."""

    async def on_message(self, message: Message) -> Any:
        return None


def make_robot() -> Reverser:
    robot = Reverser()

    @robot.router.on_message(regex=r"^cl:")
    async def reverse(message: Message) -> str:
        return message.text[::-1]

    return robot


@dataclass
class System:
    """One system under test: where its loop runs and which processes to measure."""

    name: str
    description: str
    ids: list[str]
    user_id: str
    node_pid: int
    #: the Python process doing the bot's work, if any (this process for MetaPuppet)
    python_pid: int | None
    run: Callable[[dict[str, Any], float], Awaitable[dict[str, Any]]]
    prefix: str = "cl"
    frames: FrameCounter | None = None
    notes: list[str] = field(default_factory=list)


class Peer:
    """A ``mock_peer.mjs`` process: JSON lines in and out."""

    def __init__(self, role: str, contacts: int, log_path: Path, extra: list[str]) -> None:
        self.role = role
        self.contacts = contacts
        self.log_path = log_path
        self.extra = extra
        self.process: asyncio.subprocess.Process | None = None
        self.ready: dict[str, Any] = {}
        self.logged_in = asyncio.Event()
        self._next_id = 0
        self._lock = asyncio.Lock()

    async def start(self, timeout: float = 60.0) -> None:
        node = shutil.which("node")
        if node is None:
            raise BenchError("node is not on PATH")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                node,
                str(PEER),
                self.role,
                str(find_client_dir()),
                str(self.contacts),
                *self.extra,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                start_new_session=True,
                limit=64 * 1024 * 1024,  # one line holds every latency of a window
            )
        try:
            async with asyncio.timeout(timeout):
                while not self.ready:
                    self._note(await self._line())
        except TimeoutError:
            raise BenchError(f"mock_peer.mjs {self.role} not ready in {timeout:.0f} s") from None

    def _note(self, message: dict[str, Any]) -> None:
        if message.get("event") == "ready":
            self.ready = message
        elif message.get("event") == "login":
            self.logged_in.set()

    async def _line(self) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise BenchError(f"mock_peer.mjs {self.role} exited; its log ends with:\n{tail}")
        message: dict[str, Any] = json.loads(line)
        return message

    async def wait_login(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not self.logged_in.is_set():
                    self._note(await self._line())
        except TimeoutError:
            raise BenchError(
                f"the {self.role} mock user did not log in in {timeout:.0f} s"
            ) from None

    async def run(self, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin is not None
        async with self._lock:
            self._next_id += 1
            request_id = self._next_id
            self.process.stdin.write(
                (json.dumps({"id": request_id, "op": "run", "args": args}) + "\n").encode()
            )
            await self.process.stdin.drain()
            async with asyncio.timeout(timeout):
                while True:
                    answer = await self._line()
                    if answer.get("id") == request_id:
                        break
                    self._note(answer)
        if not answer.get("ok"):
            raise BenchError(f"the driver failed in mock_peer.mjs {self.role}: {answer}")
        result: dict[str, Any] = answer["result"]
        return result

    async def stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


# --------------------------------------------------------------------------- the SDK venv


def python_version(python: str) -> str | None:
    """``3.10`` for a Python that runs, else None (pyenv shims of inactive versions fail)."""
    try:
        done = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def find_sdk_python(explicit: str | None) -> str:
    """A Python 3.8-3.10 for the SDK venv (python-wechaty 0.10.7 does not import on 3.11)."""
    if explicit:
        return explicit
    candidates = [shutil.which(f"python3.{minor}") for minor in (10, 9, 8)]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for minor in (10, 9, 8):
        candidates += sorted(glob.glob(str(pyenv / f"3.{minor}.*" / "bin" / "python3")))
    for candidate in candidates:
        if candidate and python_version(candidate) in SDK_PYTHONS:
            return candidate
    raise BenchError(
        "--sdk needs a Python 3.8-3.10 for python-wechaty 0.10.7 (it fails to import on "
        "3.11+: WechatyOptions has a mutable dataclass default); none found on PATH or under "
        "~/.pyenv; pass --sdk-python /path/to/python3.10"
    )


def ensure_sdk_venv(python: str) -> Path:
    """The SDK venv under bench/.cache/ (built once); returns its python."""
    version = python_version(python)
    if version not in SDK_PYTHONS:
        raise BenchError(
            f"{python} is not a working Python 3.8-3.10 ({version or 'it does not run'}); "
            "python-wechaty 0.10.7 needs one"
        )
    venv = CACHE / f"sdk-venv-py{version}"
    marker = venv / ".bench-requirements"
    wanted = "\n".join(SDK_REQUIREMENTS)
    if marker.is_file() and marker.read_text() == wanted:
        return venv / "bin" / "python"
    shutil.rmtree(venv, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"building the SDK venv {venv} (once) ...", file=sys.stderr)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]
    done = subprocess.run([*pip, *SDK_REQUIREMENTS], capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(
            f"pip could not install {' '.join(SDK_REQUIREMENTS)}:\n{done.stderr[-2000:]}"
        )
    check = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import wechaty"], capture_output=True, text=True
    )
    if check.returncode != 0:
        raise BenchError(
            f"python-wechaty 0.10.7 does not import in {venv}:\n{check.stderr[-2000:]}"
        )
    marker.write_text(wanted)
    return venv / "bin" / "python"


class SdkBot:
    """The python-wechaty process (``sdk_bot.py``) logged in to a ``mock_peer.mjs grpc``."""

    def __init__(self, python: Path, endpoint: str, token: str, log_path: Path) -> None:
        self.python = python
        self.endpoint = endpoint
        self.token = token
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WECHATY_", "PYTHON"))}
        env["WECHATY_LOG"] = "warn"  # as quiet as the MetaPuppet side
        # python-wechaty writes its scheduler's job store (.wechaty/job.db) into the cwd
        workdir = CACHE / "sdk-run"
        workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                str(self.python),
                str(SDK_BOT),
                self.endpoint,
                self.token,
                str(free_port()),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=env,
                cwd=workdir,
                start_new_session=True,
            )
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = await self.process.stdout.readline()
                    if not line:
                        tail = self.log_path.read_text(errors="replace")[-2000:]
                        raise BenchError(f"sdk_bot.py exited; its log ends with:\n{tail}")
                    if json.loads(line).get("event") == "login":
                        return
        except TimeoutError:
            raise BenchError(f"the python-wechaty bot did not log in in {timeout:.0f} s") from None

    async def stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


# --------------------------------------------------------------------------- measuring


@dataclass
class Options:
    seconds: float = 20.0
    contacts: int = 50
    burst: int = 2000
    systems: tuple[str, ...] = ("metapuppet", "ceiling", "bare")
    scenarios: tuple[str, ...] = SCENARIOS
    frames: bool = True
    profile: bool = False
    sdk_python: str | None = None
    quick: bool = False
    repeat: int = 1
    event_loop: str = "asyncio"


def scenario_args(system: System, scenario: str, options: Options, tag: str) -> dict[str, Any]:
    ids = system.ids[:1] if scenario == "k1" else system.ids[: options.contacts]
    base: dict[str, Any] = {
        "ids": ids,
        "userId": system.user_id,
        "tag": tag,
        "prefix": system.prefix,
        "grace_ms": GRACE_MS,
    }
    if scenario == "burst":
        per = max(1, options.burst // len(ids))
        return base | {"mode": "burst", "per": per, "timeout_ms": 60_000}
    return base | {"mode": "window", "seconds": options.seconds}


def call_timeout(args: dict[str, Any]) -> float:
    if args["mode"] == "window":
        return float(args["seconds"]) + GRACE_MS / 1000 + 30
    return float(args.get("timeout_ms", 60_000)) / 1000 + 30


async def measure(
    system: System,
    scenario: str,
    options: Options,
    serial: int,
    quiet: list[int],
    profiler: cProfile.Profile | None = None,
) -> dict[str, Any]:
    """Warm up, then one measured call of the driver on ``system``; the figures as a dict."""
    tag = f"{scenario}{serial}"
    args = scenario_args(system, scenario, options, tag)
    warm = {k: v for k, v in args.items() if k not in ("seconds", "per")}
    warm |= {"mode": "rounds", "rounds": WARMUP_ROUNDS, "tag": f"w{tag}", "timeout_ms": 30_000}
    warmed = await system.run(warm, call_timeout(warm))
    if warmed["lost"]:
        raise BenchError(f"{system.name}: {warmed['lost']} warm-up messages were never answered")

    python_pid = system.python_pid
    if python_pid == os.getpid():
        gc.collect()
    settled = await settle(quiet, step=0.1 if options.quick else 0.2)
    peak_reset = python_pid is not None and reset_peak_rss(python_pid)
    rss_start = status_kb(python_pid, "VmRSS") if python_pid else None
    load_start = os.getloadavg()
    busy0, total0 = machine_jiffies()
    pressure0 = cpu_pressure_us()
    frames0 = system.frames.snapshot() if system.frames else None
    py0 = cpu_seconds(python_pid) if python_pid is not None else 0.0
    node0 = group_cpu_seconds(system.node_pid)
    wall = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    result = await system.run(args, call_timeout(args))
    if profiler is not None:
        profiler.disable()
    wall = time.perf_counter() - wall
    node_cpu = group_cpu_seconds(system.node_pid) - node0
    py_cpu = cpu_seconds(python_pid) - py0 if python_pid is not None else None
    busy1, total1 = machine_jiffies()
    pressure1 = cpu_pressure_us()
    load_end = os.getloadavg()

    answered, late, lost = result["answered"], result["late"], result["lost"]
    replies = answered + late
    window_s = result["window_ms"] / 1000
    latencies = sorted(us / 1000 for us in result["latencies_us"])
    tick = os.sysconf("SC_CLK_TCK")
    machine_cpu = (busy1 - busy0) / tick
    ours = node_cpu + (py_cpu or 0.0)  # this process, idle while a peer runs, counts as other
    row: dict[str, Any] = {
        "contacts": len(args["ids"]),
        "answered": answered,
        "late": late,
        "lost": lost,
        "window_s": round(window_s, 3),
        "msgs_per_s": answered / window_s if window_s > 0 else 0.0,
        "p50_ms": percentile(latencies, 0.50),
        "p90_ms": percentile(latencies, 0.90),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": latencies[-1] if latencies else float("nan"),
        "python_cpu_ms_per_msg": py_cpu * 1000 / replies
        if py_cpu is not None and replies
        else None,
        "node_cpu_ms_per_msg": node_cpu * 1000 / replies if replies else None,
        "python_busy": py_cpu / wall if py_cpu is not None else None,
        "node_busy": node_cpu / wall,
        "python_rss_start_mb": _mb(rss_start),
        "python_rss_mb": _mb(status_kb(python_pid, "VmRSS")) if python_pid else None,
        "python_peak_rss_mb": _mb(status_kb(python_pid, "VmHWM")) if python_pid else None,
        "peak_is_scenario": peak_reset,
        "wall_s": round(wall, 3),
        "settle_s": round(settled, 2),
        "load_start": [round(x, 2) for x in load_start],
        "load_end": [round(x, 2) for x in load_end],
        "machine_busy": (busy1 - busy0) / max(1, total1 - total0),
        "others_cpu_s": max(0.0, machine_cpu - ours),
        "cpu_pressure": (pressure1 - pressure0) / 1e6 / wall
        if pressure0 is not None and pressure1 is not None
        else None,
    }
    if system.frames is not None and frames0 is not None:
        packets1, bytes1 = system.frames.snapshot()
        packets = packets1 - frames0[0]
        sizes = bytes1 - frames0[1]
        row["frames_in_per_msg"] = _per(
            sum(v for k, v in packets.items() if k.startswith("in:")), replies
        )
        row["frames_out_per_msg"] = _per(
            sum(v for k, v in packets.items() if k.startswith("out:")), replies
        )
        row["bytes_in_per_msg"] = _per(
            sum(v for k, v in sizes.items() if k.startswith("in:")), replies
        )
        row["bytes_out_per_msg"] = _per(
            sum(v for k, v in sizes.items() if k.startswith("out:")), replies
        )
        row["frames_by_kind_per_msg"] = {
            k: round(v / replies, 3) for k, v in sorted(packets.items()) if replies
        }
    if lost:
        row["error"] = f"{lost} messages were never answered ({GRACE_MS} ms after the window)"
    return row


def _mb(kb: int | None) -> float | None:
    return None if kb is None else round(kb / 1024, 1)


def _per(total: float, replies: int) -> float | None:
    return round(total / replies, 3) if replies else None


# --------------------------------------------------------------------------- the run


@contextlib.contextmanager
def _detached_kit_listener(wx: MockWechat) -> Iterator[None]:
    """Stop the kit from recording every event (unbounded lists and reply queues)."""
    with wx.not_recording():
        yield


async def run(options: Options) -> dict[str, Any]:
    logs = CACHE / "logs"
    report: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "seconds": options.seconds,
            "contacts": options.contacts,
            "burst": options.burst,
            "warmup_round_trips_per_contact": WARMUP_ROUNDS,
            "repeat": options.repeat,
            "systems": list(options.systems),
            "scenarios": list(options.scenarios),
            "frames_counted": options.frames,
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "node": subprocess.run(
                ["node", "--version"], capture_output=True, text=True
            ).stdout.strip(),
            "load_start": [round(x, 2) for x in os.getloadavg()],
            "python_process": (
                "the MetaPuppet server runs in this process; during a measurement it also holds "
                "one pending exec (the driver)"
                + (" and counts packets (two wrapped calls per packet)" if options.frames else "")
                + "; the test kit's event listener is detached; contacts and timing are in Node"
            ),
        },
        "results": {},
    }
    peers: list[Peer] = []
    sdk_bot: SdkBot | None = None
    systems: dict[str, System] = {}
    errors: dict[str, str] = {}

    async def start_bare() -> None:
        peer = Peer("ceiling", options.contacts, logs / "bare-peer.log", [])
        peers.append(peer)
        await peer.start()
        await peer.wait_login(30)
        systems["bare"] = System(
            name="bare",
            description="Wechaty + mock answering in Node, no MetaPuppet",
            ids=peer.ready["ids"],
            user_id=peer.ready["userId"],
            node_pid=peer.ready["pid"],
            python_pid=None,
            run=peer.run,
        )

    async def start_sdk() -> None:
        nonlocal sdk_bot
        python = await asyncio.to_thread(ensure_sdk_venv, find_sdk_python(options.sdk_python))
        port, token = free_port(), f"insecure_bench_{secrets.token_hex(8)}"
        peer = Peer("grpc", options.contacts, logs / "sdk-peer.log", [str(port), token])
        peers.append(peer)
        await peer.start()
        sdk_bot = SdkBot(python, f"127.0.0.1:{port}", token, logs / "sdk-bot.log")
        await sdk_bot.start(timeout=60)
        await peer.wait_login(30)
        assert sdk_bot.process is not None
        systems["sdk"] = System(
            name="sdk",
            description="python-wechaty 0.10.7 over gRPC puppet-service, same mock",
            ids=peer.ready["ids"],
            user_id=peer.ready["userId"],
            node_pid=peer.ready["pid"],
            python_pid=sdk_bot.process.pid,
            run=peer.run,
        )

    async def guarded(name: str, start: Callable[[], Awaitable[None]]) -> None:
        try:
            await start()
        except (BenchError, OSError, subprocess.CalledProcessError) as exc:
            errors[name] = str(exc)

    side_starts = []
    if "bare" in options.systems:
        side_starts.append(guarded("bare", start_bare))
    if "sdk" in options.systems:
        side_starts.append(guarded("sdk", start_sdk))
    side = asyncio.gather(*side_starts)
    try:
        async with mock_wechat(make_robot(), bots=["bench"]) as wx:
            await side
            bot = wx.bot()
            assert bot.node is not None and bot.node.process is not None
            with _detached_kit_listener(wx):
                ids = [
                    str(await bot.exec("return mock.contact(args.name)", {"name": f"Contact {i}"}))
                    for i in range(options.contacts)
                ]

                async def client_run(args: dict[str, Any], timeout: float) -> dict[str, Any]:
                    result: dict[str, Any] = await bot.exec(DRIVER, args, timeout=timeout)
                    return result

                frames = FrameCounter(wx.server.transport.sio.eio) if options.frames else None
                for name, description, prefix in (
                    ("metapuppet", "MetaPuppet: Node client -> Python server -> robot", "cl"),
                    ("ceiling", "MetaPuppet's Node client answering in Node", "ce"),
                ):
                    if name in options.systems:
                        systems[name] = System(
                            name=name,
                            description=description,
                            ids=ids,
                            user_id=bot.user_id,
                            node_pid=bot.node.process.pid,
                            python_pid=os.getpid(),
                            run=client_run,
                            prefix=prefix,
                            frames=frames,
                        )
                if frames is not None:
                    frames.install()
                try:
                    await _run_all(bot, systems, options, report)
                finally:
                    if frames is not None:
                        frames.uninstall()
                    report["meta"]["node_client_warnings"] = node_warnings(bot.node.log_path)
    finally:
        side.cancel()
        with contextlib.suppress(BaseException):
            await side
        if sdk_bot is not None:
            await sdk_bot.stop()
        for peer in peers:
            await peer.stop()
    report["meta"]["load_end"] = [round(x, 2) for x in os.getloadavg()]
    report["meta"]["descriptions"] = {name: s.description for name, s in systems.items()}
    if errors:
        report["errors"] = errors
    report.setdefault("ratios", {})
    return report


async def _run_all(
    bot: Any, systems: dict[str, System], options: Options, report: dict[str, Any]
) -> None:
    """Every scenario on every system, ``repeat`` times, interleaved so that the systems
    compared share the machine's state; each figure is the run with the median msgs/s."""
    serial = 0
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    # before each measurement, every process of every system must be idle
    quiet = sorted(
        {s.node_pid for s in systems.values()}
        | {s.python_pid for s in systems.values() if s.python_pid is not None}
    )
    for _ in range(options.repeat):
        for scenario in options.scenarios:
            for name in SYSTEMS:
                system = systems.get(name)
                if system is None:
                    continue
                serial += 1
                if name == "ceiling":
                    await bot.exec(CEILING_ON)
                try:
                    row = await measure(system, scenario, options, serial, quiet)
                finally:
                    if name == "ceiling":
                        await bot.exec(CEILING_OFF)
                runs.setdefault(name, {}).setdefault(scenario, []).append(row)
    for name, by_scenario in runs.items():
        for scenario, rows in by_scenario.items():
            ordered = sorted(rows, key=lambda r: float(r["msgs_per_s"]))
            chosen = dict(ordered[(len(ordered) - 1) // 2])
            if len(rows) > 1:
                chosen["msgs_per_s_runs"] = [round(r["msgs_per_s"], 1) for r in rows]
                chosen["p99_ms_runs"] = [round(r["p99_ms"], 2) for r in rows]
            errors = [r["error"] for r in rows if "error" in r]
            if errors:
                chosen["error"] = "; ".join(errors)
            report["results"].setdefault(name, {})[scenario] = chosen
    report["ratios"] = ratios(runs)
    if options.profile and "metapuppet" in systems:
        # cProfile's default (wall-clock) timer: a CPU-time timer is a system call per event
        # and slowed the server five-fold. On a busy machine, time a call spends preempted
        # (socket sends above all) shows as its self time: read "others" with the profile.
        system = systems["metapuppet"]
        if system.frames is not None:
            system.frames.uninstall()  # the profile shows the server alone
        profiled = System(**{**system.__dict__, "frames": None})
        profiler = cProfile.Profile()
        row = await measure(profiled, "k50", options, serial + 1, quiet, profiler)
        report["profile"] = {
            "note": f"an extra K={options.contacts} window under cProfile, wall-clock timer",
            "msgs_per_s": row["msgs_per_s"],
            "machine_busy": row["machine_busy"],
            "others_cpu_s": row["others_cpu_s"],
            **profile_summary(pstats.Stats(profiler)),
        }


def ratios(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, Any]]:
    """MetaPuppet's msgs/s over each other system's, per scenario: the median of the ratios of
    runs made side by side (repetition i of one against repetition i of the other)."""
    out: dict[str, dict[str, Any]] = {}
    ours = runs.get("metapuppet", {})
    for other in ("ceiling", "bare", "sdk"):
        for scenario, rows in runs.get(other, {}).items():
            pairs = [
                a["msgs_per_s"] / b["msgs_per_s"]
                for a, b in zip(ours.get(scenario, []), rows, strict=False)
                if b["msgs_per_s"]
            ]
            if pairs:
                out.setdefault(f"metapuppet_over_{other}", {})[scenario] = round(
                    statistics.median(pairs), 3
                )
    return out


def profile_summary(stats: pstats.Stats, top: int = 20) -> dict[str, Any]:
    """Self time by package (stdlib modules, site-packages, MetaPuppet, C) and by function."""
    stdlib = sysconfig.get_paths()["stdlib"]
    site = sysconfig.get_paths()["purelib"]
    by_package: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, line, function), (_, _, tottime, _, _) in raw.items():
        if filename == "~":
            package = "C builtins"
            label = function
        else:
            path = os.path.abspath(filename)
            if path.startswith(site):
                package = Path(path).relative_to(site).parts[0]
            elif path.startswith(str(ROOT / "MetaPuppet")):
                package = "MetaPuppet"
            elif path.startswith(stdlib):
                parts = Path(path).relative_to(stdlib).parts
                package = parts[0].removesuffix(".py")
            else:
                package = Path(path).name
            label = f"{function} ({Path(filename).name}:{line})"
        by_package[package] += tottime
        by_function[label] += tottime
    total = sum(by_package.values()) or 1.0
    return {
        "total_s": round(total, 3),
        "by_package": [[name, round(t / total, 3)] for name, t in by_package.most_common(12)],
        "by_function": [[name, round(t / total, 3)] for name, t in by_function.most_common(top)],
    }


# --------------------------------------------------------------------------- output


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return format(value, spec)


def print_table(report: dict[str, Any]) -> None:
    meta = report["meta"]
    print(
        f"closed loop: {meta['seconds']:g} s windows, K=1 and K={meta['contacts']}, burst "
        f"{meta['burst']}; load {meta['load_start']} -> {meta['load_end']} "
        f"({meta['cpus']} CPUs)"
    )
    header = (
        f"{'system':<11}{'scen':<6}{'msgs/s':>8}{'p50':>8}{'p90':>8}{'p99':>8}{'max':>8}"
        f"{'py ms':>7}{'node ms':>8}{'rss':>6}{'peak':>6}{'in/msg':>7}{'out/msg':>8}"
        f"{'busy':>6}{'others':>7}{'load':>6}"
    )
    print(header)
    for name in SYSTEMS:
        for scenario, row in report["results"].get(name, {}).items():
            print(
                f"{name:<11}{scenario:<6}{_fmt(row['msgs_per_s'], '.0f'):>8}"
                f"{_fmt(row['p50_ms'], '.2f'):>8}{_fmt(row['p90_ms'], '.2f'):>8}"
                f"{_fmt(row['p99_ms'], '.2f'):>8}{_fmt(row['max_ms'], '.1f'):>8}"
                f"{_fmt(row['python_cpu_ms_per_msg'], '.3f'):>7}"
                f"{_fmt(row['node_cpu_ms_per_msg'], '.3f'):>8}"
                f"{_fmt(row['python_rss_mb'], '.0f'):>6}{_fmt(row['python_peak_rss_mb'], '.0f'):>6}"
                f"{_fmt(row.get('frames_in_per_msg'), '.2f'):>7}"
                f"{_fmt(row.get('frames_out_per_msg'), '.2f'):>8}"
                f"{_fmt(row['machine_busy'], '.0%'):>6}{_fmt(row['others_cpu_s'], '.1f'):>7}"
                f"{_fmt(row['load_end'][0], '.1f'):>6}"
                + (f"  {row['error']}" if "error" in row else "")
            )
    print(
        "latency ms from the contact's say to the reply in its chat (timed in Node); py/node ms:"
        " CPU per answered message; rss/peak: Python MB; in/out: Socket.IO packets per message"
        " (Python side); busy: the machine; others: CPU s used by other processes; load: 1-min"
        " load average at the end"
    )
    for key, by_scenario in report.get("ratios", {}).items():
        shown = ", ".join(f"{s} {v:.2f}x" for s, v in by_scenario.items())
        print(f"{key.replace('_', ' ')}: {shown}")
    row = report["results"].get("metapuppet", {}).get("k50")
    if row and row.get("frames_by_kind_per_msg"):
        kinds = ", ".join(f"{k} {v:g}" for k, v in row["frames_by_kind_per_msg"].items())
        print(f"metapuppet k50 packets per message by kind: {kinds}")
    for name, error in report.get("errors", {}).items():
        print(f"{name}: NOT MEASURED: {error}")
    if "profile" in report:
        profile = report["profile"]
        print(
            f"\nPython server profile ({profile['note']}, {profile['msgs_per_s']:.0f} msg/s, "
            f"others {profile['others_cpu_s']:.1f} CPU s):"
        )
        print(
            "  self time by package: " + ", ".join(f"{n} {s:.0%}" for n, s in profile["by_package"])
        )
        for name, share in profile["by_function"]:
            print(f"  {share:6.1%}  {name}")


def parse_options(argv: list[str] | None) -> tuple[Options, bool]:
    assert __doc__ is not None
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seconds", type=float, default=20.0, help="window length (20)")
    parser.add_argument("--contacts", type=int, default=50, help="K of the many-contact loop (50)")
    parser.add_argument("--burst", type=int, default=2000, help="messages said at once (2000)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--sdk", action="store_true", help="also python-wechaty 0.10.7 over gRPC")
    parser.add_argument("--sdk-python", help="a Python 3.8-3.10 for the SDK venv")
    parser.add_argument(
        "--systems",
        help=f"comma-separated subset of {','.join(SYSTEMS)} (default: all but sdk; --sdk adds it)",
    )
    parser.add_argument(
        "--scenarios", help=f"comma-separated subset of {','.join(SCENARIOS)} (default: all)"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="run everything N times; report the median run"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the server at K=50")
    parser.add_argument("--no-frames", action="store_true", help="do not count Socket.IO packets")
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="asyncio",
        help="the server's event loop (default asyncio; auto: uvloop when installed)",
    )
    args = parser.parse_args(argv)
    options = Options(
        seconds=args.seconds,
        contacts=args.contacts,
        burst=args.burst,
        frames=not args.no_frames,
        event_loop=args.loop,
        profile=args.profile,
        sdk_python=args.sdk_python,
        quick=args.quick,
        repeat=args.repeat,
    )
    if args.quick:
        options.seconds = min(options.seconds, 0.3)
        options.burst = min(options.burst, 200)
    systems = (
        [s.strip() for s in args.systems.split(",")] if args.systems else list(options.systems)
    )
    if args.sdk and "sdk" not in systems:
        systems.append("sdk")
    scenarios = (
        [s.strip() for s in args.scenarios.split(",")] if args.scenarios else list(SCENARIOS)
    )
    unknown = sorted(set(systems) - set(SYSTEMS)) + sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown system or scenario: {', '.join(unknown)}")
    if options.seconds <= 0 or min(options.contacts, options.burst, options.repeat) < 1:
        parser.error("--seconds, --contacts, --burst and --repeat must be positive")
    options.systems = tuple(systems)
    options.scenarios = tuple(scenarios)
    return options, args.json


def main(argv: list[str] | None = None) -> int:
    options, as_json = parse_options(argv)
    report = run_on_loop(run(options), options.event_loop)
    report["meta"]["event_loop"] = options.event_loop
    if as_json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_table(report)
    failed = bool(report.get("errors")) or any(
        "error" in row for rows in report["results"].values() for row in rows.values()
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
