"""Network measurements against real sockets on this machine."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from agent.hardware.base import HardwareError, PingResult
from agent.hardware.netio import ping, resolve
from agent.hardware.targets import parse_target, ping_spec
from agent.hardware.throughput import download, upload
from fleet.broker import free_port
from tests.agent.fixtures.speedtest import SpeedTest, speedtest

__all__ = ["speedtest"]  # fixture used here


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", free_port())) as server:
        yield server.getsockname()[1]


def test_tcp_connect_to_a_listening_port(listening: int) -> None:
    result = ping(f"127.0.0.1:{listening}", count=3, interval_s=0)
    assert (result.method, result.sent, result.received, result.loss_pct) == ("tcp", 3, 3, 0)
    assert result.rtt_ms is not None and result.jitter_ms is not None


def test_tcp_connect_to_a_closed_port_is_total_loss() -> None:
    result = ping(f"127.0.0.1:{free_port()}", count=2, interval_s=0)
    assert result.loss_pct == 100 and result.rtt_ms is None
    assert "refused" in result.error.lower()


def test_icmp_echo_to_loopback() -> None:
    try:
        result = ping("127.0.0.1", count=2, interval_s=0)
    except HardwareError as exc:  # neither a ping socket nor CAP_NET_RAW for this user
        assert exc.reason == "icmp_not_permitted"
        return
    assert (result.method, result.received) == ("icmp", 2)


def test_resolution() -> None:
    assert resolve("localhost") >= 0
    with pytest.raises(HardwareError) as err:
        resolve("no-such-host.invalid")  # RFC 6761: never resolves
    assert err.value.reason == "dns_failed"
    with pytest.raises(HardwareError):
        ping("no-such-host.invalid:80", count=1)


def test_jitter_is_mean_consecutive_difference() -> None:
    assert PingResult(4, (10.0, 14.0, 12.0)).jitter_ms == pytest.approx(3.0)
    assert PingResult(4, (10.0, 14.0, 12.0)).loss_pct == pytest.approx(25.0)
    assert PingResult(1, (5.0,)).jitter_ms == 0.0
    assert PingResult(0).loss_pct == 100.0


def test_target_specs() -> None:
    assert parse_target("peer.example") == ("peer.example", None)
    assert parse_target("10.0.0.1:1883") == ("10.0.0.1", 1883)
    assert parse_target("mqtts://broker.example") == ("broker.example", 8883)
    assert parse_target("https://fleet.example:8443/x") == ("fleet.example", 8443)
    assert parse_target("[fe80::1]:80") == ("fe80::1", 80)
    assert parse_target("fe80::1") == ("fe80::1", None)
    assert ping_spec("http://[fe80::1]/") == "[fe80::1]:80"
    for bad in ("", ":80", "host:http", "host:70000"):
        with pytest.raises(ValueError):
            parse_target(bad)


def test_download_and_upload_against_a_real_http_server(speedtest: SpeedTest) -> None:
    assert download(speedtest.url, 1_000_000, 5.0) > 0
    assert upload(speedtest.url, 1_000_000, 5.0) > 0
    assert speedtest.received == 1_000_000


def test_bandwidth_errors(speedtest: SpeedTest) -> None:
    missing = speedtest.url.replace("/bw", "/nothing")
    for measure in (download, upload):
        with pytest.raises(HardwareError) as err:
            measure(missing, 1000, 2.0)
        assert err.value.reason == "bandwidth_test_failed"
    with pytest.raises(HardwareError):
        download(f"http://127.0.0.1:{free_port()}/bw", 1000, 2.0)
    with pytest.raises(HardwareError):
        upload("ftp://example.org/", 1000, 2.0)
