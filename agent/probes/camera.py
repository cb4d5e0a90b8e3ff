"""Cameras: present every interval; in a check, two frames for black and frozen pictures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from agent.contract import CheckVerdict
from agent.hardware.base import Frame, HardwareError, VideoDevice
from agent.probes.advice import network_advice
from agent.probes.base import Finding, ProbeContext
from agent.probes.devices import PresenceProbe

__all__ = ["CameraProbe", "FrameStats", "analyse_frames"]


@dataclass(frozen=True)
class FrameStats:
    mean_luma: float  # 0..1
    black_ratio: float  # share of pixels darker than the black threshold
    difference: float | None  # mean absolute difference of the last two frames, 0..1

    def black(self, ratio: float) -> bool:
        return self.black_ratio >= ratio

    def frozen(self, tolerance: float) -> bool:
        return self.difference is not None and self.difference <= tolerance


def analyse_frames(frames: list[Frame], black_pixel_luma: float) -> FrameStats:
    """Statistics of the last frame, and of how it differs from the one before."""
    if not frames:
        raise ValueError("no frames to analyse")
    last = frames[-1].gray
    cut = black_pixel_luma * 255
    difference = None
    if len(frames) > 1:
        before = frames[-2].gray
        if len(before) != len(last):
            raise ValueError("frames of different sizes")
        difference = sum(abs(a - b) for a, b in zip(before, last, strict=True)) / (255 * len(last))
    return FrameStats(
        mean_luma=sum(last) / (255 * len(last)),
        black_ratio=sum(1 for p in last if p < cut) / len(last),
        difference=difference,
    )


class CameraProbe(PresenceProbe[VideoDevice]):
    name: ClassVar[str] = "cameras"
    role: ClassVar[str] = "camera"
    minimum: ClassVar[str] = "min_cameras"

    def present(self, ctx: ProbeContext) -> list[VideoDevice]:
        return ctx.hardware.cameras()

    def inspect(self, ctx: ProbeContext, device: VideoDevice, label: str,
                entity: str) -> tuple[dict[str, Any], list[Finding]]:
        th = ctx.thresholds
        try:
            stats = analyse_frames(ctx.hardware.capture_frames(device, 2), th.black_pixel_luma)
        except HardwareError as exc:
            if _is_network_camera(device) and exc.reason != "camera_busy":
                return {}, [_network_camera_failed(exc, label, entity)]
            return self.unusable(exc, label, entity)
        extra = {"mean_luma": round(stats.mean_luma, 4), "black_ratio": round(stats.black_ratio, 4),
                 "difference": None if stats.difference is None else round(stats.difference, 5)}
        findings = []
        if stats.black(th.black_ratio):
            findings.append(Finding(
                CheckVerdict.FAIL, "camera_black",
                f"{label}：画面全黑（镜头盖未取下、遮挡或光线不足）",
                f"{label}: picture is black (lens cap on, covered, or no light)",
                entity, stats.black_ratio, th.black_ratio))
        elif stats.frozen(th.frozen_diff):
            findings.append(Finding(
                CheckVerdict.FAIL, "camera_frozen",
                f"{label}：画面冻结（连续两帧完全相同；重新插拔摄像头或重启采集软件）",
                f"{label}: picture is frozen (two identical frames; re-plug the camera or "
                f"restart the capture software)",
                entity, stats.difference, th.frozen_diff))
        return extra, findings


def _is_network_camera(device: VideoDevice) -> bool:
    return "://" in device.node and not device.node.startswith("lavfi:")


def _network_camera_failed(exc: HardwareError, label: str, entity: str) -> Finding:
    """Re-plugging does nothing for an RTSP camera: name the network cause instead."""
    if exc.cause:
        zh, en = network_advice(exc.cause)
    else:  # ffmpeg said something else: its (redacted) line is the best clue there is
        zh = f"检查摄像头电源、网线、IP 地址和 RTSP 地址（{exc.message}）"
        en = f"check the camera's power, cable, IP address and RTSP URL ({exc.message})"
    return Finding(CheckVerdict.FAIL, "camera_capture_failed",
                   f"{label}：网络摄像头取不到画面：{zh}",
                   f"{label}: network camera gives no picture: {en}", entity)
