"""Cameras and sound devices from udev (pyudev), and a monitor for hot-plug.

Without a udev daemon (containers, this VM) devices carry only kernel properties, so the
vendor, model and serial fall back to the USB parent's sysfs attributes, and the bus
path is derived from the device's ancestors the way udev's ``path_id`` does.

Identity: a USB device is ``vendor:product:serial``, so it keeps its id on another port;
only a device without a serial (or two that report the same one) falls back to the port.
Roles come from capabilities, not from the subsystem alone:

- a camera is a V4L2 node that captures (udev's ``ID_V4L_CAPABILITIES`` has ``:capture:``
  when udevd ran ``v4l_id``) and sits on a bus.  v4l2loopback registers its nodes with no
  parent device, under ``/sys/devices/virtual``; its name, ``ID_V4L_PRODUCT`` and even its
  capabilities (``exclusive_caps=1`` shows only ``:capture:``) are whatever the user set,
  so the missing bus is the one property it cannot fake;
- a PCM counts as a microphone or speaker when its card is on USB (a speakerphone, a
  camera's microphone).  The onboard HDA codec and the HDMI/DP outputs (PCI cards, always
  there on an Intel mini-PC) count only when the config lists them as ``card:device``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pyudev

from agent.hardware.base import AudioDevice, StopWatching, VideoDevice
from agent.hardware.guard import Guarded

__all__ = ["bus_path", "describe", "identity", "monitor", "sound_devices", "video_devices"]

_PCM = re.compile(r"^pcmC(\d+)D(\d+)([cp])$")
WATCHED = ("video4linux", "sound", "drm")
T = TypeVar("T", VideoDevice, AudioDevice)
_SERIAL_MAX = 40


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


def _usb_ids(device: pyudev.Device) -> tuple[str, str]:
    props = device.properties
    usb = _usb_parent(device)
    return (str(props.get("ID_VENDOR_ID") or _attr(usb, "idVendor")),
            str(props.get("ID_MODEL_ID") or _attr(usb, "idProduct")))


def identity(device: pyudev.Device, info: dict[str, str]) -> str:
    """``vendor:product:serial`` of a USB device; ``vendor:product@port`` without a serial;
    the bus path (or the kernel name) of anything else."""
    vendor, product = _usb_ids(device)
    if not (vendor and product):
        return info["bus_path"] or device.sys_name
    if info["serial"]:
        return f"{vendor}:{product}:{_short(info['serial'])}"
    return f"{vendor}:{product}@{info['bus_path']}"


def _short(serial: str) -> str:
    """The serial as an id part: the raw sysfs value may hold spaces and run to 126
    characters (the fleet keeps entities in 128), so odd characters become ``_`` and a
    long serial keeps its head and a hash of the whole."""
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", serial)
    if len(clean) <= _SERIAL_MAX:
        return clean
    digest = hashlib.sha256(serial.encode()).hexdigest()[:8]
    return f"{clean[:_SERIAL_MAX - 9]}~{digest}"


def _unique(found: list[T]) -> list[T]:
    """Devices that share an id (cheap cameras that all report serial "0001") get their
    port appended: two present devices must never count as one."""
    ids = [d.id for d in found]
    return [d if ids.count(d.id) == 1 else replace(d, id=f"{d.id}@{d.bus_path}")
            for d in found]


def _is_camera(dev: pyudev.Device) -> bool:
    # UVC cameras expose a metadata node next to the picture node; index 0 is the picture.
    if _attr(dev, "index") not in ("", "0") or not dev.device_node:
        return False
    caps = dev.properties.get("ID_V4L_CAPABILITIES")
    if caps is not None and ":capture:" not in str(caps):
        return False  # an output-only node (a loopback sink, an encoder's output)
    return "/devices/virtual/" not in dev.sys_path


def video_devices(context: pyudev.Context) -> list[VideoDevice]:
    found = []
    for dev in context.list_devices(subsystem="video4linux"):
        if not _is_camera(dev):
            continue
        info = describe(dev)
        name = _attr(dev, "name") or info["model"] or dev.sys_name
        found.append(VideoDevice(id=identity(dev, info), name=name, node=dev.device_node,
                                 **info))
    return _unique(found)


def sound_devices(context: pyudev.Context, capture: bool,
                  onboard: Collection[str] = ()) -> list[AudioDevice]:
    """PCMs of USB sound cards, and the onboard ones ``onboard`` lists as ``card:device``
    (the card's ALSA id, as ``aplay -l`` shows it, e.g. ``PCH:0`` or ``HDMI:3``)."""
    found = []
    for dev in context.list_devices(subsystem="sound"):
        match = _PCM.match(dev.sys_name)
        if not match or (match.group(3) == "c") != capture:
            continue
        card_no, dev_no = match.group(1), match.group(2)
        card = dev.find_parent("sound")
        card_id = _attr(card, "id") or card_no
        if _usb_parent(dev) is None and f"{card_id}:{dev_no}" not in onboard:
            continue
        info = describe(dev)
        key = identity(dev, info) if _usb_parent(dev) is not None else (
            info["bus_path"] or "card" + card_no)
        found.append(AudioDevice(
            id=f"{key}:{dev_no}",
            name=info["model"] or card_id,
            pcm=f"plughw:CARD={card_id},DEV={dev_no}",
            **info,
        ))
    return _unique(found)


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
