"""Advice names the cause: DNS vs link vs route vs a closed port; USB vs RTSP cameras."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from agent.hardware import open_backend
from agent.hardware.netcause import CAUSES, ffmpeg_cause, gai_cause, local_cause, os_cause, refine
from agent.probes.advice import NETWORK
from agent.probes.base import CheckParams, Finding, ProbeContext
from agent.probes.camera import CameraProbe
from agent.probes.network import NetworkProbe
from agent.thresholds import Thresholds
from fleet.broker import free_port
from tests.agent.fixtures.rtsp import RtspStatus, rtsp_server
from tests.agent.test_probe_network import listening

__all__ = ["listening", "rtsp_server"]  # fixtures used here

RAW = re.compile(r"Errno|errno|\[-?\d+\]")


def _texts(findings: list[Finding]) -> dict[str, tuple[str, str]]:
    return {f.entity: (f.message_zh, f.message_en) for f in findings}


def test_unknown_name_closed_port_and_dead_address_get_their_own_advice(listening: int) -> None:
    closed = free_port()
    ctx = ProbeContext(open_backend("linux"), Thresholds(), {
        "typo": "no-such-host.invalid",  # RFC 6761: never resolves
        "closed": f"127.0.0.1:{closed}",
        "open": f"127.0.0.1:{listening}",
    })
    texts = _texts(NetworkProbe(count=1).collect(ctx).findings)
    assert set(texts) == {"target:typo", "target:closed"}
    assert texts["target:typo"] == ("无法连接 typo：域名不存在：核对配置中的主机名拼写",
                                    "cannot reach typo: the name does not exist: check the "
                                    "host name in the config")
    assert texts["target:closed"][1].startswith("cannot reach closed: the host is up but the "
                                                "port is closed")
    for zh, en in texts.values():
        assert not RAW.search(zh + en), (zh, en)
        assert "网线" not in zh, "neither a missing name nor a closed port is a cable problem"


def test_errors_sort_into_causes() -> None:
    assert gai_cause(socket.gaierror(socket.EAI_NONAME, "Name or service not known")) == \
        "dns_no_such_name"
    assert gai_cause(socket.gaierror(socket.EAI_AGAIN, "Temporary failure")) == "dns_unreachable"
    assert gai_cause(UnicodeError("label too long")) == "dns_no_such_name"
    with pytest.raises(OSError) as refused:
        socket.create_connection(("127.0.0.1", free_port()), timeout=5)
    assert os_cause(refused.value) == "refused"
    assert os_cause(TimeoutError()) == "timeout"
    assert os_cause(OSError(101, "Network is unreachable")) == "no_route"  # ENETUNREACH
    assert os_cause(OSError(113, "No route to host")) == "host_unreachable"  # EHOSTUNREACH
    every = {"link_down", "no_route", "dns_no_such_name", "dns_unreachable", "dns_failed",
             "refused", "host_unreachable", "timeout", "auth", "not_found"}
    assert every <= set(NETWORK), "each cause has advice"


def _net(root: Path, name: str, *, carrier: str | None, virtual: bool = False) -> None:
    real = root / "devices" / ("virtual/net" if virtual else "pci0000:00/0000:00:1f.6/net") / name
    real.mkdir(parents=True)
    if carrier is not None:
        (real / "carrier").write_text(carrier + "\n")
    link = root / "class" / "net" / name
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(real)


def test_a_down_link_explains_every_upstream_failure(tmp_path: Path) -> None:
    unplugged, plugged, container = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _net(unplugged, "lo", carrier="1", virtual=True)
    _net(unplugged, "docker0", carrier="1", virtual=True)  # a bridge is no cable
    _net(unplugged, "enp0s31f6", carrier="0")
    _net(unplugged, "wlp2s0", carrier=None)  # down: reading carrier fails with EINVAL
    _net(plugged, "enp0s31f6", carrier="1")
    _net(container, "lo", carrier="1", virtual=True)
    assert (local_cause(unplugged), local_cause(plugged), local_cause(container)) == (
        "link_down", None, None)
    for upstream in ("dns_unreachable", "no_route", "timeout", "host_unreachable"):
        assert refine(upstream, unplugged) == "link_down"
        assert refine(upstream, plugged) == upstream
    # A wrong name or a closed port is no cable problem even with the cable out.
    assert refine("dns_no_such_name", unplugged) == "dns_no_such_name"
    assert refine("refused", unplugged) == "refused"


def _camera_findings(cameras: dict[str, str]) -> dict[str, tuple[str, str]]:
    hw = open_backend("linux", extra_cameras=cameras)
    report = CameraProbe().check(ProbeContext(hw, Thresholds(), {}), CheckParams())
    return _texts([f for f in report.findings if f.entity != "camera:*"])


def test_rtsp_cameras_get_network_advice_and_usb_cameras_a_re_plug(
        rtsp_server: tuple[int, type[RtspStatus]]) -> None:
    port, handler = rtsp_server
    closed = free_port()
    found = _camera_findings({
        "usb": "/dev/video99",
        "off": f"rtsp://127.0.0.1:{closed}/live",
        "locked": f"rtsp://admin:wrong@127.0.0.1:{port}/live",
    })
    assert "重新插拔" in found["camera:usb"][0]
    assert found["camera:off"] == (
        "off：网络摄像头取不到画面：对方在线但端口未开放：检查对方服务是否运行、防火墙是否放行",
        "off: network camera gives no picture: the host is up but the port is closed: check "
        "the service runs and the firewall")
    assert found["camera:locked"][1] == ("locked: network camera gives no picture: user name "
                                         "or password refused: check the camera account in "
                                         "the config")
    handler.status = "404 Not Found"
    found = _camera_findings({"path": f"rtsp://127.0.0.1:{port}/Streaming/Channels/999"})
    assert found["camera:path"][1].endswith("no such stream: check the path (channel) in the "
                                            "RTSP URL")
    for zh, en in found.values():
        assert "重新插拔" not in zh and "re-plug" not in en and not RAW.search(zh + en)


def test_ffmpeg_lines_sort_into_causes() -> None:
    assert ffmpeg_cause("[rtsp @ 0x5] method DESCRIBE failed: 401 Unauthorized") == "auth"
    assert ffmpeg_cause("rtsp://cam/x: Connection timed out") == "timeout"
    assert ffmpeg_cause("Invalid data found when processing input") is None


def test_every_cause_the_agent_names_has_its_own_advice() -> None:
    assert set(CAUSES) <= set(NETWORK)
