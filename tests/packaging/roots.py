"""A clean root directory for installing into, and looking at what was installed there."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

__all__ = ["clean_root", "entry", "in_root", "owner_mode", "run"]

# base-passwd's static entries that the package relies on (video and audio own the
# camera and sound-card device nodes).
PASSWD = ("root:x:0:0:root:/root:/bin/bash\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
GROUP = "root:x:0:\naudio:x:29:\nvideo:x:44:\nnogroup:x:65534:\n"


def clean_root(root: Path) -> Path:
    """Users and groups as base-passwd leaves them, and an empty dpkg database."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text(PASSWD)
    (root / "etc/group").write_text(GROUP)
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n")
    (root / "etc/gshadow").write_text("root:*::\naudio:*::\nvideo:*::\nnogroup:*::\n")
    for name in ("shadow", "gshadow"):
        (root / "etc" / name).chmod(0o640)
    for sub in ("info", "updates"):
        (root / "var/lib/dpkg" / sub).mkdir(parents=True)
    for name in ("status", "available"):
        (root / "var/lib/dpkg" / name).touch()
    return root


def entry(root: Path, table: str, name: str) -> list[str]:
    for line in (root / "etc" / table).read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    raise AssertionError(f"{name} not in {table}")


def owner_mode(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def in_root(root: Path, link: Path) -> Path:
    """Where an absolute symlink inside the root points, inside the root."""
    target = Path(os.readlink(link))
    return root / target.relative_to("/")


def run(exe: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # From / with a bare environment: neither the repository's checkout nor PYTHONPATH
    # can stand in for what the package installed.
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ["PATH"]}, cwd="/")
