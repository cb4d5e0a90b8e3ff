"""What the camera, microphone, speaker and display probes share: presence.

Each device is its own liveness entity: a device of the classroom's baseline (see
agent.baseline) that is gone now stays in the section as ``ok: false`` ("camera gone,
agent alive") instead of silently dropping out of the list, across restarts too.  Ids are
USB vendor:product:serial, so a device moved to another port is the same device; devices
outside the baseline are listed with ``expected: false`` and cannot stand in for a
missing one.

Cameras and microphones are sampled (opened: a picture, a second of sound) in checks and,
one device per collection every ``sample_every_s``, between them; never while another
process holds the device (it is then "in use by <app>", healthy evidence) nor while a
lesson is near (agent.quiet).  A device not sampled carries passive evidence instead: who
holds it, when it was last sampled and last good, and the last sample's fault, which
stands until a newer sample clears it.
"""

from __future__ import annotations

import logging
import threading
from abc import abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Final, Generic, Protocol, TypeVar, cast

from agent.baseline import Baseline
from agent.compat import UTC
from agent.contract import MISSING_REASONS, CheckVerdict, format_ts
from agent.hardware.base import AudioDevice, HardwareError, VideoDevice
from agent.hardware.holders import Holder, in_use_texts
from agent.probes.base import CheckParams, Finding, Probe, ProbeContext, ProbeReport, mark

__all__ = ["MISSING", "UNUSABLE", "PresenceProbe"]

log = logging.getLogger(__name__)


class _Device(Protocol):
    @property
    def id(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


D = TypeVar("D", bound=_Device)

#: role -> (reason, Chinese, English) for a device that is not there.
MISSING: Final[dict[str, tuple[str, str, str]]] = {
    "camera": (
        MISSING_REASONS["camera"],
        "摄像头未连接（USB 线松动或设备损坏）",
        "Camera not connected (loose USB cable or faulty device)",
    ),
    "microphone": (
        MISSING_REASONS["microphone"],
        "麦克风未连接（检查 USB/音频线）",
        "Microphone not connected (check the USB/audio cable)",
    ),
    "speaker": (
        MISSING_REASONS["speaker"],
        "扬声器未连接（检查音频线和功放电源）",
        "Speaker not connected (check the audio cable and amplifier power)",
    ),
    "display": (
        MISSING_REASONS["display"],
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


@dataclass(frozen=True)
class _Sample:
    """A device's last sample: when, what it showed, and what it found."""

    at: datetime
    extra: dict[str, Any]
    findings: list[Finding]

    @property
    def good(self) -> bool:
        return not any(f.level is CheckVerdict.FAIL for f in self.findings)


class PresenceProbe(Probe, Generic[D]):
    role: ClassVar[str]  # a key of MISSING
    minimum: ClassVar[str]  # the Thresholds field with the expected count
    # Whether the context's persistent baseline applies; else this probe's memory only.
    persistent: ClassVar[bool] = True
    # Whether ``inspect`` samples the device (opens it): such probes also sample between
    # checks, and never a device another process holds (see agent.quiet).
    samples: ClassVar[bool] = False

    def __init__(self) -> None:
        self._memory = Baseline()
        self._samples: dict[str, _Sample] = {}  # device id -> its last sample
        self._last_good: dict[str, datetime] = {}
        # One sample at a time: a collection does not sample while a check does (the
        # second ffmpeg would only meet EBUSY); it reports passive evidence instead.
        self._sampling = threading.Lock()

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

    def held(self, ctx: ProbeContext, device: D) -> list[Holder]:
        """Other processes holding ``device`` (only sampling probes ask)."""
        hw_device = cast("VideoDevice | AudioDevice", device)
        try:
            return ctx.hardware.holders(hw_device)
        except OSError as exc:  # /proc unreadable: cannot tell, so sample as before
            log.warning("cannot tell who holds %s: %s", device.id, exc)
            return []

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
        return self._survey(ctx, None)

    def check(self, ctx: ProbeContext, params: CheckParams) -> ProbeReport:
        return self._survey(ctx, params)

    def _missing(self, entity: str, zh_prefix: str, en_prefix: str,
                 value: float | None = None, threshold: float | None = None) -> Finding:
        reason, zh, en = MISSING[self.role]
        return Finding(CheckVerdict.FAIL, reason, f"{zh_prefix}{zh}", f"{en_prefix}{en}",
                       entity, value, threshold)

    def _due(self, ctx: ProbeContext, there: list[D]) -> str | None:
        """The one device a collection samples: the longest unsampled, once it is due.

        One per collection keeps a collection within its deadline (a camera's sample
        takes seconds) and spreads the devices over the intervals.
        """
        if not self.samples or ctx.sample_every_s <= 0 or not there:
            return None
        never = datetime.min.replace(tzinfo=UTC)
        oldest = min(there, key=lambda d: self._samples[d.id].at if d.id in self._samples
                     else never)
        last = self._samples.get(oldest.id)
        if last is not None and (ctx.clock() - last.at).total_seconds() < ctx.sample_every_s:
            return None
        return oldest.id

    def _look(self, ctx: ProbeContext, device: D, label: str, entity: str,
              sample: bool, wait: bool) -> tuple[dict[str, Any], list[Finding]]:
        """One present device: sampled when ``sample`` allows and nothing holds it, else
        passive evidence (held by whom, the last sample and its findings)."""
        holders = self.held(ctx, device) if self.samples else []
        last = self._samples.get(device.id)
        evidence: dict[str, Any] = {}
        if last is not None:
            evidence["sampled_at"] = format_ts(last.at)
        if device.id in self._last_good:
            evidence["last_good_at"] = format_ts(self._last_good[device.id])
        if holders:
            zh, en = in_use_texts(holders)
            evidence |= {"held_by": [h.to_json() for h in holders],
                         "message": f"{label}：{zh} / {label}: {en}"}
        if not holders and sample and self._sampling.acquire(blocking=wait):
            try:
                extra, found = self.inspect(ctx, device, label, entity)
            finally:
                self._sampling.release()
            now = ctx.clock()
            taken = _Sample(now, extra, found)
            self._samples = {**self._samples, device.id: taken}
            if taken.good:
                self._last_good = {**self._last_good, device.id: now}
                evidence["last_good_at"] = format_ts(now)
            return {**extra, **evidence, "sampled": True, "sampled_at": format_ts(now)}, found
        # A fault the last sample found stands until a sample says otherwise: a silent
        # microphone does not come back because the lesson's app opened it.
        kept = last.findings if last is not None and not last.good else []
        return {**(last.extra if kept and last else {}), **evidence, "sampled": False}, kept

    def _survey(self, ctx: ProbeContext, params: CheckParams | None) -> ProbeReport:
        there = self.present(ctx)
        now = {device.id: self.describe(device) for device in there}
        baseline = ctx.baseline if self.persistent and ctx.baseline else self._memory
        expected = baseline.expected(self.name, now)
        allowed = ctx.may_disturb(params)
        due = self._due(ctx, there) if params is None and allowed else None
        devices: list[dict[str, Any]] = []
        findings: list[Finding] = []
        for device in there:
            detail = now[device.id]
            label = detail.get("name") or device.id
            entity = f"{self.role}:{device.id}"
            if params is not None and not self.samples:
                extra, found = self.inspect(ctx, device, label, entity)
            elif params is not None or device.id in self._samples or device.id == due:
                extra, found = self._look(ctx, device, label, entity,
                                          allowed and (params is not None or device.id == due),
                                          wait=params is not None)
            else:
                extra, found = {}, []
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
