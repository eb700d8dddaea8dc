"""Where the scheduler keeps its jobs: an APScheduler job store on the standard library's
SQLite, in the data directory.

APScheduler ships an SQLAlchemy job store; this one does the same on ``sqlite3`` so the
scheduler needs no SQLAlchemy. The seam is APScheduler's own :class:`BaseJobStore`: any
store of the library plugs in the same way (``schedule.store: "redis://host:6379/0"``
picks its :class:`~apscheduler.jobstores.redis.RedisJobStore`, see :func:`make_store`).

Each change is committed before the scheduler goes on, so the next run time written when
a job is handed to its executor is on disk before the job starts: a crash while it runs
does not run it again at the next start (at most once), and a restart finds every due job.
The file is 0600 in a 0700 folder: job arguments can be message text.
"""

from __future__ import annotations

import logging
import os
import pickle
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from apscheduler.job import Job
from apscheduler.jobstores.base import BaseJobStore, ConflictingIdError, JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.util import datetime_to_utc_timestamp, utc_timestamp_to_datetime

from ._files import private_dir
from .errors import ConfigError

__all__ = ["SQLiteJobStore", "make_store"]

log = logging.getLogger("MetaPuppet.scheduler")


class SQLiteJobStore(BaseJobStore):  # type: ignore[misc]  # APScheduler has no type hints
    """APScheduler jobs in one SQLite table (``id``, ``next_run_time``, pickled state)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        private_dir(self.path.parent)
        fresh = not self.path.exists()
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        if fresh:
            os.chmod(self.path, 0o600)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, next_run_time REAL, "
            "job_state BLOB NOT NULL)"
        )
        self.db.execute("CREATE INDEX IF NOT EXISTS jobs_next ON jobs (next_run_time)")

    def lookup_job(self, job_id: str) -> Job | None:
        row = self.db.execute("SELECT job_state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._reconstitute(job_id, row[0]) if row else None

    def get_due_jobs(self, now: datetime) -> list[Job]:
        timestamp = datetime_to_utc_timestamp(now)
        return self._jobs("WHERE next_run_time <= ?", (timestamp,))

    def get_next_run_time(self) -> datetime | None:
        row = self.db.execute(
            "SELECT next_run_time FROM jobs WHERE next_run_time IS NOT NULL "
            "ORDER BY next_run_time LIMIT 1"
        ).fetchone()
        return utc_timestamp_to_datetime(row[0]) if row else None

    def get_all_jobs(self) -> list[Job]:
        jobs = self._jobs("", ())
        self._fix_paused_jobs_sorting(jobs)
        return jobs

    def add_job(self, job: Job) -> None:
        try:
            self.db.execute(
                "INSERT INTO jobs (id, next_run_time, job_state) VALUES (?, ?, ?)",
                (job.id, datetime_to_utc_timestamp(job.next_run_time), _dump(job)),
            )
        except sqlite3.IntegrityError:
            raise ConflictingIdError(job.id) from None

    def update_job(self, job: Job) -> None:
        cursor = self.db.execute(
            "UPDATE jobs SET next_run_time = ?, job_state = ? WHERE id = ?",
            (datetime_to_utc_timestamp(job.next_run_time), _dump(job), job.id),
        )
        if cursor.rowcount == 0:
            raise JobLookupError(job.id)

    def remove_job(self, job_id: str) -> None:
        if self.db.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount == 0:
            raise JobLookupError(job_id)

    def remove_all_jobs(self) -> None:
        self.db.execute("DELETE FROM jobs")

    def shutdown(self) -> None:
        self.db.close()

    def _jobs(self, where: str, params: tuple[Any, ...]) -> list[Job]:
        rows = self.db.execute(
            f"SELECT id, job_state FROM jobs {where} ORDER BY next_run_time", params
        ).fetchall()
        jobs = []
        for job_id, state in rows:
            job = self._reconstitute(job_id, state)
            if job is not None:
                jobs.append(job)
        return jobs

    def _reconstitute(self, job_id: str, state: bytes) -> Job | None:
        try:
            job_state = pickle.loads(state)  # noqa: S301 - our own 0600 file
            job_state["jobstore"] = self
            job = Job.__new__(Job)
            job.__setstate__(job_state)
        except Exception as exc:  # noqa: BLE001 - one unreadable job must not stop the rest
            log.error("cannot restore job %r from %s (%s); removing it", job_id, self.path, exc)
            self.db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            return None
        # the two attributes every APScheduler job store sets on a job it hands out
        job._scheduler = self._scheduler  # noqa: SLF001
        job._jobstore_alias = self._alias  # noqa: SLF001
        return job

    def __repr__(self) -> str:
        return f"<SQLiteJobStore {self.path}>"


def _dump(job: Job) -> bytes:
    return pickle.dumps(job.__getstate__(), pickle.HIGHEST_PROTOCOL)


def make_store(spec: Any, data_dir: Path | None) -> BaseJobStore:
    """The job store ``schedule.store`` names: ``"sqlite"`` (default: ``jobs.db`` in the
    data directory; memory without one), ``"memory"``, ``"redis://[:password@]host:port/db"``
    (or ``unix://``),
    or an APScheduler job store object."""
    if isinstance(spec, BaseJobStore):
        return spec
    if spec in (None, "sqlite"):
        if data_dir is None:
            return MemoryJobStore()
        try:
            return SQLiteJobStore(data_dir / "jobs.db")
        except (OSError, sqlite3.Error) as exc:
            log.error(
                "cannot keep scheduled jobs in %s (%s): they are kept in memory only, so a "
                "restart forgets when they last ran; fix the data directory",
                data_dir / "jobs.db",
                exc,
            )
            return MemoryJobStore()
    if spec == "memory":
        return MemoryJobStore()
    if isinstance(spec, str) and spec.startswith(("redis://", "rediss://", "unix://")):
        from apscheduler.jobstores.redis import RedisJobStore
        from redis import Redis

        store = RedisJobStore(jobs_key="metapuppet.jobs", run_times_key="metapuppet.job_run_times")
        store.redis = Redis.from_url(spec)  # every form redis-py reads: host, TLS, unix socket
        return store
    raise ConfigError(
        f'schedule.store must be "sqlite", "memory" or a redis:// (unix://) URL, got {spec!r:.80}'
    )
