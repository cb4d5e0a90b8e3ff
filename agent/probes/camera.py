"""Cameras: present every interval; in a check, a short sample for black and frozen
pictures (judged by ffmpeg's blackdetect and freezedetect on the real backend)."""

from __future__ import annotations

from typing import Any, ClassVar

from agent.contract import CheckVerdict
from agent.hardware.base import HardwareError, PictureCriteria, VideoDevice
from agent.probes.advice import stream_advice
from agent.probes.avgear import is_stream
from agent.probes.base import Finding, ProbeContext
from agent.probes.devices import PresenceProbe
from agent.thresholds import Thresholds

__all__ = ["CameraProbe", "criteria"]


def criteria(th: Thresholds) -> PictureCriteria:
    return PictureCriteria(black_pixel_luma=th.black_pixel_luma, black_ratio=th.black_ratio,
                           frozen_noise=th.frozen_diff, frozen_min_s=th.frozen_min_s)


class CameraProbe(PresenceProbe[VideoDevice]):
    name: ClassVar[str] = "cameras"
    role: ClassVar[str] = "camera"
    minimum: ClassVar[str] = "min_cameras"
    samples: ClassVar[bool] = True

    def present(self, ctx: ProbeContext) -> list[VideoDevice]:
        return ctx.hardware.cameras()

    def inspect(self, ctx: ProbeContext, device: VideoDevice, label: str,
                entity: str) -> tuple[dict[str, Any], list[Finding]]:
        th = ctx.thresholds
        try:
            sample = ctx.hardware.sample_picture(device, criteria(th))
        except HardwareError as exc:
            if is_stream(device.node) and exc.reason != "camera_busy":
                return {}, [_network_camera_failed(exc, label, entity)]
            return self.unusable(exc, label, entity)
        extra = sample.to_json()
        findings = []
        if sample.black:
            findings.append(Finding(
                CheckVerdict.FAIL, "camera_black",
                f"{label}：画面全黑（镜头盖未取下、遮挡或光线不足）",
                f"{label}: picture is black (lens cap on, covered, or no light)",
                entity, sample.black_frames, sample.frames))
        elif sample.frozen_s is not None:
            findings.append(Finding(
                CheckVerdict.FAIL, "camera_frozen",
                f"{label}：画面冻结（至少 {sample.frozen_s:g} 秒画面完全不变；"
                f"重新插拔摄像头或重启采集软件）",
                f"{label}: picture is frozen (identical frames for at least {sample.frozen_s:g} s; "
                f"re-plug the camera or restart the capture software)",
                entity, sample.frozen_s, th.frozen_min_s))
        return extra, findings


def _network_camera_failed(exc: HardwareError, label: str, entity: str) -> Finding:
    """Re-plugging does nothing for an RTSP camera: name the network cause instead."""
    zh, en = stream_advice(exc.cause, exc.message)
    return Finding(CheckVerdict.FAIL, "camera_capture_failed",
                   f"{label}：网络摄像头取不到画面：{zh}",
                   f"{label}: network camera gives no picture: {en}", entity)
