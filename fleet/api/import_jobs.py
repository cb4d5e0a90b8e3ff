"""Timetable imports that run off the request path, one at a time, with a short queue.

A county's whole-year file takes seconds to check and write; run inside a request it
holds a worker and the interpreter while the page and ``/healthz`` wait.  Here the upload
answers 202 at once and the job is polled.  ``workers`` threads run jobs (each job's work
decides where the import itself runs: the timetable route starts a process for it); at
most ``queue`` jobs wait, and beyond that the caller is told to come back (429), so
uploads cannot pile up memory or disk.  Jobs are known to this process only and the last
``keep`` finished ones are remembered, which is what a person polling a page needs.
"""

from __future__ import annotations

import enum
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ImportJob", "ImportJobs", "JobState", "QueueFull"]

log = logging.getLogger(__name__)


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"  # imported
    REFUSED = "refused"  # the file has errors or names foreign classrooms; nothing applied
    FAILED = "failed"  # the fleet failed (logged); nothing applied


@dataclass
class ImportJob:
    id: str
    owner: int  # person id: only they (and admins) may see the job
    filename: str
    state: JobState = JobState.QUEUED
    rows: int = 0  # rows read so far
    result: dict[str, Any] | None = None  # ImportOut fields once done
    status: int = 0  # the HTTP status the inline import would have answered
    problem: dict[str, Any] = field(default_factory=dict)  # the refusal's body


class QueueFull(RuntimeError):
    pass


Work = Callable[[ImportJob], None]


class ImportJobs:
    def __init__(self, *, workers: int = 1, queue: int = 4, keep: int = 100) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers,
                                            thread_name_prefix="timetable-import")
        self._limit = workers + queue
        self._keep = keep
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, ImportJob] = OrderedDict()

    def _unfinished(self) -> int:
        return sum(j.state in (JobState.QUEUED, JobState.RUNNING) for j in self._jobs.values())

    def submit(self, owner: int, filename: str, work: Work,
               dropped: Callable[[], None] | None = None) -> ImportJob:
        """Queue ``work``; QueueFull if as many jobs as allowed are already waiting.

        ``dropped`` is called if the job never runs (the fleet shut down first), to let go
        of what it holds (its uploaded file)."""
        with self._lock:
            if self._unfinished() >= self._limit:
                raise QueueFull
            job = ImportJob(secrets.token_urlsafe(12), owner, filename)
            self._jobs[job.id] = job
            finished = [k for k, j in self._jobs.items()
                        if j.state not in (JobState.QUEUED, JobState.RUNNING)]
            for key in finished[: max(0, len(self._jobs) - self._keep)]:
                del self._jobs[key]
        future = self._executor.submit(self._run, job, work)
        if dropped is not None:
            future.add_done_callback(lambda f: dropped() if f.cancelled() else None)
        return job

    def get(self, job_id: str) -> ImportJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def _run(self, job: ImportJob, work: Work) -> None:
        job.state = JobState.RUNNING
        try:
            work(job)
        except Exception:
            log.exception("timetable import job %s (%s) failed", job.id, job.filename)
            job.state = JobState.FAILED

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
