"""Scheduled jobs as a robot or a plugin declares them: ``every``, ``cron``, ``schedule_once``.

This module only *describes* jobs (a leaf: no scheduler, no server). The server's
:class:`~MetaPuppet.scheduler.Scheduler` turns each :class:`JobSpec` into an APScheduler
trigger and runs it, keeping the schedule in the data directory::

    @bot.every("1d", at="08:30")
    async def morning(ctx):
        await ctx.send_later("wxid_alice", "good morning")

    @bot.cron("0 9 * * 1-5")              # standard crontab: 1-5 is Monday to Friday
    def weekdays(): ...

    bot.schedule_once("2026-12-24T18:00", remind, "wxid_alice", id="xmas")
"""

from __future__ import annotations

import pickle
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal, TypeVar

__all__ = [
    "MISSED_POLICIES",
    "JobSet",
    "JobSpec",
    "MissedPolicy",
    "check_once",
    "parse_interval",
    "parse_time_of_day",
    "standard_day_of_week",
]

F = TypeVar("F", bound=Callable[..., Any])
MissedPolicy = Literal["once", "skip"]
#: what happens to runs that fell into a downtime: ``once`` runs the job once at start
#: (when the latest missed run is within the grace period), ``skip`` never catches up
MISSED_POLICIES: Final = ("once", "skip")

_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_TIME_OF_DAY = re.compile(r"^\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*$")
_DAY_NAMES: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def parse_interval(text: str | float | timedelta) -> float:
    """``"10s"``, ``"5m"``, ``"2h"``, ``"1d"``, ``"1w"`` (or seconds, or a timedelta) as seconds."""
    if isinstance(text, timedelta):
        seconds = text.total_seconds()
    elif isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    elif isinstance(text, str) and (match := _INTERVAL.match(text)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(
            f"an interval reads like '30s', '5m', '2h', '1d' or '1w' (or seconds); got {text!r}"
        )
    if seconds <= 0:
        raise ValueError(f"an interval must be positive, got {text!r}")
    return seconds


def parse_time_of_day(text: str) -> tuple[int, int, int]:
    """``"08:30"`` or ``"08:30:15"`` as (hour, minute, second)."""
    match = _TIME_OF_DAY.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"at= takes a time of day like '08:30' or '08:30:15', got {text!r}")
    hour, minute, second = int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"at={text!r} is not a time of day")
    return hour, minute, second


def _day_set(token: str) -> set[int]:
    """The days (0 = Sunday) one comma-separated part of a crontab weekday field names."""
    step = 1
    if "/" in token:
        token, step_text = token.split("/", 1)
        if not step_text.isdigit() or int(step_text) == 0:
            raise ValueError(f"bad step in the day-of-week field: {step_text!r}")
        step = int(step_text)
    if token == "*":
        low, high = 0, 6
    elif "-" in token:
        low_text, high_text = token.split("-", 1)
        low, high = _day_number(low_text), _day_number(high_text)
        if high == 0 and low > 0:
            high = 7  # "5-7" / "5-0": Friday to Sunday
    else:
        low = high = _day_number(token)
        if step != 1:
            high = 6
    if low > high:
        raise ValueError(f"the day-of-week range {token!r} runs backwards")
    return {day % 7 for day in range(low, high + 1, step)}


def _day_number(text: str) -> int:
    text = text.strip().lower()
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text) % 7 if int(text) != 7 else 7
    if text[:3] in _DAY_NAMES:
        return _DAY_NAMES.index(text[:3])
    raise ValueError(f"{text!r} is not a day of the week (0-7 or sun..sat)")


def standard_day_of_week(field_text: str) -> str:
    """A crontab weekday field (0 or 7 = Sunday, 1 = Monday) as day names.

    APScheduler 3.x counts 0 as Monday in ``CronTrigger.from_crontab`` (a known mismatch
    its authors fixed only in 4.x), so ``1-5`` would mean Tuesday to Saturday there; the
    names leave no doubt.
    """
    if field_text.strip() in ("*", "?"):
        return "*"
    days: set[int] = set()
    for token in field_text.split(","):
        days |= _day_set(token.strip())
    return ",".join(_DAY_NAMES[d] for d in sorted(days))


@dataclass(frozen=True)
class JobSpec:
    """One declared job: when it runs and what it calls.

    ``kind`` is ``interval`` (``every`` seconds, optionally ``at`` a time of day), ``cron``
    (five crontab fields) or ``once`` (``when``). ``func`` is called with a
    :class:`~MetaPuppet.scheduler.JobContext` if it takes a parameter, else with nothing;
    for ``once`` jobs, with ``args`` after the context.
    """

    id: str
    func: Callable[..., Any]
    kind: Literal["interval", "cron", "once"]
    every: float | None = None
    at: tuple[int, int, int] | None = None
    cron: str | None = None
    when: datetime | None = None
    args: tuple[Any, ...] = ()
    missed: MissedPolicy | None = None
    grace_s: float | None = None
    timezone: str | None = None

    def fingerprint(self) -> str:
        """What identifies this schedule: a change means the stored next run is recomputed."""
        return f"{self.kind}|{self.every}|{self.at}|{self.cron}|{self.when}|{self.timezone}"


@dataclass
class JobSet:
    """The jobs a robot or a plugin declares (``robot.jobs``)."""

    specs: dict[str, JobSpec] = field(default_factory=dict)
    #: the scheduler running these jobs, once a server started them
    runtime: Any = None

    def add(self, spec: JobSpec) -> JobSpec:
        if spec.missed is not None and spec.missed not in MISSED_POLICIES:
            raise ValueError(f"missed= must be one of {MISSED_POLICIES}, got {spec.missed!r}")
        if spec.kind == "once":
            check_once(spec)
        self.specs[spec.id] = spec
        if self.runtime is not None:
            self.runtime.declare(spec)
        return spec

    def every(
        self,
        interval: str | float | timedelta,
        *,
        at: str | None = None,
        id: str | None = None,  # noqa: A002 - the job's id, as APScheduler names it
        missed: MissedPolicy | None = None,
        grace_s: float | None = None,
        timezone: str | None = None,
    ) -> Callable[[F], F]:
        """Run the decorated function every ``interval`` (``"30s"``, ``"1h"``, ``"1d"``);
        with ``at="08:30"`` (day or week intervals) at that time of day."""
        seconds = parse_interval(interval)
        when = parse_time_of_day(at) if at is not None else None
        if when is not None and seconds % 86400:
            raise ValueError(f"at= needs an interval of whole days or weeks, got {interval!r}")

        def register(func: F) -> F:
            job_id = id or _name(func)
            self.add(
                JobSpec(
                    job_id,
                    func,
                    "interval",
                    seconds,
                    when,
                    None,
                    None,
                    (),
                    missed,
                    grace_s,
                    timezone,
                )
            )
            return func

        return register

    def cron(
        self,
        expression: str,
        *,
        id: str | None = None,  # noqa: A002
        missed: MissedPolicy | None = None,
        grace_s: float | None = None,
        timezone: str | None = None,
    ) -> Callable[[F], F]:
        """Run the decorated function on a standard crontab schedule
        (minute hour day month weekday; weekday 0 or 7 is Sunday)."""
        fields = str(expression).split()
        if len(fields) != 5:
            raise ValueError(
                f"a cron expression has 5 fields (minute hour day month weekday), "
                f"got {len(fields)} in {expression!r}"
            )
        standard_day_of_week(fields[4])  # a bad weekday field fails here, at import

        def register(func: F) -> F:
            job_id = id or _name(func)
            self.add(
                JobSpec(
                    job_id,
                    func,
                    "cron",
                    None,
                    None,
                    " ".join(fields),
                    None,
                    (),
                    missed,
                    grace_s,
                    timezone,
                )
            )
            return func

        return register

    def schedule_once(
        self,
        when: datetime | str | float | timedelta,
        func: Callable[..., Any],
        *args: Any,
        id: str | None = None,  # noqa: A002
        missed: MissedPolicy | None = None,
        grace_s: float | None = None,
    ) -> JobSpec:
        """Run ``func(ctx, *args)`` once at ``when``: a datetime, an ISO text, a delay in
        seconds or a timedelta. ``func`` must be a module-level function (so a restart can
        find it again) and ``args`` plain data; the job is kept until it ran."""
        at = _absolute(when)
        job_id = id or f"{_name(func)}@{at.isoformat()}"
        return self.add(
            JobSpec(job_id, func, "once", when=at, args=tuple(args), missed=missed, grace_s=grace_s)
        )


def check_once(spec: JobSpec) -> None:
    """A one-off job must survive a restart: a module-level function and plain data."""
    func = spec.func
    module = sys.modules.get(getattr(func, "__module__", "") or "")
    target: Any = module
    for part in str(getattr(func, "__qualname__", "<?>")).split("."):
        target = getattr(target, part, None)
    if module is None or target is not func:
        raise ValueError(
            f"schedule_once needs a module-level function (found again by name after a "
            f"restart), not {func!r}"
        )
    try:
        pickle.dumps(spec.args)
    except Exception as exc:
        raise ValueError(f"schedule_once args must be plain data: {exc}") from None


def _absolute(when: datetime | str | float | timedelta) -> datetime:
    now = datetime.now().astimezone()
    if isinstance(when, datetime):
        return when if when.tzinfo is not None else when.astimezone()
    if isinstance(when, timedelta):
        return now + when
    if isinstance(when, int | float) and not isinstance(when, bool):
        return now + timedelta(seconds=float(when))
    if isinstance(when, str):
        try:
            parsed = datetime.fromisoformat(when)
        except ValueError:
            raise ValueError(f"when= must be an ISO date and time, got {when!r}") from None
        return parsed if parsed.tzinfo is not None else parsed.astimezone()
    raise TypeError(f"when= takes a datetime, an ISO text, seconds or a timedelta, got {when!r}")


def _name(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", None) or "?"
    return f"{module}.{getattr(func, '__qualname__', repr(func))}"
