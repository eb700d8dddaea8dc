"""The scheduler: runs the jobs robots and plugins declare, on APScheduler 3.x.

Why APScheduler 3.x: it is the maintained, widely used in-process scheduler (3.11.x
releases through 2026; 4.0 is still a pre-release that its authors say not to use in
production), it has cron, interval and calendar triggers, time zones, coalescing and
misfire grace built in, and its job-store seam takes SQLite here and Redis for a cluster.

How the pieces fit:

* every APScheduler job points at one module-level entry (:func:`job_entry`) with the
  job's metadata in its kwargs, and runs through :class:`_Executor`, which calls the
  declared function (or, for ``schedule_once``, the function named by reference) through
  the server's handler pool with a :class:`JobContext`;
* at start the stored schedule is reconciled with what the code declares: a job whose
  schedule is unchanged keeps its stored next run (a restart neither drops nor repeats
  it); a new or changed one is (re)added; a job no longer declared is removed;
* **missed runs** (downtime): ``missed="once"`` (default) runs a job once at start when
  its latest missed run is no older than ``grace_s`` (default 1 h), ``"skip"`` never
  catches up; several missed runs are always coalesced into one. Set them per job or in
  ``schedule: {missed, grace_s}`` of the config.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Protocol

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.executors.base import BaseExecutor
from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.calendarinterval import CalendarIntervalTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import obj_to_ref, ref_to_obj

from .errors import ConfigError
from .jobs import MISSED_POLICIES, JobSet, JobSpec, standard_day_of_week
from .jobstore import make_store

__all__ = ["HISTORY_SIZE", "JobContext", "Scheduler", "SchedulerHost", "job_entry"]

log = logging.getLogger("MetaPuppet.scheduler")

#: runs remembered for the dashboard and ``server.jobs()``
HISTORY_SIZE: Final = 200
DEFAULT_GRACE_S: Final = 3600.0
STORE_ALIAS: Final = "default"


class SchedulerHost(Protocol):
    """What the scheduler needs of the server: run user code, send proactively."""

    async def call_handler(self, handler: Callable[..., Any], *args: Any) -> Any: ...

    async def send_later(
        self,
        contact: Any,
        message: Any,
        *,
        expires: Any = None,
        bot: str | None = None,
        room: bool | None = None,
    ) -> Any: ...


@dataclass
class JobContext:
    """What a job function receives (if it takes a parameter)."""

    server: Any
    job_id: str
    #: the run this call is for (a catch-up run after downtime has the missed time)
    scheduled_for: datetime

    async def send_later(self, contact: Any, message: Any, **options: Any) -> Any:
        """``server.send_later``: delivered now if the channel allows, else queued."""
        return await self.server.send_later(contact, message, **options)

    def send_later_sync(self, contact: Any, message: Any, **options: Any) -> Any:
        """The same from a plain ``def`` job (it runs in the thread pool)."""
        return self.server.send_later_sync(contact, message, **options)


async def job_entry(**meta: Any) -> None:
    """The reference every stored job points at; jobs run through the scheduler's own
    executor, never through this function."""
    raise RuntimeError(f"job {meta.get('id')!r} must run through MetaPuppet's scheduler")


class _Executor(BaseExecutor):  # type: ignore[misc]  # APScheduler has no type hints
    """Runs due jobs on the server loop through :meth:`Scheduler.run_job` (APScheduler's
    extension point for executors is ``_do_submit_job``)."""

    def __init__(self, scheduler: Scheduler) -> None:
        super().__init__()
        self.owner = scheduler
        self.tasks: set[asyncio.Task[None]] = set()

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        task = asyncio.get_running_loop().create_task(self._run(job, run_times))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, job: Job, run_times: list[datetime]) -> None:
        events = []
        alias = STORE_ALIAS
        for run_time in run_times:
            late = (datetime.now(UTC) - run_time).total_seconds()
            grace = job.misfire_grace_time
            if grace is not None and late > grace:
                events.append(JobExecutionEvent(EVENT_JOB_MISSED, job.id, alias, run_time))
                continue
            try:
                await self.owner.run_job(job, run_time)
            except Exception as exc:  # noqa: BLE001 - a job's failure is recorded, not raised
                log.exception("job %r (scheduled for %s) failed", job.id, run_time)
                events.append(
                    JobExecutionEvent(EVENT_JOB_ERROR, job.id, alias, run_time, exception=exc)
                )
            else:
                events.append(JobExecutionEvent(EVENT_JOB_EXECUTED, job.id, alias, run_time))
        self._run_job_success(job.id, events)

    def shutdown(self, wait: bool = True) -> None:
        for task in self.tasks:
            task.cancel()


class Scheduler:
    """The server's scheduler (``server.scheduler``): the jobs of the robot and plugins."""

    def __init__(self, host: SchedulerHost, settings: dict[str, Any] | None = None) -> None:
        self.host = host
        settings = dict(settings or {})
        self.missed = str(settings.get("missed", "once"))
        if self.missed not in MISSED_POLICIES:
            raise ConfigError(f"schedule.missed must be one of {MISSED_POLICIES}: {self.missed!r}")
        self.grace_s = float(settings.get("grace_s", DEFAULT_GRACE_S))
        self.timezone = settings.get("timezone")
        #: ``"sqlite"`` (data directory), ``"memory"``, a redis:// URL or a job store object
        self.store: Any = settings.get("store", "sqlite")
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY_SIZE)
        self.specs: dict[str, JobSpec] = {}
        self._sets: list[JobSet] = []
        self._aps: AsyncIOScheduler | None = None
        self._executor: _Executor | None = None
        self._store: Any = None

    # ------------------------------------------------------------------ declarations

    def attach(self, jobs: JobSet) -> None:
        """Run the jobs of ``jobs`` (a robot's or a plugin's), now and as more are added."""
        if jobs not in self._sets:
            self._sets.append(jobs)
        jobs.runtime = self
        for spec in list(jobs.specs.values()):
            self.declare(spec)

    def declare(self, spec: JobSpec) -> None:
        """One job more (or changed); once running, it is added to the store at once."""
        self.specs[spec.id] = spec
        if self._aps is not None:
            self._reconcile(spec, datetime.now(UTC))

    # ------------------------------------------------------------------ life cycle

    @property
    def running(self) -> bool:
        return self._aps is not None

    async def start(self, data_dir: Path | None) -> None:
        """Open the store, reconcile it with the declared jobs, apply the missed-run
        policy, and start running (on this loop)."""
        if self._aps is not None:
            return
        tz = self.timezone or datetime.now().astimezone().tzinfo
        aps = AsyncIOScheduler(
            timezone=tz,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._store = make_store(self.store, data_dir)
        aps.add_jobstore(self._store, STORE_ALIAS)
        self._executor = _Executor(self)
        aps.add_executor(self._executor, "default")
        aps.add_listener(self._on_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
        aps.start(paused=True)
        self._aps = aps
        now = datetime.now(UTC)
        for job in aps.get_jobs():
            meta = job.kwargs
            if meta.get("kind") == "declared" and job.id not in self.specs:
                log.info("job %r is no longer declared: removed from the schedule", job.id)
                aps.remove_job(job.id)
        for spec in self.specs.values():
            self._reconcile(spec, now)
        for job in aps.get_jobs():
            self._apply_missed(job, now)
        aps.resume()
        if self.specs or aps.get_jobs():
            log.info(
                "scheduler running %d jobs (missed runs: %s)", len(aps.get_jobs()), self.missed
            )

    async def stop(self) -> None:
        aps, self._aps = self._aps, None
        if aps is None:
            return
        if self._executor is not None and self._executor.tasks:
            await asyncio.wait(list(self._executor.tasks), timeout=5.0)
        aps.shutdown(wait=False)
        await asyncio.sleep(0)  # AsyncIOScheduler shuts down (and closes the store) in a callback
        self._store = None

    # ------------------------------------------------------------------ what is scheduled

    def jobs(self) -> list[dict[str, Any]]:
        """Every scheduled job: id, kind, schedule, next run, last outcome."""
        if self._aps is None:
            return [
                {"id": s.id, "kind": s.kind, "schedule": _describe(s), "next_run": None}
                for s in self.specs.values()
            ]
        last: dict[str, dict[str, Any]] = {}
        for run in self.history:
            last[run["job"]] = run
        return [
            {
                "id": job.id,
                "kind": job.kwargs.get("kind"),
                "schedule": str(job.trigger),
                "next_run": None if job.next_run_time is None else job.next_run_time.timestamp(),
                "last": last.get(job.id),
            }
            for job in self._aps.get_jobs()
        ]

    def runs(self, job_id: str | None = None) -> list[dict[str, Any]]:
        """The remembered runs (newest last): job, scheduled_for, outcome, error."""
        return [run for run in self.history if job_id is None or run["job"] == job_id]

    # ------------------------------------------------------------------ running

    async def run_job(self, job: Job, run_time: datetime) -> None:
        meta = job.kwargs
        spec = self.specs.get(job.id)
        if meta.get("kind") == "once" and spec is None:
            func = ref_to_obj(meta["ref"])
            args = tuple(meta.get("args") or ())
        elif spec is not None:
            func, args = spec.func, spec.args
        else:
            raise LookupError(f"job {job.id!r} is scheduled but nothing declares it any more")
        context = JobContext(self.host, job.id, run_time)
        call_args = (context, *args) if _takes(func, len(args) + 1) else args
        await self.host.call_handler(func, *call_args)

    def _on_event(self, event: JobExecutionEvent) -> None:
        outcome = {EVENT_JOB_EXECUTED: "ok", EVENT_JOB_ERROR: "error"}.get(event.code, "missed")
        error = getattr(event, "exception", None)
        self._record(event.job_id, event.scheduled_run_time, outcome, error)

    def _record(
        self, job_id: str, scheduled: datetime | None, outcome: str, error: Any = None
    ) -> None:
        if outcome == "missed":
            log.warning("job %r missed its run at %s", job_id, scheduled)
        self.history.append(
            {
                "job": job_id,
                "scheduled_for": None if scheduled is None else scheduled.timestamp(),
                "finished_at": datetime.now(UTC).timestamp(),
                "outcome": outcome,
                "error": None if error is None else f"{type(error).__name__}: {error}"[:500],
            }
        )

    # ------------------------------------------------------------------ reconciling

    def _reconcile(self, spec: JobSpec, now: datetime) -> None:
        aps = self._aps
        assert aps is not None
        fingerprint = spec.fingerprint()
        existing = aps.get_job(spec.id)
        if existing is not None and existing.kwargs.get("fingerprint") == fingerprint:
            return
        meta: dict[str, Any] = {"id": spec.id, "kind": "declared", "fingerprint": fingerprint}
        if spec.kind == "once":
            meta.update(kind="once", ref=obj_to_ref(spec.func), args=list(spec.args))
        policy = spec.missed or self.missed
        aps.add_job(
            job_entry,
            trigger=self._trigger(spec),
            id=spec.id,
            name=spec.id,
            kwargs=meta | {"missed": policy, "grace_s": spec.grace_s},
            replace_existing=True,
            misfire_grace_time=max(
                1, round(spec.grace_s if spec.grace_s is not None else self.grace_s)
            ),
        )
        if existing is not None:
            log.info("job %r changed its schedule: next run recomputed", spec.id)

    def _apply_missed(self, job: Job, now: datetime) -> None:
        """Runs that fell into a downtime follow the job's policy (see the module doc)."""
        due = job.next_run_time
        if due is None or due > now:
            return
        policy = job.kwargs.get("missed") or self.missed
        grace = job.kwargs.get("grace_s")
        grace = self.grace_s if grace is None else float(grace)
        late = (now - due).total_seconds()
        if policy == "once" and late <= grace:
            log.info("job %r missed a run %.0f s ago: it runs once now", job.id, late)
            return  # APScheduler coalesces the missed runs into one at resume
        self._record(job.id, due, "missed")
        upcoming = job.trigger.get_next_fire_time(None, now)
        while upcoming is not None and upcoming <= now:
            upcoming = job.trigger.get_next_fire_time(upcoming, now)
        if upcoming is None:
            assert self._aps is not None
            self._aps.remove_job(job.id)
        else:
            job.modify(next_run_time=upcoming)

    def _trigger(self, spec: JobSpec) -> Any:
        tz = spec.timezone or self.timezone or datetime.now().astimezone().tzinfo
        if spec.kind == "once":
            return DateTrigger(run_date=spec.when, timezone=tz)
        if spec.kind == "cron":
            assert spec.cron is not None
            minute, hour, day, month, weekday = spec.cron.split()
            return CronTrigger(
                minute=minute,
                hour=hour,
                day=day,
                month=month,
                day_of_week=standard_day_of_week(weekday),
                timezone=tz,
            )
        assert spec.every is not None
        if spec.at is not None:
            at_hour, at_minute, at_second = spec.at
            days = int(spec.every // 86400)
            weeks, days = (days // 7, 0) if days % 7 == 0 else (0, days)
            return CalendarIntervalTrigger(
                weeks=weeks,
                days=days,
                hour=at_hour,
                minute=at_minute,
                second=at_second,
                timezone=tz,
            )
        return IntervalTrigger(seconds=spec.every, timezone=tz)


def _takes(func: Callable[..., Any], count: int) -> bool:
    """Whether ``func`` accepts ``count`` positional arguments (the context first)."""
    try:
        parameters: Iterable[inspect.Parameter] = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = 0
    for parameter in parameters:
        if parameter.kind == parameter.VAR_POSITIONAL:
            return True
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= count


def _describe(spec: JobSpec) -> str:
    if spec.kind == "cron":
        return f"cron {spec.cron}"
    if spec.kind == "once":
        return f"once at {spec.when}"
    text = f"every {timedelta(seconds=spec.every or 0)}"
    return text if spec.at is None else text + " at {:02d}:{:02d}:{:02d}".format(*spec.at)
