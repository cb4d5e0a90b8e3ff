"""Which processes hold a device node open, from /proc (as ``fuser`` finds them).

A camera or a sound card in use by the classroom's conferencing app is healthy evidence,
not a fault: the check names the app and leaves the device alone.  ALSA PCM names become
their device node through /proc/asound (``plughw:CARD=C920,DEV=0`` ->
``/dev/snd/pcmC1D0c``).  Another user's file descriptors can only be read by root or
with CAP_SYS_PTRACE, which the agent's unit does not grant: for a PCM, ALSA's own
substream status names the owner to anyone; a camera held by another user's app looks
free, and ffmpeg then meets EBUSY on it, a warning that leaves the holder undisturbed.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["Holder", "holders", "in_use_texts", "pcm_node", "pcm_owners"]

log = logging.getLogger(__name__)

_HW_PCM = re.compile(r"^(?:plug)?hw:(?:CARD=)?([^,]+)(?:,(?:DEV=)?(\d+))?")


@dataclass(frozen=True)
class Holder:
    pid: int
    app: str  # /proc/PID/comm, e.g. "zoom", "pipewire"
    user: str  # the owner's login name (the uid when it has none)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _parent(entry: Path) -> int:
    # /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
    return int(entry.joinpath("stat").read_text().rpartition(")")[2].split()[1])


def holders(node: str, proc: Path = Path("/proc")) -> list[Holder]:
    """Processes other than this one and its children with ``node`` open; [] for no node
    or a node that does not exist (nothing can hold what is not there)."""
    if not node.startswith("/"):
        return []
    try:
        target = os.path.realpath(node, strict=True)
    except OSError:
        return []
    found = []
    me = os.getpid()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fds = list((entry / "fd").iterdir())
            held = any(os.readlink(fd) == target for fd in fds)
            # The agent's own ffmpeg/arecord (a check's, seen by a collection) is no app.
            if held and _parent(entry) != me:
                app = (entry / "comm").read_text().strip()
                found.append(Holder(int(entry.name), app, _user(entry.stat().st_uid)))
        except OSError:  # gone meanwhile, or another user's fds (EACCES): not visible
            continue
    return sorted(found, key=lambda h: h.pid)


def _pcm_card(pcm: str, asound: Path) -> tuple[str, str] | None:
    """(card number, device number) of an ALSA ``hw``/``plughw`` PCM, or None."""
    match = _HW_PCM.match(pcm)
    if not match:
        return None
    card, device = match[1], match[2] or "0"
    if not card.isdigit():  # /proc/asound/<id> is a symlink to card<N>
        try:
            card = (asound / card).resolve(strict=True).name.removeprefix("card")
        except OSError:
            return None
    return card, device


def pcm_node(pcm: str, asound: Path = Path("/proc/asound"),
             dev: Path = Path("/dev/snd"), *, capture: bool = True) -> str:
    """The device node of an ALSA ``hw``/``plughw`` PCM; "" for any other PCM (PipeWire's
    "default", an asoundrc plug), whose holder cannot be told from a node."""
    found = _pcm_card(pcm, asound)
    if found is None:
        return ""
    return str(dev / f"pcmC{found[0]}D{found[1]}{'c' if capture else 'p'}")


def pcm_owners(pcm: str, asound: Path = Path("/proc/asound"),
               proc: Path = Path("/proc")) -> list[Holder]:
    """Who has a capture PCM open, as ALSA itself says (``owner_pid`` in each substream's
    status).  Anyone may read it, so an agent without ptrace rights, which cannot see
    another user's file descriptors, still names the conferencing app that holds a PCM."""
    found = _pcm_card(pcm, asound)
    if found is None:
        return []
    owners = []
    for status in sorted((asound / f"card{found[0]}" / f"pcm{found[1]}c").glob("sub*/status")):
        try:
            fields = {key.strip(): value.strip() for key, _, value in
                      (line.partition(":") for line in status.read_text().splitlines())}
            pid = int(fields["owner_pid"])
            entry = proc / str(pid)
            owners.append(Holder(pid, (entry / "comm").read_text().strip(),
                                 _user(entry.stat().st_uid)))
        except (OSError, KeyError, ValueError):  # closed ("closed"), or gone meanwhile
            continue
    return owners


def in_use_texts(found: list[Holder]) -> tuple[str, str]:
    """The bilingual "in use by" message of a held device."""
    apps = ", ".join(dict.fromkeys(f"{h.app} ({h.user})" for h in found))
    return f"正在被 {apps} 使用", f"in use by {apps}"
