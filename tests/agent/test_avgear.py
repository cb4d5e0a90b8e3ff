"""Network AV gear really probed: RTSP cameras through real ffprobe/ffmpeg against real
RTSP servers on loopback, encoders and recording hosts by ping and their service port."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime, timedelta

import pytest

from agent.compat import UTC
from agent.config import parse_config
from agent.hardware import open_backend
from agent.hardware.base import HardwareError
from agent.hardware.ffmpeg_compat import NEWEST, spelling
from agent.hardware.stream import frame_command, probe_stream
from agent.probes.avgear import AvGearProbe
from agent.probes.base import CheckParams, ProbeContext
from agent.quiet import QuietWindows
from agent.redact import redact_json
from agent.settings import ConfigError
from agent.thresholds import Thresholds
from fleet.broker import free_port
from tests.agent.fixtures.media import Build, ffmpeg_build
from tests.agent.fixtures.rtsp import (
    RtspStatus,
    _requests,
    rtsp_camera,
    rtsp_server,
    silent_service,
)
from tests.agent.test_probe_network import listening

__all__ = ["ffmpeg_build", "listening", "rtsp_camera", "rtsp_server", "silent_service"]

SECRET = "s3cret-pw"
#: release -> the RTSP demuxer's socket timeout option and what "-timeout" means there,
#: from each release's `ffmpeg -h demuxer=rtsp` (4.2.2, 5.1.x, 7.0.2 checked below).
RTSP_TIMEOUT = {
    (4, 2): "-stimeout", (4, 4): "-stimeout", (5, 0): "-timeout", (5, 1): "-timeout",
    (6, 1): "-timeout", (7, 1): "-timeout", NEWEST: "-timeout",
}


@pytest.mark.parametrize("release", sorted(RTSP_TIMEOUT))
def test_socket_timeout_spelling_follows_the_table(release: tuple[int, int]) -> None:
    assert spelling("rtsp_socket_timeout", release) == (RTSP_TIMEOUT[release],)
    cmd = frame_command("rtsp://10.0.0.9/main", release, 2.5)
    at = cmd.index(RTSP_TIMEOUT[release])
    assert cmd[at + 1] == "2500000", "microseconds"
    assert max(cmd.index("-rtsp_transport"), at) < cmd.index("-i"), "input options go before -i"


def test_the_rtsp_options_of_real_builds(ffmpeg_build: Build) -> None:
    """Each build there is says what its socket timeout is called, and 4.x says that its
    own "-timeout" is a listen timeout in seconds, which would make the probe wait for
    the camera to call in."""
    text = subprocess.run([ffmpeg_build.path, "-hide_banner", "-h", "demuxer=rtsp"],
                          capture_output=True, text=True, check=True).stdout
    options = dict(re.findall(r"^\s+(-\w+)\s+<\w+>\s+\S+\s+(.*)$", text, re.MULTILINE))
    ours = spelling("rtsp_socket_timeout", ffmpeg_build.version.release)[0]
    assert "microseconds" in options[ours] and "socket" in options[ours]
    if ours == "-stimeout":
        assert "incoming connections" in options["-timeout"]
    else:
        assert "-stimeout" not in options


def test_a_camera_that_plays_gives_its_codec_size_and_a_frame(rtsp_camera: int) -> None:
    info = probe_stream(f"rtsp://admin:{SECRET}@127.0.0.1:{rtsp_camera}/live",
                        (99, 0), 5.0)
    assert (info.codec, info.width, info.height) == ("mjpeg", 320, 240)
    assert info.open_ms > 0 and info.frame_ms > 0


def test_failures_carry_a_network_cause_and_no_password(
        rtsp_server: tuple[int, type[RtspStatus]], silent_service: int) -> None:
    port, handler = rtsp_server
    closed = free_port()

    def fails(url: str) -> HardwareError:
        with pytest.raises(HardwareError) as caught:
            probe_stream(url, (99, 0), 1.0)
        assert SECRET not in str(caught.value)
        return caught.value

    locked = fails(f"rtsp://admin:{SECRET}@127.0.0.1:{port}/live")
    assert (locked.reason, locked.cause) == ("stream_unreachable", "auth")
    off = fails(f"rtsp://admin:{SECRET}@127.0.0.1:{closed}/live")
    assert (off.reason, off.cause) == ("stream_unreachable", "refused")
    handler.status = "404 Not Found"
    assert fails(f"rtsp://127.0.0.1:{port}/Streaming/Channels/999").cause == "not_found"
    # A camera that takes the connection and never answers: ffprobe gives up by itself
    # (its socket timeout), before the agent's own subprocess deadline would kill it.
    hung = fails(f"rtsp://admin:{SECRET}@127.0.0.1:{silent_service}/live")
    assert hung.reason == "stream_unreachable", hung


def test_the_4x_spelling_matters(ffmpeg_build: Build, silent_service: int) -> None:
    """On this build, the socket timeout the table gives ends the wait for a silent
    camera; on 4.x, 5.x's spelling makes ffmpeg try to listen on the camera's address
    instead of calling it (and fail with a misleading "Address already in use")."""
    url = f"rtsp://127.0.0.1:{silent_service}/live"
    cmd = frame_command(url, ffmpeg_build.version.release, 1.0, ffmpeg=ffmpeg_build.path)
    out = subprocess.run(cmd, capture_output=True, timeout=30, check=False)
    assert out.returncode != 0 and b"frame=1" not in out.stderr
    if ffmpeg_build.version.release < (5, 0):
        wrong = frame_command(url, (5, 1), 1.0, ffmpeg=ffmpeg_build.path)
        out = subprocess.run(wrong, capture_output=True, timeout=30, check=False)
        assert b"Unable to open RTSP for listening" in out.stderr


def _probe(cameras: dict[str, str], hosts: dict[str, str]) -> tuple[dict, dict]:  # type: ignore[type-arg]
    ctx = ProbeContext(open_backend("linux", extra_cameras=cameras), Thresholds(), {},
                       av_hosts=hosts)
    report = AvGearProbe(collect_timeout_s=1.0, check_timeout_s=3.0, pings=1).check(
        ctx, CheckParams())
    texts = {f.entity: (f.reason, f.message_zh, f.message_en) for f in report.findings}
    return redact_json(report.section), texts


def test_probe_reports_cameras_and_hosts_with_network_advice(
        rtsp_camera: int, rtsp_server: tuple[int, type[RtspStatus]], listening: int) -> None:
    port, _ = rtsp_server
    closed = free_port()
    section, found = _probe(
        {"usb": "/dev/video99",  # not network gear: the camera probe's business
         "ptz": f"rtsp://admin:{SECRET}@127.0.0.1:{rtsp_camera}/live",
         "locked": f"rtsp://admin:{SECRET}@127.0.0.1:{port}/live",
         "off": f"rtsp://127.0.0.1:{closed}/live"},
        {"encoder": f"127.0.0.1:{listening}", "recorder": f"http://127.0.0.1:{closed}"})
    assert set(section["streams"]) == {"ptz", "locked", "off"}
    assert section["streams"]["ptz"]["ok"] is True
    assert section["streams"]["ptz"]["codec"] == "mjpeg"
    assert section["hosts"]["encoder"]["ok"] is True
    assert section["hosts"]["encoder"]["port_ms"] is not None
    assert section["ok"] is False
    assert set(found) == {"stream:locked", "stream:off", "avhost:recorder"}
    assert found["stream:locked"][2] == ("locked: network camera stream fails: user name or "
                                         "password refused: check the camera account in "
                                         "the config")
    assert found["stream:off"][1] == ("off：网络摄像头无法取流：对方在线但端口未开放："
                                      "检查对方服务是否运行、防火墙是否放行")
    reason, zh, en = found["avhost:recorder"]
    assert reason == "av_host_port_closed" and zh.startswith("recorder（")
    assert en == (f"recorder (http://127.0.0.1:{closed}): port {closed} cannot be reached: "
                  "the host is up but the port is closed: check the service runs and the "
                  "firewall")
    wire = json.dumps([section, found], ensure_ascii=False)
    assert SECRET not in wire and "rtsp://admin:***@" in wire
    assert "重新插拔" not in wire and "re-plug" not in wire


def test_nothing_configured_is_an_empty_ok_section() -> None:
    section, found = _probe({"usb": "/dev/video99"}, {})
    assert section == {"ok": True, "streams": {}, "hosts": {}} and found == {}


def test_a_bad_host_in_the_config_is_named_without_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"device_id": "room-1", "network": {"av_hosts": {
            "recorder": f"http://admin:{SECRET}@10.0.0.5:http/"}}})
    assert caught.value.key == "network.av_hosts.recorder"
    assert SECRET not in str(caught.value)


def test_near_a_lesson_a_camera_is_asked_only_whether_its_port_answers(
        rtsp_server: tuple[int, type[RtspStatus]]) -> None:
    """Opening a stream takes one of the camera's few RTSP sessions, which the lesson's
    software needs: inside the quiet window no RTSP request is sent."""
    port, handler = rtsp_server
    asked: list[str] = []

    class Recording(RtspStatus):
        def handle(self) -> None:
            asked.extend(line for line, _ in _requests(self))

    handler.handle = Recording.handle  # type: ignore[method-assign]
    closed = free_port()
    quiet = QuietWindows()
    quiet.lesson(starts_at=datetime.now(UTC) + timedelta(minutes=5))
    ctx = ProbeContext(open_backend("linux", extra_cameras={
        "ptz": f"rtsp://admin:{SECRET}@127.0.0.1:{port}/live",
        "off": f"rtsp://127.0.0.1:{closed}/live"}), Thresholds(), {}, quiet=quiet)
    report = AvGearProbe(pings=1).collect(ctx)
    streams = report.section["streams"]
    assert streams["ptz"]["ok"] is True and streams["ptz"]["passive"] is True
    assert streams["ptz"]["port_ms"] is not None
    assert asked == []  # no DESCRIBE, no OPTIONS: the camera's sessions stay free
    (finding,) = report.findings
    assert (finding.entity, finding.reason) == ("stream:off", "stream_unreachable")
    assert SECRET not in json.dumps(report.section)
