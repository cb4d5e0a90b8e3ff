"""What the camera, microphone, speaker and display probes share: presence.

Each device is its own liveness entity: a device of the classroom's baseline (see
agent.baseline) that is gone now stays in the section as ``ok: false`` ("camera gone,
agent alive") instead of silently dropping out of the list, across restarts too.  Ids are
USB vendor:product:serial, so a device moved to another port is the same device; devices
outside the baseline are listed with ``expected: false`` and cannot stand in for a
missing one.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar, Final, Generic, Protocol, TypeVar

from agent.baseline import Baseline
from agent.contract import CheckVerdict
from agent.hardware.base import HardwareError
from agent.probes.base import CheckParams, Finding, Probe, ProbeContext, ProbeReport, mark

__all__ = ["MISSING", "UNUSABLE", "PresenceProbe"]


class _Device(Protocol):
    @property
    def id(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


D = TypeVar("D", bound=_Device)

#: role -> (reason, Chinese, English) for a device that is not there.
MISSING: Final[dict[str, tuple[str, str, str]]] = {
    "camera": (
        "camera_missing",
        "摄像头未连接（USB 线松动或设备损坏）",
        "Camera not connected (loose USB cable or faulty device)",
    ),
    "microphone": (
        "microphone_missing",
        "麦克风未连接（检查 USB/音频线）",
        "Microphone not connected (check the USB/audio cable)",
    ),
    "speaker": (
        "speaker_missing",
        "扬声器未连接（检查音频线和功放电源）",
        "Speaker not connected (check the audio cable and amplifier power)",
    ),
    "display": (
        "display_disconnected",
        "显示器/投影仪未连接（检查 HDMI 线和投影仪电源）",
        "Display/projector not connected (check the HDMI cable and projector power)",
    ),
}

#: role -> (Chinese, English) for a device in use by other software (a warning: it is
#: there, only not checked) and for one that cannot be read at all (a failure).
UNUSABLE: Final[dict[str, tuple[tuple[str, str], tuple[str, str]]]] = {
    "camera": (
        ("摄像头正被课堂软件使用，无法抽帧检查画面（设备在线）",
         "camera in use by the classroom software; picture not checked (device is present)"),
        ("无法采集画面（设备被其他软件占用或故障，重新插拔后再试）",
         "cannot capture a picture (in use by other software or faulty; re-plug and retry)"),
    ),
    "microphone": (
        ("麦克风正被课堂软件使用，无法录音检查（设备在线）",
         "microphone in use by the classroom software; level not checked (device is present)"),
        ("无法录音（声卡被占用或故障，重新插拔后再试）",
         "cannot record (sound card busy or faulty; re-plug and retry)"),
    ),
}


class PresenceProbe(Probe, Generic[D]):
    role: ClassVar[str]  # a key of MISSING
    minimum: ClassVar[str]  # the Thresholds field with the expected count
    # Whether the context's persistent baseline applies; else this probe's memory only.
    persistent: ClassVar[bool] = True

    def __init__(self) -> None:
        self._memory = Baseline()

    @abstractmethod
    def present(self, ctx: ProbeContext) -> list[D]:
        """Devices there now."""

    def describe(self, device: D) -> dict[str, Any]:
        """A device's JSON detail (with ``id`` and ``name``)."""
        return device.to_json()

    def inspect(self, ctx: ProbeContext, device: D, label: str,
                entity: str) -> tuple[dict[str, Any], list[Finding]]:
        """A check's deeper look at one present device: extra fields and findings."""
        return {}, []

    def unusable(self, error: HardwareError | str, label: str,
                 entity: str) -> tuple[dict[str, Any], list[Finding]]:
        """``inspect``'s answer when the device could not be read (``error``: why)."""
        busy, failed = UNUSABLE[self.role]
        if isinstance(error, HardwareError) and error.reason == f"{self.role}_busy":
            return {"busy": True}, [Finding(CheckVerdict.WARN, error.reason, f"{label}：{busy[0]}",
                                            f"{label}: {busy[1]}", entity)]
        why = error.message if isinstance(error, HardwareError) else error
        return {}, [Finding(CheckVerdict.FAIL, f"{self.role}_capture_failed",
                            f"{label}：{failed[0]}：{why}", f"{label}: {failed[1]}: {why}", entity)]

    def collect(self, ctx: ProbeContext) -> ProbeReport:
        return self._survey(ctx, deep=False)

    def check(self, ctx: ProbeContext, params: CheckParams) -> ProbeReport:
        return self._survey(ctx, deep=True)

    def _missing(self, entity: str, zh_prefix: str, en_prefix: str,
                 value: float | None = None, threshold: float | None = None) -> Finding:
        reason, zh, en = MISSING[self.role]
        return Finding(CheckVerdict.FAIL, reason, f"{zh_prefix}{zh}", f"{en_prefix}{en}",
                       entity, value, threshold)

    def _survey(self, ctx: ProbeContext, *, deep: bool) -> ProbeReport:
        there = self.present(ctx)
        now = {device.id: self.describe(device) for device in there}
        baseline = ctx.baseline if self.persistent and ctx.baseline else self._memory
        expected = baseline.expected(self.name, now)
        devices: list[dict[str, Any]] = []
        findings: list[Finding] = []
        for device in there:
            detail = now[device.id]
            label = detail.get("name") or device.id
            extra, found = (self.inspect(ctx, device, label, f"{self.role}:{device.id}")
                            if deep else ({}, []))
            devices.append(mark({**detail, **extra, "present": True,
                                 "expected": device.id in expected}, found))
            findings += found
        for dev_id, detail in expected.items():
            if dev_id not in now:
                label = detail.get("name") or dev_id
                gone = self._missing(f"{self.role}:{dev_id}", f"{label}：", f"{label}: ")
                devices.append(mark({"id": dev_id, "name": detail.get("name", ""),
                                     "present": False, "expected": True}, [gone]))
                findings.append(gone)
        need = int(getattr(ctx.thresholds, self.minimum))
        if len(now) < need and set(expected) <= set(now):
            findings.append(self._missing(f"{self.role}:*", f"应有 {need} 个，只有 {len(now)} 个：",
                                          f"{len(now)} of {need} expected: ", len(now), need))
        return ProbeReport(mark({"devices": devices, "count": len(now)}, findings), findings)
