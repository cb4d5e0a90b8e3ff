"""What the camera, microphone, speaker and display probes share: presence.

Each device is its own liveness entity: a device seen since the agent started and gone
now stays in the section as ``ok: false`` ("camera gone, agent alive"), instead of
silently dropping out of the list.  A device moved to another USB port gets a new id (ids
follow the port), and the old one is forgotten when the agent restarts.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar, Final

from agent.contract import CheckVerdict
from agent.probes.base import CheckParams, Finding, Probe, ProbeContext, ProbeReport, mark

__all__ = ["MISSING", "PresenceProbe"]

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


class PresenceProbe(Probe):
    role: ClassVar[str]  # a key of MISSING
    minimum: ClassVar[str]  # the Thresholds field with the expected count

    def __init__(self) -> None:
        self._known: dict[str, dict[str, Any]] = {}

    @abstractmethod
    def present(self, ctx: ProbeContext) -> dict[str, dict[str, Any]]:
        """Devices there now: id -> JSON detail (with ``id`` and ``name``)."""

    def inspect(self, ctx: ProbeContext, detail: dict[str, Any]) -> tuple[dict[str, Any],
                                                                          list[Finding]]:
        """A check's deeper look at one present device: extra fields and findings."""
        return {}, []

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
        now = self.present(ctx)
        self._known = {**self._known, **now}  # replaced whole: collect and check may overlap
        devices: list[dict[str, Any]] = []
        findings: list[Finding] = []
        for detail in now.values():
            extra, found = self.inspect(ctx, detail) if deep else ({}, [])
            devices.append(mark({**detail, **extra, "present": True}, found))
            findings += found
        for dev_id, detail in self._known.items():
            if dev_id not in now:
                label = detail.get("name") or dev_id
                gone = self._missing(f"{self.role}:{dev_id}", f"{label}：", f"{label}: ")
                devices.append(mark({"id": dev_id, "name": detail.get("name", ""),
                                     "present": False}, [gone]))
                findings.append(gone)
        need = int(getattr(ctx.thresholds, self.minimum))
        if len(now) < need and len(self._known) <= len(now):
            findings.append(self._missing(f"{self.role}:*", f"应有 {need} 个，只有 {len(now)} 个：",
                                          f"{len(now)} of {need} expected: ", len(now), need))
        return ProbeReport(mark({"devices": devices, "count": len(now)}, findings), findings)
