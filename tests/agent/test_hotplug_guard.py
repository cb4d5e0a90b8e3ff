"""Hot-plug keeps working after its callback fails: a real pyudev monitor under umockdev."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.hardware.guard import Guarded

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("umockdev-wrapper") is None,
                    reason="needs umockdev (Makefile DEBS_TEST)")
def test_a_failing_watcher_does_not_end_hot_plug() -> None:
    done = subprocess.run(
        ["umockdev-wrapper", sys.executable, "-m", "tests.agent.umockdev_hotplug"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert (result["added"], result["removed"]) == (True, True), done.stderr[-2000:]
    assert [(e["type"], e["entity"]) for e in result["events"]] == [
        ("device_added", "camera:046d:0825:A1B2C3"), ("device_removed", "camera:046d:0825:A1B2C3")]
    # Identity (vendor:product:serial) and names come from the USB parent's sysfs
    # attributes (no udevd here).
    assert result["events"][0]["detail"] | {"node": ""} == {
        "id": "046d:0825:A1B2C3", "name": "Webcam C270", "node": "", "vendor": "Logitech",
        "model": "Webcam C270", "serial": "A1B2C3", "bus_path": "usb-1-2"}
    assert "udev-hotplug" in result["threads"]
    assert "udev hot-plug callback failed (1 failures so far" in done.stderr


def test_guard_counts_every_failure_and_logs_at_a_limited_rate(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    calls: list[int] = []

    def flaky(n: int) -> None:
        calls.append(n)
        if n % 2:
            raise ValueError(f"bad uevent {n}")

    guarded = Guarded(flaky, "hot-plug", log_every_s=60, clock=lambda: now[0])
    with caplog.at_level(logging.ERROR, logger="agent.hardware.guard"):
        for n in range(1, 8):  # odd ones fail: 1 3 5 7
            now[0] = n
            guarded(n)
        now[0] = 100.0
        guarded(9)
    assert calls == [1, 2, 3, 4, 5, 6, 7, 9]
    assert guarded.failures == 5
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "hot-plug failed (1 failures so far, 0 not logged since the last line); still listening",
        "hot-plug failed (5 failures so far, 3 not logged since the last line); still listening",
    ]
    assert caplog.records[0].exc_info is not None, "the traceback is logged"
