"""A first start as a new user makes it: the example configs and inventory in provisioning/
run as they are, the fleet makes its data directory (or says in one line why it cannot),
on Python 3.10 the fleet says in one line that it needs 3.11, and the demo serves a phone
on the LAN."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from fleet.inventory import load_inventory_file
from tests.fleet.db import fresh_db

REPO = Path(__file__).resolve().parents[1]
PROVISIONING = REPO / "provisioning"
BIN = Path(sys.executable).parent
PYTHON_310 = Path("/root/.pyenv/versions/3.10.13/bin/python")


def _example_fleet_config(tmp_path: Path, data_dir: Path) -> Path:
    """provisioning/fleet.example.toml with /var/lib/syncclass moved under ``data_dir``."""
    text = (PROVISIONING / "fleet.example.toml").read_text()
    assert "/var/lib/syncclass/" in text
    config = tmp_path / "fleet.toml"
    config.write_text(text.replace("/var/lib/syncclass/", f"{data_dir}/"))
    return config


def _fleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "syncclass-fleet"), *args], capture_output=True,
                          text=True, timeout=120)


def test_migrate_with_the_example_config_creates_the_data_directory(tmp_path: Path) -> None:
    data = tmp_path / "var/lib/syncclass"
    done = _fleet("migrate", "--config", str(_example_fleet_config(tmp_path, data)))
    assert done.returncode == 0, done.stderr
    assert (data / "fleet.db").stat().st_size > 0
    assert stat.S_IMODE(data.stat().st_mode) == 0o750


def test_a_data_directory_that_cannot_be_made_is_named_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    done = _fleet("migrate", "--config", str(_example_fleet_config(tmp_path, blocker / "sub")))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"{blocker}/sub" in lines[0] and "无法创建数据目录" in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(not PYTHON_310.exists(), reason=f"{PYTHON_310} is not on this machine")
def test_the_fleet_on_python_310_says_it_needs_311_in_one_line() -> None:
    code = "import sys; from fleet.cli import main; sys.exit(main(['serve']))"
    done = subprocess.run(
        [str(PYTHON_310), "-c", code],
        capture_output=True, text=True, timeout=60, cwd=REPO,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "syncclass-fleet 需要 Python 3.11 或更高 / needs Python 3.11 or later "
        "(this is 3.10.13; the agent alone runs on 3.10)"
    ]


def _agent_check(*args: str) -> tuple[int, dict[str, object]]:
    done = subprocess.run([str(BIN / "syncclass-agent"), "check", "--json", "--config",
                           str(PROVISIONING / "agent.example.toml"), *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1, 2), done.stderr
    payload: dict[str, object] = json.loads(done.stdout)
    return done.returncode, payload


def test_the_example_agent_config_checks_only_this_machine() -> None:
    """The Linux backend on whatever machine runs the suite: findings may say that it has
    no camera, but none may come from the example file (its devices, hosts, URLs)."""
    _, payload = _agent_check()
    findings = payload["findings"]
    assert isinstance(findings, list)
    for finding in findings:
        entity = finding.get("entity") or ""
        text = json.dumps(finding, ensure_ascii=False)
        assert not entity.startswith("target:"), finding
        assert "example" not in text and "192.168." not in text, finding
        if finding["level"] == "fail":
            # What udev finds against the thresholds, not a device the file names.
            assert entity.endswith(":*"), finding


def test_the_example_agent_config_passes_a_healthy_simulated_classroom() -> None:
    code, payload = _agent_check("--simulate")
    # Only the untested bandwidth (no speed-test URL in a fresh file) is left to warn.
    assert (code, payload["verdict"]) == (1, "warn")
    findings = payload["findings"]
    assert isinstance(findings, list)
    assert [f["entity"] for f in findings] == ["bandwidth"]


def test_the_example_inventory_loads(tmp_path: Path) -> None:
    sessions = fresh_db(tmp_path)
    with sessions() as session:
        result = load_inventory_file(session, PROVISIONING / "inventory.example.toml")
        session.commit()
    assert result.created == {"county": 1, "school": 2, "classroom": 2, "device": 2,
                              "pair": 1, "person": 3}


@pytest.mark.slow
def test_demo_with_host_serves_the_page_on_the_lan_address(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [str(BIN / "syncclass-fleet"), "demo", "--host", "0.0.0.0", "--port", "0",
         "--duration", "60", "--workdir", str(tmp_path / "d")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            found = [m for line in list(lines)
                     if (m := re.search(r"局域网 LAN:\s+(http://[\d.]+:\d+)/", line))]
            url = found[0].group(1) if found else None
            time.sleep(0.2)
        assert url, "no LAN address in the banner:\n" + "".join(lines[-30:])
        assert not url.startswith("http://127."), url
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as resp:
            assert resp.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    reader.join(timeout=5)
