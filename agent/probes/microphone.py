"""Microphones: present every interval; in a check, a second of sound for level and clipping."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from agent.contract import CheckVerdict
from agent.hardware.base import AudioClip, AudioDevice, HardwareError
from agent.probes.base import Finding, ProbeContext, graded
from agent.probes.devices import PresenceProbe

__all__ = ["AudioStats", "MicrophoneProbe", "analyse_audio"]

_FULL_SCALE = 32768.0
_CLIP = 32767  # |sample| at or beyond the largest positive value counts as clipped


@dataclass(frozen=True)
class AudioStats:
    rms_dbfs: float  # -inf for digital zero
    peak_dbfs: float
    clipped_fraction: float

    @property
    def silent(self) -> bool:
        return self.rms_dbfs == -math.inf

    def to_json(self) -> dict[str, Any]:
        # JSON has no -inf: digital zero is reported as null level with silent: true.
        return {
            "level_dbfs": None if self.silent else round(self.rms_dbfs, 1),
            "peak_dbfs": None if self.silent else round(self.peak_dbfs, 1),
            "clipped_fraction": round(self.clipped_fraction, 5),
            "silent": self.silent,
        }


def _dbfs(value: float) -> float:
    return 20 * math.log10(value / _FULL_SCALE) if value > 0 else -math.inf


def analyse_audio(clip: AudioClip) -> AudioStats:
    """RMS level relative to a full-scale square wave (a full-scale sine is -3 dBFS)."""
    samples = clip.samples
    if not samples:
        raise ValueError("no samples to analyse")
    rms = math.sqrt(math.fsum(s * s for s in samples) / len(samples))
    peak = max(abs(s) for s in samples)
    clipped = sum(1 for s in samples if s >= _CLIP or s <= -_CLIP)
    return AudioStats(_dbfs(rms), _dbfs(peak), clipped / len(samples))


class MicrophoneProbe(PresenceProbe[AudioDevice]):
    name: ClassVar[str] = "microphones"
    role: ClassVar[str] = "microphone"
    minimum: ClassVar[str] = "min_microphones"
    samples: ClassVar[bool] = True

    def __init__(self, seconds: float = 1.0) -> None:
        super().__init__()
        self.seconds = seconds

    def present(self, ctx: ProbeContext) -> list[AudioDevice]:
        return ctx.hardware.microphones()

    def inspect(self, ctx: ProbeContext, device: AudioDevice, label: str,
                entity: str) -> tuple[dict[str, Any], list[Finding]]:
        th = ctx.thresholds
        try:
            stats = analyse_audio(ctx.hardware.record(device, self.seconds))
        except HardwareError as exc:
            return self.unusable(exc, label, entity)
        except ValueError:
            return self.unusable("no sound recorded", label, entity)
        findings = []
        if stats.silent:
            findings.append(Finding(
                CheckVerdict.FAIL, "microphone_silent",
                f"{label}：麦克风无信号（数字静音：检查静音键、线缆和声卡输入设置）",
                f"{label}: microphone is silent (digital zero: check the mute switch, cable "
                f"and sound card input)", entity))
        elif stats.rms_dbfs < th.quiet_dbfs:
            findings.append(Finding(
                CheckVerdict.WARN, "microphone_quiet",
                f"{label}：麦克风音量过低（{stats.rms_dbfs:.0f} dBFS；检查增益或麦克风位置）",
                f"{label}: microphone level very low ({stats.rms_dbfs:.0f} dBFS; check gain "
                f"or placement)", entity, round(stats.rms_dbfs, 1), th.quiet_dbfs))
        clipping = graded(
            round(stats.clipped_fraction, 5), th.clip_warn_fraction, th.clip_fail_fraction,
            "microphone_clipping", entity,
            (f"{label}：麦克风削波失真（输入增益过高，调低增益）",
             f"{label}: microphone is clipping (input gain too high; turn it down)"))
        if clipping is not None:
            findings.append(clipping)
        return stats.to_json(), findings
