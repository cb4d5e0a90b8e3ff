"""Measuring helpers shared by the benchmarks."""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

__all__ = ["ProcessSample", "sample_process"]


@dataclass(frozen=True)
class ProcessSample:
    rss_mib: float
    cpu_s: float  # user + system since the process started
    at: float  # time.monotonic()


def sample_process(pid: int) -> ProcessSample:
    proc = psutil.Process(pid)
    times = proc.cpu_times()
    return ProcessSample(
        rss_mib=proc.memory_info().rss / 2**20,
        cpu_s=times.user + times.system + times.children_user + times.children_system,
        at=time.monotonic(),
    )
