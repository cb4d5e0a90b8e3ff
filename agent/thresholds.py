"""Where a probe's measurement turns into warn or fail, with the source of each default.

The defaults fit a two-way 1080p synchronous lesson (the town class sends and receives,
so does the rural one).  They come from the ``[thresholds]`` table of the agent config
(``agent.settings.section(Thresholds, table, "thresholds")``), and a lesson may raise
the throughput needs through the ``run-check`` command.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Thresholds"]


@dataclass(frozen=True)
class Thresholds:
    # --- network, per target -------------------------------------------------------
    # Microsoft Teams network requirements (learn.microsoft.com, "Prepare your
    # organization's network for Teams", client to Microsoft edge): round trip < 100 ms,
    # jitter < 30 ms, packet loss < 1% in any 15 s interval.
    rtt_warn_ms: float = 100.0
    # ITU-T G.114: one-way delay above 150 ms hurts conversation -> 300 ms round trip.
    rtt_fail_ms: float = 300.0
    jitter_warn_ms: float = 30.0  # Teams
    jitter_fail_ms: float = 60.0  # twice Teams' target: beyond typical jitter buffers
    loss_warn_pct: float = 1.0  # Teams
    loss_fail_pct: float = 5.0  # WebRTC/Zoom video visibly freezes around 5% loss
    # Resolving a name takes tens of ms on a healthy LAN resolver; seconds mean a dead one
    # (glibc's default resolver timeout is 5 s, resolv.conf(5)).
    dns_warn_ms: float = 500.0
    dns_fail_ms: float = 3000.0

    # --- bandwidth, active test during checks --------------------------------------
    # Zoom system requirements (support.zoom.com), group video calling: "sending 1080p HD
    # video requires 3.0 Mbps", "receiving 1080p HD video requires 2.5 Mbps".  Zoom's newer
    # network guide lists 3.8 up / 3.0 down for 1080p; set that in [thresholds] to follow it.
    need_up_mbps: float = 3.0
    need_down_mbps: float = 2.5
    # Below need * headroom it still works but one more stream (a shared screen) will not.
    headroom: float = 1.5

    # --- system ----------------------------------------------------------------------
    cpu_warn_pct: float = 90.0  # software 1080p encoding on a mini-PC needs spare CPU
    mem_warn_pct: float = 90.0
    # kubelet's imageGCHighThresholdPercent (85) and node_exporter's node-mixin
    # NodeFilesystemAlmostOutOfSpace (5% left) -> 85 / 95.
    disk_warn_pct: float = 85.0
    disk_fail_pct: float = 95.0
    # Intel mobile CPUs throttle at TjMax ~100 °C; 80 °C sustained already slows encoding.
    temp_warn_c: float = 80.0
    temp_fail_c: float = 90.0

    # --- camera: ffmpeg's blackdetect and freezedetect judge ~40 frames ----------------
    # blackdetect defaults (ffmpeg-filters, blackdetect): a pixel is black below 10% of
    # the luma range (pix_th=0.10), a picture when 98% of its pixels are
    # (picture_black_ratio_th=0.98).  A camera is black when every sampled frame is.
    black_pixel_luma: float = 0.10
    black_ratio: float = 0.98
    # freezedetect noise tolerance, as a mean absolute difference (its n option).  Its
    # default, -60 dB (0.001), is too coarse for a still room: the picture is
    # point-sampled so each pixel keeps its sensor noise, but the faintest noise ffmpeg's
    # noise filter makes (alls=1, a few pixels off by one level) measured 0.0007 here.
    # A stuck driver or decoder repeats the very same frame: exactly 0.  So -80 dB.
    frozen_diff: float = 0.0001
    # freezedetect's default duration is 2 s; half a second of identical frames is already
    # 15 repeats at 30 fps, and keeps the sample (40 frames, 1.3 s at 30 fps) short.
    frozen_min_s: float = 0.5

    # --- microphone -------------------------------------------------------------------
    # A classroom's background noise through any live mic sits well above -60 dBFS RMS
    # (USB mic self-noise is around -70..-90 dBFS); below it the mic is muted or far away.
    quiet_dbfs: float = -60.0
    # EBU R 128 allows true peaks up to -1 dBTP; samples at full scale are clipping.
    # Fraction of clipped samples: 0.1% is audible crackle, 1% is distortion.
    clip_warn_fraction: float = 0.001
    clip_fail_fraction: float = 0.01

    # --- presence: what every synchronous classroom has --------------------------------
    min_cameras: int = 1  # many have two (teacher + students); set 2 there
    min_microphones: int = 1
    min_speakers: int = 1
    min_displays: int = 1

    def __post_init__(self) -> None:
        pairs = (
            ("rtt_warn_ms", "rtt_fail_ms"),
            ("jitter_warn_ms", "jitter_fail_ms"),
            ("loss_warn_pct", "loss_fail_pct"),
            ("dns_warn_ms", "dns_fail_ms"),
            ("disk_warn_pct", "disk_fail_pct"),
            ("temp_warn_c", "temp_fail_c"),
            ("clip_warn_fraction", "clip_fail_fraction"),
        )
        for warn, fail in pairs:
            if getattr(self, warn) > getattr(self, fail):
                raise ValueError(f"{warn} ({getattr(self, warn)}) is above {fail}")
        if self.frozen_min_s <= 0:
            raise ValueError("frozen_min_s must be above 0")
        if self.headroom < 1.0:
            raise ValueError("headroom must be >= 1")
