"""The fleet's one-command install (packaging/install-fleet.sh) into a clean root, twice:
the user, owners and modes, the unit, the venv's syncclass-fleet migrating a database,
and a re-run (the upgrade) keeping an edited config."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.packaging.roots import clean_root, entry, in_root, owner_mode, run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("useradd") is None, reason="needs useradd"),
    pytest.mark.skipif(os.geteuid() != 0, reason="installs files owned by a new user: root"),
]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "packaging/install-fleet.sh"
SYSTEM_PYTHON = Path("/usr/bin/python3")
PYTHON_310 = Path("/root/.pyenv/versions/3.10.13/bin/python")


def _install(root: Path, python: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "ROOT": str(root), "PYTHON": str(python)}
    return subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="needs /usr/bin/python3")
def test_install_and_reinstall_into_a_clean_root(tmp_path: Path) -> None:
    root = clean_root(tmp_path / "root")
    done = _install(root, SYSTEM_PYTHON)
    if done.returncode == 1 and "3.11" in done.stderr:
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stderr[-3000:]

    user = entry(root, "passwd", "syncclass")
    uid, gid = int(user[2]), int(user[3])
    assert uid < 1000 and user[6] == "/usr/sbin/nologin"
    config = root / "etc/syncclass/fleet.toml"
    assert config.read_text() == (REPO / "provisioning/fleet.example.toml").read_text()
    assert owner_mode(config) == (0, gid, 0o640)
    assert owner_mode(root / "var/lib/syncclass") == (uid, gid, 0o750)

    unit = (root / "etc/systemd/system/syncclass-fleet.service").read_text()
    assert "ExecStart=/usr/bin/syncclass-fleet serve --config /etc/syncclass/fleet.toml" in unit
    assert "User=syncclass" in unit and "StateDirectory=syncclass" in unit
    exe = in_root(root, root / "usr/bin/syncclass-fleet")
    assert exe == root / "opt/syncclass-fleet/venv/bin/syncclass-fleet"

    # The installed fleet migrates the example config's database, moved into the root.
    data = root / "var/lib/syncclass"
    moved = tmp_path / "fleet.toml"
    moved.write_text(config.read_text().replace("/var/lib/syncclass/", f"{data}/"))
    migrated = run(exe, "migrate", "--config", str(moved))
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    assert (data / "fleet.db").stat().st_size > 0

    edited = config.read_text().replace('password = "CHANGE-ME"', 'password = "s3cret"')
    assert edited != config.read_text()
    config.write_text(edited)
    again = _install(root, SYSTEM_PYTHON)
    assert again.returncode == 0, again.stderr[-3000:]
    assert config.read_text() == edited
    assert (data / "fleet.db").stat().st_size > 0
    assert [line for line in (root / "etc/passwd").read_text().splitlines()
            if line.startswith("syncclass:")] == [":".join(user)]


@pytest.mark.skipif(not PYTHON_310.exists(), reason=f"{PYTHON_310} is not on this machine")
def test_python_310_is_refused_in_one_line(tmp_path: Path) -> None:
    root = clean_root(tmp_path / "root")
    done = _install(root, PYTHON_310)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "needs Python 3.11 or later" in done.stderr
    assert entry(root, "passwd", "root") and not (root / "opt").exists()
