"""Hot-plug events as the contract's ``event`` payload body, shared by both backends."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from agent.contract import EventType
from agent.hardware.guard import Guarded

if TYPE_CHECKING:
    from agent.hardware.base import Hardware, HotplugCallback, StopWatching

__all__ = [
    "ROLE_NAMES",
    "DeviceTracker",
    "device_event",
    "diff_devices",
    "poll_every",
    "snapshot",
]

#: Device role -> (Chinese, English) name as a technician says it.
ROLE_NAMES: Final[dict[str, tuple[str, str]]] = {
    "camera": ("摄像头", "Camera"),
    "microphone": ("麦克风", "Microphone"),
    "speaker": ("扬声器", "Speaker"),
    "display": ("显示器/投影仪", "Display/projector"),
}


def device_event(
    role: str, device_id: str, added: bool, detail: Mapping[str, Any]
) -> dict[str, Any]:
    zh, en = ROLE_NAMES[role]
    label = str(detail.get("name") or device_id)
    if added:
        message_zh = f"{zh}已连接：{label}"
        message_en = f"{en} connected: {label}"
    else:
        message_zh = f"{zh}已断开：{label}（检查 USB/视频线是否松动）"
        message_en = f"{en} disconnected: {label} (check the USB/video cable)"
    return {
        "type": (EventType.DEVICE_ADDED if added else EventType.DEVICE_REMOVED).value,
        "entity": f"{role}:{device_id}",
        "detail": dict(detail),
        "message_zh": message_zh,
        "message_en": message_en,
    }


def diff_devices(
    role: str,
    before: Mapping[str, Mapping[str, Any]],
    after: Mapping[str, Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Events turning the ``before`` set of devices (id -> detail) into ``after``."""
    events = [device_event(role, i, False, d) for i, d in before.items() if i not in after]
    events += [device_event(role, i, True, d) for i, d in after.items() if i not in before]
    return events


def snapshot(hardware: Hardware) -> dict[str, dict[str, dict[str, Any]]]:
    """role -> id -> detail of every device present (displays: connected) now."""
    return {
        "camera": {d.id: d.to_json() for d in hardware.cameras()},
        "microphone": {d.id: d.to_json() for d in hardware.microphones()},
        "speaker": {d.id: d.to_json() for d in hardware.speakers()},
        "display": {d.id: {**d.to_json(), "name": d.monitor or d.id}
                    for d in hardware.displays() if d.connected},
    }


class DeviceTracker:
    """Remembers the devices present and tells watchers what changed on each ``poll``.

    Backends call ``poll`` whenever something may have changed (a udev uevent, a
    simulated fault); polling twice with no change emits nothing.
    """

    def __init__(self, hardware: Hardware) -> None:
        self._hardware = hardware
        self._lock = threading.Lock()
        self._seen = snapshot(hardware)
        self._callbacks: list[HotplugCallback] = []

    def add(self, callback: HotplugCallback) -> None:
        with self._lock:
            self._callbacks.append(callback)

    def remove(self, callback: HotplugCallback) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    def poll(self) -> list[dict[str, Any]]:
        now = snapshot(self._hardware)
        with self._lock:
            events = [e for role in now for e in diff_devices(role, self._seen[role], now[role])]
            self._seen = now
            callbacks = list(self._callbacks)
        for event in events:
            for callback in callbacks:
                callback(event)
        return events


def poll_every(poll: Callable[[], object], interval_s: float, name: str) -> StopWatching:
    """Call ``poll`` every ``interval_s`` in a daemon thread until the returned stop()."""
    stop = threading.Event()
    guarded = Guarded(poll, name)

    def loop() -> None:
        while not stop.wait(interval_s):
            guarded()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()

    def stop_polling() -> None:
        stop.set()
        if thread is not threading.current_thread():
            thread.join()

    return stop_polling
