"""Which machine this is, so a cloned disk image does not run as somebody else's device.

Schools image one mini-PC and copy the disk to the others.  Each copy then carries the
same config and state dir, so the same device id, credentials and message sequence: on
the broker the copies take the client id from each other in a loop, and the fleet drops
their messages as duplicates.  The agent therefore records the machine it was enrolled
on (``/etc/machine-id`` and the MAC addresses of the physical network cards) in its state
dir, at enrolment or on its first start, and refuses to run when it finds itself on
another machine.

A cloned image usually keeps ``/etc/machine-id`` too (unless the image was prepared with
``systemd-machine-id-setup`` or sysprep), so the network cards are what tells copies
apart: another machine is one whose machine-id differs, or none of whose physical NICs is
one of the enrolled ones.  A NIC added or replaced (a USB adapter) keeps the others, so it
is not another machine; a new mainboard is, and is re-enrolled like a new PC.

It does not connect to tell the fleet: it could only do so under the device's own client
id (which throws the real classroom off the broker) and session (whose messages the fleet
would drop as duplicates, or worse, accept).  It stops before its first connection, with
an exit code systemd does not restart (78), and says in the journal what to do.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from agent.contract import utcnow

__all__ = ["FILE_NAME", "ClonedImage", "MachineIdentity", "read_identity", "record", "verify"]

FILE_NAME = "machine.json"
_NO_MAC = "00:00:00:00:00:00"


@dataclass(frozen=True)
class MachineIdentity:
    machine_id: str  # "" when the machine has none (a container)
    macs: tuple[str, ...]  # physical NICs, lower case, sorted

    def digest(self) -> str:
        """A short hash of the identity, for logs and the fleet, without the MACs."""
        text = "\n".join([self.machine_id, *self.macs])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def differences(self, current: MachineIdentity) -> list[tuple[str, str]]:
        """What tells ``current`` apart from this (the enrolled) machine, zh and en."""
        out = []
        if self.machine_id != current.machine_id:
            out.append((f"machine-id 不同（注册时 {self.machine_id or '无'}，"
                        f"现在 {current.machine_id or '无'}）",
                        f"machine-id differs (enrolled {self.machine_id or 'none'}, "
                        f"now {current.machine_id or 'none'})"))
        if self.macs and not set(self.macs) & set(current.macs):
            enrolled, now = ", ".join(self.macs), ", ".join(current.macs) or "-"
            out.append((f"网卡 MAC 地址不同（注册时 {enrolled}，现在 {now}）",
                        f"no enrolled network card is here (enrolled {enrolled}, now {now})"))
        return out


def read_identity(root: Path = Path("/")) -> MachineIdentity:
    """This machine's identity, read under ``root`` (``/``; tests give a copy)."""
    try:
        machine_id = (root / "etc" / "machine-id").read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        machine_id = ""
    net = root / "sys" / "class" / "net"
    macs = set()
    for nic in sorted(net.glob("*")):
        # Bridges, veths, tunnels and docker0 live under /devices/virtual/ and get new
        # addresses at will; the MAC of a real card (PCI, USB) is what a clone lacks.
        if "/devices/virtual/" in str(nic.resolve()):
            continue
        try:
            mac = (nic / "address").read_text().strip().lower()
        except OSError:
            continue
        if mac and mac != _NO_MAC:
            macs.add(mac)
    return MachineIdentity(machine_id, tuple(sorted(macs)))


class ClonedImage(Exception):
    """This state dir was enrolled on another machine."""

    def __init__(self, device_id: str, differences: list[tuple[str, str]]) -> None:
        zh = "；".join(d[0] for d in differences)
        en = "; ".join(d[1] for d in differences)
        self.message_zh = (f"本机不是注册为 {device_id} 的那台电脑（{zh}）。这通常是复制"
                           f"系统盘（克隆镜像）造成的：两台电脑用同一个设备身份会互相顶掉连接，"
                           f"数据也会被当作重复而丢弃。请在本机用新的注册码重新注册："
                           f"syncclass-agent enrol <注册码>，然后重启 syncclass-agent。")
        self.message_en = (f"this is not the PC enrolled as {device_id} ({en}). A cloned disk "
                           f"image does this: two PCs with one device identity throw each "
                           f"other off the broker and their data is dropped as duplicates. "
                           f"Enrol this PC with a new code: syncclass-agent enrol <code>, then "
                           f"restart syncclass-agent.")
        super().__init__(f"{self.message_zh}\n{self.message_en}")
        self.device_id = device_id
        self.differences = differences


def record(state_dir: Path, device_id: str, identity: MachineIdentity) -> None:
    """Write ``identity`` as the machine ``device_id`` is enrolled on (atomically)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / FILE_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({
        "device_id": device_id, "machine_id": identity.machine_id, "macs": list(identity.macs),
        "recorded_at": utcnow().isoformat(),
    }, indent=1) + "\n")
    os.replace(tmp, path)


def verify(state_dir: Path, device_id: str, current: MachineIdentity) -> None:
    """Raise ClonedImage when the state dir belongs to another machine; on a first start
    (no record yet) this machine becomes the enrolled one."""
    path = state_dir / FILE_NAME
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        record(state_dir, device_id, current)
        return
    except ValueError:  # a torn or hand-edited file: say so rather than guess
        raise ClonedImage(device_id, [(f"{path} 已损坏", f"{path} is damaged")]) from None
    enrolled = MachineIdentity(str(stored.get("machine_id", "")),
                               tuple(str(m) for m in stored.get("macs", [])))
    differences = enrolled.differences(current)
    if differences:
        raise ClonedImage(device_id, differences)
    if stored.get("device_id") != device_id:  # enrolled again as another device, here
        record(state_dir, device_id, current)
