"""Run under ``umockdev-wrapper``: a USB camera plugged and unplugged in a umockdev testbed.

LinuxHardware watches through the real pyudev monitor (libudev under umockdev's preload
receives the testbed's uevents); the watcher raises on the first event it gets, as a
publish that fails would.  Prints a JSON object: the events the watcher received, the
failures the guard counted, and whether the monitor thread is still alive.
"""

from __future__ import annotations

import ctypes
import json
import threading
from pathlib import Path
from typing import Any

from agent.hardware.linux import LinuxHardware
from tests.waiting import wait_until


class _GError(ctypes.Structure):
    _fields_ = [("domain", ctypes.c_uint32), ("code", ctypes.c_int),
                ("message", ctypes.c_char_p)]


class Testbed:
    """libumockdev's C API through ctypes (no GObject introspection in the venv)."""

    def __init__(self) -> None:
        self._lib = ctypes.CDLL("libumockdev.so.0")
        self._lib.umockdev_testbed_new.restype = ctypes.c_void_p
        self._lib.umockdev_testbed_add_device.restype = ctypes.c_char_p
        self._tb = ctypes.c_void_p(self._lib.umockdev_testbed_new())
        self._loaded: set[str] = set()  # the "P: /devices/..." lines of loaded devices

    def add(self, subsystem: str, name: str, parent: bytes | None,
            attributes: dict[str, str], properties: dict[str, str]) -> bytes:
        args: list[bytes | None] = []
        for pairs in (attributes, properties):
            for key, value in pairs.items():
                args += [key.encode(), value.encode()]
            args.append(None)
        path = self._lib.umockdev_testbed_add_device(
            self._tb, subsystem.encode(), name.encode(), parent, *args)
        assert path, f"umockdev could not add {name}"
        return bytes(path)

    def load(self, path: Path) -> None:
        """Add the devices of a ``.umockdev`` file (umockdev-record's format; leading
        ``#`` lines, which umockdev itself does not accept, are the file's header).

        Devices an earlier file added (the USB controller two fixtures share) are left
        out: umockdev refuses to add a device twice.
        """
        lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
        records = [r for r in "\n".join(lines).split("\n\n") if r.strip()]
        fresh = [r for r in records if r.split("\n", 1)[0] not in self._loaded]
        self._loaded |= {r.split("\n", 1)[0] for r in records}
        text = "\n\n".join(fresh) + "\n"
        error = ctypes.POINTER(_GError)()
        if not self._lib.umockdev_testbed_add_from_string(self._tb, text.encode(),
                                                          ctypes.byref(error)):
            raise ValueError(f"{path}: {error.contents.message.decode()}")

    def uevent(self, sys_path: bytes, action: str) -> None:
        self._lib.umockdev_testbed_uevent(self._tb, sys_path, action.encode())

    def remove(self, sys_path: bytes) -> None:
        self._lib.umockdev_testbed_remove_device(self._tb, sys_path)


def main() -> None:
    bed = Testbed()
    hardware = LinuxHardware()
    events: list[dict[str, Any]] = []

    def on_event(event: dict[str, Any]) -> None:
        events.append(event)
        if len(events) == 1:
            raise RuntimeError("the first publish failed")

    stop = hardware.watch(on_event)

    def deliver(sys_path: bytes, action: str, count: int) -> bool:
        # The monitor thread binds its socket on its own schedule and the tracker drops
        # repeats, so the uevent is repeated until the watcher has seen it.
        # A slow machine gets time: each repeat waits a second, so as not to flood the
        # monitor's socket while the tracker is still busy with the previous uevent.
        def seen() -> bool:
            bed.uevent(sys_path, action)
            return wait_until(lambda: len(events) >= count, 1.0)
        return wait_until(seen, 45)

    usb = bed.add("usb", "1-2", None,
                  {"idVendor": "046d", "idProduct": "0825", "serial": "A1B2C3",
                   "manufacturer": "Logitech", "product": "Webcam C270"},
                  {"DEVTYPE": "usb_device"})
    camera = bed.add("video4linux", "video0", usb, {"name": "Webcam C270", "index": "0"},
                     {"DEVNAME": "/dev/video0"})
    # A graphics card with no connectors: no display, but its uevents make the watcher look.
    card = bed.add("drm", "card9", None, {}, {"DEVNAME": "/dev/dri/card9", "DEVTYPE": "drm_minor"})
    added = deliver(camera, "add", 1)
    bed.uevent(camera, "remove")
    # umockdev sends the uevent while the node is still in sysfs (udev sends it after the
    # kernel removed it), so the watcher may look too early and still see the camera:
    # after the removal, another watched uevent makes it look again, until it has.
    bed.remove(camera)
    removed = deliver(card, "change", 2)
    threads = [t.name for t in threading.enumerate() if t.is_alive()]
    stop()
    print(json.dumps({"added": added, "removed": removed, "events": events,
                      "threads": threads}))


if __name__ == "__main__":
    main()
