"""The bandwidth test endpoint, served by uvicorn, only for devices the fleet sent a check:
a device's token opens both directions (in a header, as this agent sends it, or in the
pre-signed URL, as a v1 agent sends it), each capped; no token, an expired one, one altered to name
another device or one another fleet signed gets 401 before a byte of the payload, either
way; a device past its quota gets 429."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from agent.contract import CheckVerdict, bandwidth_token
from agent.hardware import throughput
from agent.hardware.scenario import default_scenario
from agent.hardware.simulated import SimulatedHardware
from agent.probes.bandwidth import BandwidthProbe
from agent.probes.base import CheckParams, ProbeContext
from agent.thresholds import Thresholds
from fleet.actions.signer import Signer
from fleet.api import ApiConfig, Services, create_api
from fleet.bandwidth import SECRET_PURPOSE, BandwidthAccess
from tests.clock import ManualClock
from tests.fleet.db import fresh_db
from tests.served import served

NOW = datetime.fromisoformat("2026-09-07T07:35:00+08:00")
PATH = "/api/v1/bandwidth"
MIB = 1024 * 1024


@dataclass
class Endpoint:
    url: str  # the endpoint's URL, as checks.bandwidth_url names it
    access: BandwidthAccess
    clock: ManualClock

    def presigned(self, device_id: str, valid_s: float = 180) -> str:
        url = self.access.presign(self.url, device_id, self.clock() + timedelta(seconds=valid_s))
        assert url is not None and url != self.url
        return url

    def token(self, device_id: str) -> str:
        _, token = bandwidth_token(self.presigned(device_id))
        assert token is not None
        return token


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[Endpoint]:
    clock = ManualClock(NOW)
    signer = Signer.from_file(tmp_path / "fleet.key")
    services = Services(fresh_db(tmp_path), config=ApiConfig(bandwidth_max_bytes=4 * MIB),
                        clock=clock)
    app = create_api(services)
    with served(app) as base:
        access = BandwidthAccess(signer.derive_secret(SECRET_PURPOSE), base + PATH,
                                 token_grace_s=60, tests_per_window=4, window_s=600,
                                 clock=clock)
        services.bandwidth = access
        yield Endpoint(base + PATH, access, clock)


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    body: bytes
    total: int  # every byte the server sent, status line and headers included


def raw(url: str, method: str, query: str = "", headers: dict[str, str] | None = None,
        content_length: int = 0) -> Raw:
    """One request on a plain socket, counting every byte that comes back.

    A POST announces ``content_length`` body bytes and sends none of them: an answer can
    only come before the body."""
    parts = urlsplit(url)
    lines = [f"{method} {parts.path}?{query} HTTP/1.1", f"Host: {parts.netloc}",
             "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if method == "POST":
        lines += ["Content-Type: application/octet-stream", f"Content-Length: {content_length}"]
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    found = dict(line.split(": ", 1) for line in header_lines)
    return Raw(int(status_line.split()[1]), {k.lower(): v for k, v in found.items()}, body,
               len(received))


def test_a_devices_token_opens_both_directions(endpoint: Endpoint) -> None:
    presigned = endpoint.presigned("dongtou-luxi-sync1")
    # This agent moves the token into Authorization and measures with it.
    assert throughput.download(presigned, 1 * MIB, 5.0) > 0
    assert throughput.upload(presigned, 1 * MIB, 5.0) > 0
    # A v1 agent sends the pre-signed URL as it is: the token rides in the query.
    with urllib.request.urlopen(f"{presigned}&bytes=1000", timeout=10) as resp:
        assert (resp.status, len(resp.read())) == (200, 1000)
    bearer = {"Authorization": f"Bearer {endpoint.token('dongtou-luxi-sync1')}"}
    up = raw(endpoint.url, "POST", headers=bearer, content_length=0)
    assert (up.status, json.loads(up.body)["bytes"]) == (200, 0)
    samples = {s.labels["result"]: s.value for s in endpoint.access.samples()}
    assert samples == {"admitted": 4}


def test_both_directions_are_capped(endpoint: Endpoint) -> None:
    bearer = {"Authorization": f"Bearer {endpoint.token('dongtou-luxi-sync1')}"}
    capped = raw(endpoint.url, "GET", "bytes=1000000000", bearer)
    assert (capped.status, len(capped.body)) == (200, 4 * MIB)
    too_big = urllib.request.Request(endpoint.url, data=b"x" * (4 * MIB + 1), headers=bearer)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(too_big, timeout=10)
    assert refused.value.code == 413


def test_only_the_fleets_endpoint_gets_tokens(endpoint: Endpoint) -> None:
    later = endpoint.clock() + timedelta(minutes=3)
    other = "https://speedtest.example.cn/bw"
    assert endpoint.access.presign(other, "dongtou-luxi-sync1", later) == other
    assert endpoint.access.presign(None, "dongtou-luxi-sync1", later) is None


def test_anyone_else_gets_401_before_a_byte_of_the_payload(endpoint: Endpoint) -> None:
    luxi = endpoint.token("dongtou-luxi-sync1")
    device, expires, mac = luxi.rsplit(".", 2)
    expired = endpoint.token("dongtou-shiyan-sync1")
    other_fleet = BandwidthAccess(b"another fleet's secret" * 2, endpoint.url)
    an_hour = endpoint.clock() + timedelta(hours=1)
    refused = {
        "no token": {},
        "empty bearer": {"Authorization": "Bearer "},
        "garbage": {"Authorization": "Bearer x.y"},
        "an expiry of 5000 digits": {"Authorization": f"Bearer {device}.{'9' * 5000}.{mac}"},
        "an expiry in other digits": {"Authorization": f"Bearer {device}.²³.{mac}"},
        "another device named with this one's MAC": {
            "Authorization": f"Bearer dongtou-shiyan-sync1.{expires}.{mac}"},
        "a later expiry with the same MAC": {
            "Authorization": f"Bearer {device}.{int(expires) + 3600}.{mac}"},
        "another fleet's token": {
            "Authorization": f"Bearer {other_fleet.issue(device, an_hour)}"},
    }
    endpoint.clock.advance(minutes=3, seconds=61)  # past the command's 3 min + 60 s grace
    refused["expired"] = {"Authorization": f"Bearer {expired}"}
    refused["expired, in the query"] = {}
    for what, headers in refused.items():
        token = f"token={expired}" if "query" in what else ""
        down = raw(endpoint.url, "GET", f"bytes=4194304&{token}", headers)
        up = raw(endpoint.url, "POST", token, headers, content_length=4 * MIB)
        for answer in (down, up):
            assert answer.status == 401, (what, answer)
            assert answer.headers["www-authenticate"].startswith("Bearer"), what
            # The body is the bilingual refusal and nothing else: zero payload bytes.
            assert len(answer.body) == int(answer.headers["content-length"]) < 300, what
            assert json.loads(answer.body)["detail"], what
            assert answer.total < 1000, what
    samples = {s.labels["result"]: s.value for s in endpoint.access.samples()}
    assert samples == {"missing": 4, "malformed": 6, "bad_signature": 6, "expired": 4}


def test_a_device_past_its_quota_gets_429(endpoint: Endpoint) -> None:
    luxi = {"Authorization": f"Bearer {endpoint.token('dongtou-luxi-sync1')}"}
    for _ in range(4):  # two checks, down and up
        assert raw(endpoint.url, "GET", "bytes=1000", luxi).status == 200
    endpoint.clock.advance(seconds=30)
    limited = raw(endpoint.url, "GET", "bytes=4194304", luxi)
    assert limited.status == 429
    assert limited.headers["retry-after"] == "570"
    assert "retry in 570 s" in json.loads(limited.body)["detail"]
    assert limited.total < 1000
    assert raw(endpoint.url, "POST", "", luxi, content_length=4 * MIB).status == 429
    # Another device's quota is its own; the device's own comes back with the window.
    shiyan = {"Authorization": f"Bearer {endpoint.token('dongtou-shiyan-sync1')}"}
    assert raw(endpoint.url, "GET", "bytes=1000", shiyan).status == 200
    endpoint.clock.advance(seconds=570)
    luxi = {"Authorization": f"Bearer {endpoint.token('dongtou-luxi-sync1')}"}
    assert raw(endpoint.url, "GET", "bytes=1000", luxi).status == 200


def test_the_agents_probe_passes_with_its_token_and_says_why_without(
    endpoint: Endpoint,
) -> None:
    """The agent's bandwidth probe on a classroom whose test moves real bytes."""
    scenario = replace(default_scenario(),
                       network=replace(default_scenario().network, http=True))
    # A local check (syncclass-agent check) knows only the configured URL: no token.
    ctx = ProbeContext(SimulatedHardware(scenario), Thresholds(), {},
                       bandwidth_url=endpoint.url)
    probe = BandwidthProbe(nbytes=MIB, seconds=5)
    untested = probe.check(ctx, CheckParams())
    assert [(f.level, f.reason, f.entity) for f in untested.findings] == [
        (CheckVerdict.WARN, "bandwidth_untested", "bandwidth")]
    [finding] = untested.findings
    assert "HTTP 401 (no token" in finding.message_en
    assert "只接受车队下发的课前检查命令中的令牌" in finding.message_zh
    assert untested.section["down_mbps"] is None
    # A fleet-sent check carries the pre-signed URL.
    passed = probe.check(ctx, CheckParams(bandwidth_url=endpoint.presigned("room-1")))
    assert (passed.verdict, passed.findings) == (CheckVerdict.PASS, [])
    assert (passed.section["down_mbps"], passed.section["up_mbps"]) == (
        scenario.network.down_mbps, scenario.network.up_mbps)
    samples = {s.labels["result"]: s.value for s in endpoint.access.samples()}
    assert samples == {"missing": 1, "admitted": 2}  # the refused upload was never tried
    # A second check uses the device's last 2 of 4 tests; past its quota, a third is
    # untested, and says why.
    recheck = probe.check(ctx, CheckParams(bandwidth_url=endpoint.presigned("room-1")))
    assert recheck.findings == []
    third = probe.check(ctx, CheckParams(bandwidth_url=endpoint.presigned("room-1")))
    [finding] = third.findings
    assert (finding.level, finding.reason) == (CheckVerdict.WARN, "bandwidth_untested")
    assert "HTTP 429" in finding.message_en
