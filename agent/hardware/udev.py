"""Cameras and sound devices from udev (pyudev), and a monitor for hot-plug.

Without a udev daemon (containers, this VM) devices carry only kernel properties, so the
vendor, model and serial fall back to the USB parent's sysfs attributes, and the bus
path is derived from the device's ancestors the way udev's ``path_id`` does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

import pyudev

from agent.hardware.base import AudioDevice, StopWatching, VideoDevice
from agent.hardware.guard import Guarded

__all__ = ["bus_path", "describe", "monitor", "sound_devices", "video_devices"]

_PCM = re.compile(r"^pcmC(\d+)D(\d+)([cp])$")
WATCHED = ("video4linux", "sound", "drm")


def _attr(device: pyudev.Device | None, name: str) -> str:
    if device is None:
        return ""
    try:
        value = device.attributes.get(name)
    except (KeyError, OSError):
        return ""
    return value.decode(errors="replace").strip() if isinstance(value, bytes) else ""


def _usb_parent(device: pyudev.Device) -> pyudev.Device | None:
    return next((a for a in device.ancestors
                 if a.subsystem == "usb" and a.device_type == "usb_device"), None)


def bus_path(device: pyudev.Device) -> str:
    """udev's ID_PATH when udevd set it; else ``pci-<addr>[-usb-<port>]`` from sysfs."""
    known = device.properties.get("ID_PATH")
    if known:
        return str(known)
    parts = []
    usb = _usb_parent(device)
    if usb is not None:
        parts.append(f"usb-{usb.sys_name}")
    pci = next((a for a in device.ancestors if a.subsystem == "pci"), None)
    if pci is not None:
        parts.insert(0, f"pci-{pci.sys_name}")
    return "-".join(parts)


def describe(device: pyudev.Device) -> dict[str, str]:
    """vendor, model, serial, bus_path of a device, from udev or the USB parent."""
    props = device.properties
    usb = _usb_parent(device)
    return {
        "vendor": str(props.get("ID_VENDOR_FROM_DATABASE") or props.get("ID_VENDOR")
                      or _attr(usb, "manufacturer")),
        "model": str(props.get("ID_MODEL_FROM_DATABASE") or props.get("ID_MODEL")
                     or _attr(usb, "product")),
        "serial": str(props.get("ID_SERIAL_SHORT") or _attr(usb, "serial")),
        "bus_path": bus_path(device),
    }


def video_devices(context: pyudev.Context) -> list[VideoDevice]:
    found = []
    for dev in context.list_devices(subsystem="video4linux"):
        # UVC cameras expose a metadata node next to the picture node; index 0 is the picture.
        if _attr(dev, "index") not in ("", "0") or not dev.device_node:
            continue
        info = describe(dev)
        name = _attr(dev, "name") or info["model"] or dev.sys_name
        found.append(VideoDevice(id=info["bus_path"] or dev.sys_name, name=name,
                                 node=dev.device_node, **info))
    return found


def sound_devices(context: pyudev.Context, capture: bool) -> list[AudioDevice]:
    found = []
    for dev in context.list_devices(subsystem="sound"):
        match = _PCM.match(dev.sys_name)
        if not match or (match.group(3) == "c") != capture:
            continue
        card_no, dev_no = match.group(1), match.group(2)
        card = dev.find_parent("sound")
        card_id = _attr(card, "id") or card_no
        info = describe(dev)
        found.append(AudioDevice(
            id=f"{info['bus_path'] or 'card' + card_no}:{dev_no}",
            name=info["model"] or card_id,
            pcm=f"plughw:CARD={card_id},DEV={dev_no}",
            **info,
        ))
    return found


def monitor(context: pyudev.Context, on_change: Callable[[], object],
            subsystems: Iterable[str] = WATCHED) -> StopWatching:
    """Call ``on_change`` after each add/remove/change uevent of ``subsystems``.

    Listens to udevd when it runs (devices then carry their properties), else to the
    kernel directly (root only); a machine without either starts and sees nothing.
    """
    source = "udev" if Path("/run/udev/control").exists() else "kernel"
    mon = pyudev.Monitor.from_netlink(context, source=source)
    for subsystem in subsystems:
        mon.filter_by(subsystem)

    def handle(device: pyudev.Device) -> None:
        if device.action in ("add", "remove", "change"):
            on_change()

    observer = pyudev.MonitorObserver(mon, callback=Guarded(handle, "udev hot-plug callback"),
                                      name="udev-hotplug")
    observer.daemon = True
    observer.start()
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            observer.stop()

    return stop
