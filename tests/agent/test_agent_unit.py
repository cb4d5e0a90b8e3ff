"""The systemd unit is valid for systemd itself and matches what the agent implements."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "syncclass-agent.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_verifies(tmp_path: Path) -> None:
    agent = Path(sys.executable).with_name("syncclass-agent")
    text = UNIT.read_text().replace("/usr/bin/syncclass-agent", str(agent))
    unit = tmp_path / UNIT.name
    unit.write_text(text)
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "syncclass-agent.service" not in out.stderr, out.stderr


def test_unit_is_notify_with_watchdog_and_restart() -> None:
    lines = set(UNIT.read_text().splitlines())
    assert {"Type=notify", "WatchdogSec=60", "Restart=on-failure",
            "RestartPreventExitStatus=78", "NoNewPrivileges=yes",
            "ProtectSystem=strict", "StateDirectory=syncclass-agent"} <= lines
