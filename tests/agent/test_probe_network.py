"""Network, bandwidth and system probes: real sockets and HTTP, simulated faults."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from datetime import datetime

import pytest

from agent.compat import UTC
from agent.contract import CheckVerdict
from agent.hardware import open_backend
from agent.hardware.scenario import Fault
from agent.hardware.simulated import SimulatedHardware
from agent.probes.bandwidth import BandwidthProbe
from agent.probes.base import CheckParams, ProbeContext, ProbeReport, graded
from agent.probes.network import NetworkProbe
from agent.probes.system import SystemProbe
from agent.settings import ConfigError, section
from agent.thresholds import Thresholds
from fleet.broker import free_port
from tests.agent.fixtures.speedtest import SpeedTest, speedtest

__all__ = ["speedtest"]  # fixture used here

WHEN = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", free_port())) as server:
        yield server.getsockname()[1]


def levels(report: ProbeReport) -> dict[str, tuple[str, str]]:
    return {f.entity: (f.level.value, f.reason) for f in report.findings}


def test_network_against_real_ports(listening: int) -> None:
    closed = free_port()
    hw = open_backend("linux")
    ctx = ProbeContext(hw, Thresholds(), {"broker": f"127.0.0.1:{listening}"})
    probe = NetworkProbe(count=2, check_count=3)
    section = probe.collect(ctx).section
    assert section["ok"] is True and section["dns_ms"] is None  # an address: no lookup
    broker = section["targets"]["broker"]
    assert broker["ok"] is True and broker["loss_pct"] == 0 and broker["method"] == "tcp"
    params = CheckParams(targets={"peer": f"localhost:{closed}"})
    report = probe.check(ctx, params)
    assert levels(report) == {"target:peer": ("fail", "target_unreachable")}
    peer = report.section["targets"]["peer"]
    assert (peer["loss_pct"], peer["rtt_ms"], peer["ok"]) == (100, None, False)
    assert report.section["dns_ms"] is not None  # "localhost" was resolved
    assert "无法连接 peer" in report.findings[0].message_zh


@pytest.mark.skipif(os.geteuid() != 0, reason="raw ICMP needs root here (ping_group_range)")
def test_targets_pinged_in_parallel_over_icmp_and_tcp(listening: int) -> None:
    ctx = ProbeContext(open_backend("linux"), Thresholds(), {
        "gateway": "127.0.0.1", "loop2": "127.0.0.2", "broker": f"127.0.0.1:{listening}"})
    targets = NetworkProbe(count=3).collect(ctx).section["targets"]
    assert [targets[n]["method"] for n in ("gateway", "loop2", "broker")] == [
        "icmp", "icmp", "tcp"]
    assert all(t["ok"] and t["loss_pct"] == 0 for t in targets.values())


def test_bad_and_unresolvable_targets() -> None:
    hw = open_backend("linux")
    ctx = ProbeContext(hw, Thresholds(), {"typo": "fleet:notaport",
                                          "gone": "no-such-host.invalid:443"})
    report = NetworkProbe(count=1).collect(ctx)
    assert levels(report) == {"target:typo": ("fail", "target_invalid"),
                              "target:gone": ("fail", "dns_failed")}


@pytest.mark.parametrize(("fault", "expected"), [
    (Fault("rtt", value=150), ("warn", "network_rtt_high")),
    (Fault("rtt", value=400), ("fail", "network_rtt_high")),
    (Fault("jitter", value=40), ("warn", "network_jitter_high")),
    (Fault("packet_loss", value=2), ("warn", "network_loss_high")),
    (Fault("packet_loss", value=8), ("fail", "network_loss_high")),
])
def test_network_thresholds(fault: Fault, expected: tuple[str, str]) -> None:
    hw = SimulatedHardware()
    ctx = ProbeContext(hw, Thresholds(), {"peer": "peer.example"})
    assert NetworkProbe().collect(ctx).findings == []
    hw.apply(fault)
    report = NetworkProbe().collect(ctx)
    assert levels(report) == {"target:peer": expected}
    assert report.section["targets"]["peer"]["ok"] is (expected[0] == "warn")


def test_active_bandwidth_test_against_real_http(speedtest: SpeedTest) -> None:
    hw = open_backend("linux")
    ctx = ProbeContext(hw, Thresholds(), {}, bandwidth_url=speedtest.url, clock=lambda: WHEN)
    probe = BandwidthProbe(nbytes=500_000, seconds=5)
    before = probe.collect(ctx).section
    assert before["up_mbps"] is None and before["measured_at"] is None
    report = probe.check(ctx, CheckParams())
    assert report.section["up_mbps"] > 0 and report.section["down_mbps"] > 0
    assert report.section["measured_at"] == "2026-03-02T00:30:00.000Z"
    assert speedtest.received == 500_000
    # Telemetry keeps repeating the last active result.
    assert probe.collect(ctx).section["up_mbps"] == report.section["up_mbps"]


def test_receive_only_lesson_skips_the_upload(speedtest: SpeedTest) -> None:
    hw = open_backend("linux")
    ctx = ProbeContext(hw, Thresholds(), {})
    params = CheckParams(uplink=False, bandwidth_url=speedtest.url, need_down_mbps=1e9)
    report = BandwidthProbe(nbytes=200_000).check(ctx, params)
    assert speedtest.received == 0 and report.section["up_mbps"] is None
    assert levels(report) == {"bandwidth:down": ("fail", "bandwidth_down_low")}


def test_bandwidth_without_url_or_server() -> None:
    hw = SimulatedHardware()
    ctx = ProbeContext(hw, Thresholds(), {})
    assert levels(BandwidthProbe().check(ctx, CheckParams())) == {
        "bandwidth": ("warn", "bandwidth_untested")}
    real = ProbeContext(open_backend("linux"), Thresholds(), {},
                        bandwidth_url=f"http://127.0.0.1:{free_port()}/bw")
    report = BandwidthProbe().check(real, CheckParams())
    assert report.verdict is CheckVerdict.FAIL
    assert {f.reason for f in report.findings} == {"bandwidth_test_failed"}


def test_bandwidth_need_and_headroom() -> None:
    hw = SimulatedHardware()
    ctx = ProbeContext(hw, Thresholds(), {}, bandwidth_url="http://fleet.example/bw")
    hw.apply(Fault("bandwidth_up", value=4.0))  # above 3.0 needed, below 4.5 with headroom
    assert levels(BandwidthProbe().check(ctx, CheckParams())) == {
        "bandwidth:up": ("warn", "bandwidth_up_low")}
    hw.apply(Fault("bandwidth_up", value=2.0))
    assert levels(BandwidthProbe().check(ctx, CheckParams())) == {
        "bandwidth:up": ("fail", "bandwidth_up_low")}
    # A lesson that asks for less passes with the same link.
    assert BandwidthProbe().check(ctx, CheckParams(need_up_mbps=1.0)).findings == []


def test_passive_rates_from_interface_counters() -> None:
    now = [WHEN]
    hw = SimulatedHardware(clock=lambda: now[0])
    ticks = iter([100.0, 110.0])
    probe = BandwidthProbe(monotonic=lambda: next(ticks))
    ctx = ProbeContext(hw, Thresholds(), {})
    assert probe.collect(ctx).section["tx_mbps"] is None  # one reading is no rate
    now[0] = WHEN.replace(second=10)
    section = probe.collect(ctx).section
    assert section["tx_mbps"] == pytest.approx(3.0) and section["rx_mbps"] == pytest.approx(3.0)


def test_system_probe_levels() -> None:
    hw = SimulatedHardware()
    ctx = ProbeContext(hw, Thresholds(), {})
    assert SystemProbe().collect(ctx).findings == []
    hw.apply(Fault("disk_full", value=90))
    hw.apply(Fault("overheat"))
    hw.apply(Fault("clock_unsynced"))
    report = SystemProbe().collect(ctx)
    assert {f.reason: f.level.value for f in report.findings} == {
        "disk_full": "warn", "overheat": "fail", "clock_unsynced": "warn"}
    assert report.section["ok"] is False and report.section["reason"] == "overheat"
    assert report.section["clock_synced"] is False


def test_system_probe_on_this_machine() -> None:
    section = SystemProbe().collect(ProbeContext(open_backend("linux"), Thresholds(), {})).section
    assert set(section) >= {"cpu_pct", "mem_pct", "disk_pct", "temp_c", "uptime_s",
                            "boot_time", "clock_synced", "ok"}


def test_thresholds_refuse_warn_above_fail() -> None:
    with pytest.raises(ValueError, match="rtt_warn_ms"):
        Thresholds(rtt_warn_ms=500)


def test_thresholds_from_a_config_table() -> None:
    th = section(Thresholds, {"rtt_warn_ms": 80, "min_cameras": 2}, "thresholds")
    assert (th.rtt_warn_ms, th.min_cameras, th.need_up_mbps) == (80.0, 2, 3.0)
    with pytest.raises(ConfigError) as err:
        section(Thresholds, {"rtt_warn": 80}, "thresholds")
    assert err.value.key == "thresholds.rtt_warn"
    with pytest.raises(ConfigError, match="disk_warn_pct"):
        section(Thresholds, {"disk_warn_pct": 99}, "thresholds")


def test_graded_names_the_level_crossed() -> None:
    texts = ("{a}：延迟（阈值 {threshold}）", "{a}: rtt (limit {threshold})")
    assert graded(50, 100, 300, "rtt", "target:x", texts) is None
    warn = graded(150, 100, 300, "rtt", "target:x", texts)
    assert warn is not None and (warn.level, warn.value, warn.threshold) == (
        CheckVerdict.WARN, 150, 100)
    assert (warn.message_zh, warn.message_en) == ("{a}：延迟（阈值 100）", "{a}: rtt (limit 100)")
    fail = graded(1.0, 4.0, 2.0, "slow", "bandwidth:up", texts, low_is_bad=True)
    assert fail is not None and (fail.level, fail.threshold) == (CheckVerdict.FAIL, 2.0)
