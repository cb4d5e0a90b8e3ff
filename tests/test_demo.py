"""The README's main command, `syncclass-fleet demo`, run for real: it starts its own
broker, fleet, mailbox and simulated classrooms, serves the page, and the scripted
camera fault at 泰顺竹里 reaches that school's technician by e-mail."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from agent.hardware.scenario import default_scenario, load_scenario
from fleet.demo import DEMO_FAULTS, _agent_files


def test_the_demo_classroom_is_the_simulated_backends_own(tmp_path: Path) -> None:
    """fleet/demo.py writes the agent's default classroom out by hand (the fleet imports
    nothing of the agent but its contract): a device renamed in the agent would leave a
    scripted fault pointing at nothing, and the demo would page nobody."""
    for device_id, faults in DEMO_FAULTS.items():
        _agent_files(device_id, tmp_path, "mqtt://127.0.0.1:1883", "key", 8000)
        scenario = load_scenario(tmp_path / "agents" / device_id / "scenario.toml")
        default = default_scenario()
        assert dataclasses.replace(scenario, name=default.name, fault=[]) == default
        assert len(scenario.fault) == len(faults)
        devices = {c.id for c in scenario.camera} | {
            a.id for a in (*scenario.microphone, *scenario.speaker)}
        assert {f.device for f in scenario.fault if f.device} <= devices


@pytest.mark.slow
def test_demo_runs_and_a_fault_reaches_the_technician(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("syncclass-fleet")
    proc = subprocess.Popen(
        [str(exe), "demo", "--port", "0", "--duration", "55", "--workdir", str(tmp_path / "d")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            found = [m for line in list(lines) if (m := re.search(r"(http://127\.0\.0\.1:\d+)/$",
                                                                   line.strip()))]
            url = found[0].group(1) if found else None
            time.sleep(0.2)
        assert url, "no banner with the web page's address:\n" + "".join(lines[-30:])
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(f"{url}/", timeout=10) as resp:
            assert "同步课堂" in resp.read().decode()
        assert proc.wait(timeout=120) == 0, "".join(lines[-30:])
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(timeout=5)
    mails = [line for line in lines if "邮件 mail → tech@zhuli.example.cn" in line]
    assert mails, "no e-mail to 竹里's technician:\n" + "".join(lines[-40:])
    assert "摄像头未连接" in mails[0]
