"""The agent's Debian package as `make deb` builds it, installed by dpkg into a clean root.

The root is an empty directory with base-passwd's users and groups and an empty dpkg
database; `dpkg --root --force-script-chrootless` unpacks the package there and runs its
real maintainer scripts with DPKG_ROOT set (which they honour), so the user, owners,
modes and the venv they make are checked on disk.  What this cannot show: dependency
resolution (the root has no python3 package, hence --force-depends; the Depends field is
checked instead) and systemd starting the unit (systemd-analyze verifies it).
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import RuntimeConfig
from tests.packaging.roots import clean_root, entry, in_root, owner_mode, run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("dpkg-deb") is None or shutil.which("useradd") is None,
                       reason="needs dpkg and useradd"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the postinst chowns to the new user: root"),
]

REPO = Path(__file__).resolve().parents[2]
PROJECT_VERSION = "0.1.0"
# The interpreters of Ubuntu 22.04, Ubuntu 24.04 and Debian 13, where present (Debian 12's
# 3.11 is this machine's /usr/bin/python3, which the installs below use).
PYTHONS = [Path(f"/root/.pyenv/versions/{v}/bin/python") for v in ("3.10.13", "3.12.1", "3.13.0")]

def _build(out: Path, version: str) -> Path:
    env = {**os.environ, "PYTHON": sys.executable, "DEB_VERSION": version}
    done = subprocess.run([str(REPO / "packaging/deb/build-agent.sh"), str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    deb = Path(done.stdout.strip().splitlines()[-1])
    assert deb.is_file(), done.stdout
    return deb


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The package, and the same again as a later version for the upgrade."""
    out = tmp_path_factory.mktemp("debs")
    first = _build(out, PROJECT_VERSION)
    # The upgrade: the same tree under a later version, repacked instead of rebuilt.
    tree = out / "tree"
    subprocess.run(["dpkg-deb", "-R", str(first), str(tree)], check=True)
    control = tree / "DEBIAN/control"
    control.write_text(control.read_text().replace(f"Version: {PROJECT_VERSION}\n",
                                                   f"Version: {PROJECT_VERSION}+1\n"))
    second = out / "syncclass-agent_upgrade.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(second)],
                   check=True, capture_output=True)
    return {"first": first, "second": second}


def _dpkg(root: Path, *args: str) -> str:
    done = subprocess.run(["dpkg", f"--root={root}", "--force-script-chrootless",
                           "--force-depends", "--log=/dev/null", *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def root(tmp_path: Path, debs: dict[str, Path]) -> Path:
    """A fresh install, for tests that change it."""
    root = clean_root(tmp_path / "root")
    _dpkg(root, "-i", str(debs["first"]))
    return root


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, debs: dict[str, Path]) -> Path:
    """One install shared by the tests that only look at it."""
    root = clean_root(tmp_path_factory.mktemp("installed") / "root")
    _dpkg(root, "-i", str(debs["first"]))
    return root


def test_package_metadata_and_contents(debs: dict[str, Path]) -> None:
    deb = str(debs["first"])
    fields = subprocess.run(["dpkg-deb", "-f", deb, "Package", "Version", "Depends"],
                            capture_output=True, text=True, check=True).stdout
    assert "Package: syncclass-agent" in fields and f"Version: {PROJECT_VERSION}" in fields
    depends = fields.split("Depends:")[1]
    for dep in ("python3 (>= 3.10)", "python3-venv", "ffmpeg", "alsa-utils"):
        assert dep in depends
    conffiles = subprocess.run(["dpkg-deb", "-I", deb, "conffiles"], capture_output=True,
                               text=True, check=True).stdout.split()
    assert conffiles == ["/etc/syncclass/agent.toml"]
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True,
                             check=True).stdout
    wheels = [line.rsplit("/", 1)[1] for line in listing.splitlines() if line.endswith(".whl")]
    # The project and, for cffi (built per Python version), a wheel for each interpreter.
    assert f"syncclass-{PROJECT_VERSION}-py3-none-any.whl" in wheels
    for tag in ("cp310", "cp311", "cp312"):
        assert any(w.startswith("cffi-") and f"-{tag}-" in w for w in wheels), wheels
    # No venv inside the package: it is made for the target's own python3.
    assert " ./opt/syncclass-agent/venv" not in listing


def _check_polkit(root: Path) -> None:
    """polkit >= 0.106 reads the JavaScript rule, 0.105 (Ubuntu 22.04) only the .pkla: both
    are installed as shipped, and they grant the same actions to the same user."""
    rules = root / "usr/share/polkit-1/rules.d/50-syncclass-agent.rules"
    pkla = root / "var/lib/polkit-1/localauthority/10-vendor.d/50-syncclass-agent.pkla"
    for path in (rules, pkla):
        assert owner_mode(path) == (0, 0, 0o644), path
        assert path.read_text() == (REPO / "provisioning/polkit" / path.name).read_text()
    authority = configparser.ConfigParser(interpolation=None)
    authority.optionxform = str  # type: ignore[assignment,method-assign]  # keys as written
    authority.read_string(pkla.read_text())
    granted: set[str] = set()
    for name in authority.sections():
        section = authority[name]
        assert section["Identity"] == "unix-user:syncclass", name
        assert section["ResultAny"] == "yes", name  # the agent runs outside any session
        granted.update(section["Action"].split(";"))
    assert granted == set(re.findall(r'"(org\.freedesktop\.[\w.-]+)"', rules.read_text()))


def test_install_creates_user_files_modes_and_a_private_venv(installed: Path) -> None:
    root = installed
    assert "Status: install ok installed" in _dpkg(root, "-s", "syncclass-agent")

    user = entry(root, "passwd", "syncclass")
    uid, gid = int(user[2]), int(user[3])
    assert uid < 1000, "a system user"
    assert user[5:] == [str(RuntimeConfig().state_dir), "/usr/sbin/nologin"]
    assert entry(root, "group", "syncclass")[2] == str(gid)
    for group in ("video", "audio"):
        assert "syncclass" in entry(root, "group", group)[3].split(",")

    config = root / "etc/syncclass/agent.toml"
    assert config.read_text() == (REPO / "provisioning/agent.example.toml").read_text()
    assert owner_mode(config) == (0, gid, 0o640), "the broker password: group syncclass only"
    state = root / str(RuntimeConfig().state_dir).lstrip("/")
    assert owner_mode(state) == (uid, gid, 0o700)
    _check_polkit(root)

    venv = root / "opt/syncclass-agent/venv"
    cfg = configparser.ConfigParser()
    cfg.read_string("[venv]\n" + (venv / "pyvenv.cfg").read_text())
    assert cfg["venv"]["include-system-site-packages"] == "false"
    code = ("import sys, agent, agent.contract, msgspec, paho.mqtt, cryptography, psutil, pyudev; "
            "print(agent.__file__); print(*sys.path, sep='\\n')")
    where = run(venv / "bin/python", "-c", code)
    assert where.returncode == 0, where.stderr
    lines = where.stdout.splitlines()
    assert lines[0].startswith(str(venv)), "the agent runs from the venv's copy"
    assert not [p for p in lines[1:] if "dist-packages" in p], "never system site-packages"

    exe = in_root(root, root / "usr/bin/syncclass-agent")
    assert exe == venv / "bin/syncclass-agent"
    assert not (venv / "bin/syncclass-fleet").exists(), "the fleet has no dependencies here"
    version = run(exe, "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith(f"syncclass-agent {PROJECT_VERSION} (Python 3.")
    check = run(exe, "check", "--simulate", "--json", "--config", str(config))
    assert check.returncode in (0, 1), check.stdout + check.stderr


def test_unit_runs_the_installed_agent_as_its_user(installed: Path) -> None:
    root = installed
    unit = root / "lib/systemd/system/syncclass-agent.service"
    text = unit.read_text()
    settings = dict(line.split("=", 1) for line in text.splitlines()
                    if "=" in line and not line.startswith("#"))
    exe, *args = settings["ExecStart"].split()
    assert exe == "/usr/bin/syncclass-agent"
    assert args == ["run", "--config", "/etc/syncclass/agent.toml"]
    assert settings["User"] == "syncclass"
    assert Path("/var/lib") / settings["StateDirectory"] == RuntimeConfig().state_dir
    if shutil.which("systemd-analyze") is None:
        return
    # Verified with ExecStart pointing at the installed tree (the unit names /usr/bin).
    installed = in_root(root, root / exe.lstrip("/"))
    copy = root.parent / "verify" / unit.name
    copy.parent.mkdir(exist_ok=True)
    copy.write_text(text.replace(exe, str(installed)))
    out = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_upgrade_keeps_config_state_and_a_deleted_config_deleted(root: Path,
                                                              debs: dict[str, Path]) -> None:
    config = root / "etc/syncclass/agent.toml"
    edited = config.read_text().replace('password = "change-me"', 'password = "s3cret"')
    config.write_text(edited)
    state = root / str(RuntimeConfig().state_dir).lstrip("/")
    (state / "seq").write_text("41\n")
    uid = int(entry(root, "passwd", "syncclass")[2])

    _dpkg(root, "-i", str(debs["second"]))

    assert f"Version: {PROJECT_VERSION}+1" in _dpkg(root, "-s", "syncclass-agent")
    assert config.read_text() == edited
    assert (state / "seq").read_text() == "41\n"
    assert int(entry(root, "passwd", "syncclass")[2]) == uid, "the same user, not a new one"
    assert len([line for line in (root / "etc/passwd").read_text().splitlines()
                if line.startswith("syncclass:")]) == 1
    version = run(root / "opt/syncclass-agent/venv/bin/syncclass-agent", "--version")
    assert version.returncode == 0 and PROJECT_VERSION in version.stdout, version.stderr

    # An administrator who deleted the config keeps it deleted (dpkg's rule for conffiles),
    # and the postinst copes instead of failing the upgrade.
    config.unlink()
    _dpkg(root, "-i", str(debs["second"]))
    assert not config.exists()
    assert (state / "seq").read_text() == "41\n"


def test_remove_keeps_config_and_state_purge_deletes_them(root: Path) -> None:
    config = root / "etc/syncclass/agent.toml"
    state = root / str(RuntimeConfig().state_dir).lstrip("/")
    (state / "seq").write_text("7\n")

    _dpkg(root, "-r", "syncclass-agent")
    assert config.is_file() and (state / "seq").is_file()
    assert not (root / "opt/syncclass-agent").exists(), "the venv goes with the package"
    assert not (root / "usr/bin/syncclass-agent").is_symlink()

    _dpkg(root, "-P", "syncclass-agent")
    assert not config.exists() and not state.exists()
    assert not (root / "etc/syncclass").exists()


@pytest.mark.parametrize("python", PYTHONS, ids=lambda p: p.parent.parent.name)
def test_the_shipped_wheels_serve_each_distributions_python(python: Path, tmp_path: Path,
                                                            debs: dict[str, Path]) -> None:
    """The postinst's setup-venv, offline, with Ubuntu 22.04's to Debian 13's Pythons."""
    if not python.exists():
        pytest.skip(f"{python} is not on this machine")
    subprocess.run(["dpkg-deb", "-x", str(debs["first"]), str(tmp_path)], check=True)
    opt = tmp_path / "opt/syncclass-agent"
    made = subprocess.run([str(opt / "setup-venv"), str(python)], capture_output=True,
                          text=True, timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    version = run(opt / "venv/bin/syncclass-agent", "--version")
    assert version.returncode == 0, version.stderr
    wanted = ".".join(python.parent.parent.name.split(".")[:2])
    assert f"(Python {wanted}." in version.stdout
