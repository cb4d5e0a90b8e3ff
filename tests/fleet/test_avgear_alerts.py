"""A dead network camera or recording host in the periodic telemetry is an alert on that
camera or host, from the section the real avgear probe wrote against real servers."""

from __future__ import annotations

from pathlib import Path

from agent.contract import Kind
from agent.hardware import open_backend
from agent.probes.avgear import AvGearProbe
from agent.probes.base import ProbeContext
from agent.redact import redact_json
from agent.thresholds import Thresholds
from fleet.alerts import AlertEngine
from fleet.broker import free_port
from fleet.db.base import session_scope
from tests.agent.fixtures.rtsp import rtsp_camera
from tests.agent.test_probe_network import listening
from tests.fleet.alert_helpers import build_world

__all__ = ["listening", "rtsp_camera"]  # fixtures used here


def test_dead_stream_and_closed_recorder_port_are_alerts_on_them(
        tmp_path: Path, rtsp_camera: int, listening: int) -> None:
    closed = free_port()
    ctx = ProbeContext(open_backend("linux", extra_cameras={
        "ptz": f"rtsp://admin:pw@127.0.0.1:{rtsp_camera}/live",
        "door": f"rtsp://admin:pw@127.0.0.1:{closed}/live"}), Thresholds(), {},
        av_hosts={"encoder": f"127.0.0.1:{listening}", "recorder": f"http://127.0.0.1:{closed}"})
    section = redact_json(AvGearProbe(pings=1).collect(ctx).section)
    world = build_world(tmp_path)
    world.send(Kind.TELEMETRY, "rural-1", interval=15, sections={"avgear": section})
    world.tick_after(600)
    with session_scope(world.sessions) as s:
        found = {(a.rule, a.entity, a.severity) for a in AlertEngine.query(s)}
    assert found == {("camera_stream_failed", "stream:door", "critical"),
                     ("av_host_unreachable", "avhost:recorder", "warning")}
