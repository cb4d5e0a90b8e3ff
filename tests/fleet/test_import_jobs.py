"""The import job runner: one at a time, a short queue, failures recorded, history bounded."""

from __future__ import annotations

import threading

import pytest

from fleet.api.import_jobs import ImportJob, ImportJobs, JobState, QueueFull
from tests.waiting import wait_until


def test_a_failing_job_is_failed_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    jobs = ImportJobs()

    def broken(job: ImportJob) -> None:
        raise OSError("disk gone")

    job = jobs.submit(1, "t.csv", broken)
    assert wait_until(lambda: job.state is JobState.FAILED)
    jobs.close()
    assert f"timetable import job {job.id} (t.csv) failed" in caplog.text


def test_the_queue_is_bounded_and_a_dropped_job_lets_go() -> None:
    jobs = ImportJobs(workers=1, queue=1)
    release = threading.Event()
    dropped: list[str] = []

    def done(job: ImportJob) -> None:
        job.state = JobState.DONE

    running = jobs.submit(1, "a.csv", lambda job: release.wait(30))
    waiting = jobs.submit(1, "b.csv", done, dropped=lambda: dropped.append("b.csv"))
    with pytest.raises(QueueFull):
        jobs.submit(1, "c.csv", done)
    assert wait_until(lambda: running.state is JobState.RUNNING)
    assert waiting.state is JobState.QUEUED
    closing = threading.Thread(target=jobs.close)
    closing.start()  # cancels the queued job, waits for the running one
    assert wait_until(lambda: dropped == ["b.csv"])
    release.set()
    closing.join(timeout=30)
    assert not closing.is_alive()


def test_only_the_last_finished_jobs_are_kept() -> None:
    jobs = ImportJobs(keep=3)

    def done(job: ImportJob) -> None:
        job.state = JobState.DONE

    first = [jobs.submit(1, f"{i}.csv", done) for i in range(4)]
    assert wait_until(lambda: all(j.state is JobState.DONE for j in first))
    last = jobs.submit(1, "last.csv", done)
    assert jobs.get(first[0].id) is None and jobs.get(first[1].id) is None
    assert jobs.get(first[3].id) is first[3] and jobs.get(last.id) is last
    jobs.close()
