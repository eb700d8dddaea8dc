"""Scheduled jobs: the declarations, and runs across real restarts of the server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from MetaPuppet import Config, RobotBase, SweetSocketServer
from MetaPuppet.config import new_token
from MetaPuppet.jobs import JobSet, parse_interval, parse_time_of_day, standard_day_of_week
from MetaPuppet.scheduler import JobContext

from .chat_helpers import redis_url  # noqa: F401 - the fixture
from .conftest import free_port

# --------------------------------------------------------------------------- declarations


def test_intervals_and_times_of_day_parse_or_say_what_is_wrong():
    assert parse_interval("30s") == 30 and parse_interval("2h") == 7200
    assert parse_interval("1d") == 86400 and parse_interval(timedelta(minutes=5)) == 300
    with pytest.raises(ValueError, match="'30s', '5m'"):
        parse_interval("every day")
    with pytest.raises(ValueError, match="positive"):
        parse_interval(0)
    assert parse_time_of_day("08:30") == (8, 30, 0)
    with pytest.raises(ValueError, match="not a time of day"):
        parse_time_of_day("25:00")
    with pytest.raises(ValueError, match="whole days or weeks"):
        JobSet().every("1h", at="08:30")


def test_crontab_weekdays_count_from_sunday_as_in_cron():
    # APScheduler 3.x's from_crontab would read 1-5 as Tuesday to Saturday
    assert standard_day_of_week("1-5") == "mon,tue,wed,thu,fri"
    assert standard_day_of_week("0") == standard_day_of_week("7") == "sun"
    assert standard_day_of_week("*/2") == "sun,tue,thu,sat"
    assert standard_day_of_week("sat,sun") == "sun,sat"
    assert standard_day_of_week("5-7") == "sun,fri,sat"
    with pytest.raises(ValueError, match="not a day of the week"):
        standard_day_of_week("8")
    with pytest.raises(ValueError, match="5 fields"):
        JobSet().cron("0 9 * *")


def test_the_cron_trigger_fires_on_weekdays_at_nine():
    from MetaPuppet.jobs import JobSpec
    from MetaPuppet.scheduler import Scheduler

    trigger = Scheduler(None)._trigger(  # type: ignore[arg-type]
        JobSpec("x", print, "cron", cron="0 9 * * 1-5", timezone="UTC")
    )
    saturday = datetime.fromisoformat("2026-11-07T10:00:00+00:00")
    fire = trigger.get_next_fire_time(None, saturday)
    assert fire.isoformat() == "2026-11-09T09:00:00+00:00"  # Monday
    friday = datetime.fromisoformat("2026-11-06T09:30:00+00:00")
    assert trigger.get_next_fire_time(None, friday).isoformat() == "2026-11-09T09:00:00+00:00"


def remember(ctx: JobContext, path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.write(f"{text} {ctx.scheduled_for.timestamp()}\n")


async def test_a_one_off_job_runs_once_and_a_closure_is_refused(tmp_path: Path):
    robot = RobotBase()
    server = SweetSocketServer(
        robot=robot, config=Config(), token=new_token(), port=0, rate_limiter=None,
        data_dir=tmp_path,
    )  # fmt: skip
    with pytest.raises(ValueError, match="module-level function"):
        robot.schedule_once(1, lambda ctx: None)
    await server.start()
    try:
        log = tmp_path / "once.log"
        robot.schedule_once(0.3, remember, str(log), "done", id="reminder")
        assert [j["id"] for j in server.ops.jobs()] == ["reminder"]
        for _ in range(100):
            if log.exists():
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert log.read_text().split()[0] == "done" and len(log.read_text().splitlines()) == 1
        assert server.ops.jobs() == []  # a one-off job is gone once it ran
        assert [r["outcome"] for r in server.ops.runs()] == ["ok"]
        assert (tmp_path / "jobs.db").stat().st_mode & 0o777 == 0o600
    finally:
        await server.stop()


# --------------------------------------------------------------------------- restarts

JOB_BOT = textwrap.dedent(
    """
    import os
    import time

    from MetaPuppet import RobotBase

    bot = RobotBase()
    RUNS = os.environ["RUNS_FILE"]


    @bot.every("1s", missed=os.environ.get("MISSED", "once"))
    def tick(ctx):
        with open(RUNS, "a") as out:
            out.write(f"{ctx.scheduled_for.timestamp():.3f} {time.time():.3f}\\n")
    """
)


async def _serve(folder: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "MetaPuppet", "serve", "--bot", "jobbot.py:bot",
        "--config", "config.json", cwd=folder, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    while b"MetaPuppet serving" not in line:
        assert line, "the server exited before serving"
        line = await asyncio.wait_for(process.stdout.readline(), 30)
    return process


async def _stop(process: asyncio.subprocess.Process, *, kill: bool = False) -> None:
    if kill:
        process.kill()
    else:
        process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(process.communicate(), 30)


def _runs(path: Path) -> list[float]:
    return [float(line.split()[0]) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
async def test_every_second_runs_n_times_and_a_restart_neither_repeats_nor_drops(
    tmp_path: Path, stop: str
):
    (tmp_path / "jobbot.py").write_text(JOB_BOT)
    config = {"server": {"token": new_token(), "port": free_port(), "data_dir": "data"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    runs_file = tmp_path / "runs.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAPUPPET_")}
    env["RUNS_FILE"] = str(runs_file)

    server = await _serve(tmp_path, env)
    started = time.time()
    await asyncio.sleep(4.5)
    await _stop(server, kill=stop == "sigkill")
    stopped = time.time()
    first = _runs(runs_file)
    # every second: N runs in N seconds (the first one second after the job was added)
    assert 3 <= len(first) <= 5, first
    await asyncio.sleep(2.5)  # downtime: about two runs fall into it
    server = await _serve(tmp_path, env)
    restarted = time.time()
    await asyncio.sleep(3.2)
    await _stop(server)
    runs = _runs(runs_file)
    assert len(set(runs)) == len(runs), f"a run was repeated: {runs}"
    grid = [round(b - a, 2) for a, b in zip(runs, runs[1:], strict=False)]
    assert all(abs(step - round(step)) < 0.05 for step in grid), grid  # one 1-second grid
    before = [r for r in runs if r <= stopped]
    after = [r for r in runs if r > stopped]
    assert before == first and all(step == 1 for step in grid[: len(before) - 1])
    # the missed runs of the downtime were coalesced into exactly one catch-up run at start
    catch_up = [r for r in after if r < restarted]
    assert len(catch_up) == 1, (after, restarted)
    assert catch_up[0] > before[-1] + 1.5, "the catch-up run is the latest missed one"
    regular = [r for r in after if r >= restarted]
    assert len(regular) >= 2 and all(
        abs((b - a) - 1) < 0.05 for a, b in zip(regular, regular[1:], strict=False)
    )
    assert started < runs[0] < started + 3


def tick_skip(ctx: JobContext) -> None:
    with open(os.environ["SKIP_RUNS_FILE"], "a") as out:
        out.write(f"{ctx.scheduled_for.timestamp():.3f} {time.time():.3f}\n")


async def test_missed_skip_never_catches_up_after_downtime(tmp_path: Path, monkeypatch):
    runs_file = tmp_path / "runs.txt"
    monkeypatch.setenv("SKIP_RUNS_FILE", str(runs_file))

    def make() -> SweetSocketServer:
        robot = RobotBase()
        robot.every("1s", missed="skip", id="tick")(tick_skip)
        return SweetSocketServer(robot=robot, config=Config(), token=new_token(), port=0,
                                 rate_limiter=None, data_dir=tmp_path)  # fmt: skip

    server = make()
    await server.start()
    await asyncio.sleep(2.3)
    await server.stop()
    stopped = time.time()
    await asyncio.sleep(2.2)
    server = make()
    await server.start()
    restarted = time.time()
    try:
        missed = [r for r in server.ops.runs() if r["outcome"] == "missed"]
        assert len(missed) == 1 and stopped < missed[0]["scheduled_for"] < restarted
        await asyncio.sleep(2.2)
    finally:
        await server.stop()
    runs = _runs(runs_file)
    assert runs and len(set(runs)) == len(runs)
    assert not [r for r in runs if stopped < r < restarted - 0.05], runs  # nothing caught up
    assert [r for r in runs if r >= restarted - 0.05], "it runs on after the restart"


async def test_the_job_store_seam_takes_apscheduler_s_redis_store(redis_url, tmp_path: Path):  # noqa: F811
    """The seam a cluster would use: the same jobs in Redis survive a restart."""
    log = tmp_path / "redis.log"

    def make() -> tuple[SweetSocketServer, RobotBase]:
        config = Config()
        config.raw["schedule"] = {"store": redis_url}
        robot = RobotBase()
        server = SweetSocketServer(robot=robot, config=config, token=new_token(), port=0,
                                   rate_limiter=None)  # fmt: skip
        return server, robot

    server, robot = make()
    await server.start()
    robot.schedule_once(1.5, remember, str(log), "from-redis", id=f"redis-{tmp_path.name}")
    await server.stop()  # before it ran: it must be in Redis, not in this process
    assert not log.exists()
    server, robot = make()
    await server.start()
    try:
        for _ in range(100):
            if log.exists():
                break
            await asyncio.sleep(0.05)
        assert log.read_text().split()[0] == "from-redis"
    finally:
        await server.stop()
