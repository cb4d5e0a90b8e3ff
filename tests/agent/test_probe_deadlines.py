"""Each probe has a deadline: a hung probe (DNS down) never holds back the others or the
telemetry, and every probe's duration and success go out with the telemetry."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import ClassVar

import pytest

from agent.config import ConfigError
from agent.contract import CheckVerdict, Kind, decode, encode
from agent.hardware.simulated import SimulatedHardware
from agent.probes.base import CheckParams, Probe, ProbeContext, ProbeReport
from agent.probes.network import NetworkProbe
from agent.probes.runner import Collection, ProbeRunner
from agent.probes.system import SystemProbe
from agent.thresholds import Thresholds
from fleet.broker import Mosquitto
from tests.agent.agentkit import PREFIX, Subscriber, make_config, running_agent

DEADLINE_S = 0.3


class Hanging(Probe):
    """Blocks until released, as a probe stuck in getaddrinfo does."""

    name: ClassVar[str] = "hanging"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def collect(self, ctx: ProbeContext) -> ProbeReport:
        self.calls += 1
        self.release.wait(60)
        return ProbeReport({"ok": True})


def _runner(**probes: Probe) -> ProbeRunner:
    ctx = ProbeContext(SimulatedHardware(), Thresholds(), {})
    return ProbeRunner(ctx, probes, collect_deadline_s=DEADLINE_S, check_deadline_s=DEADLINE_S)


def _collect(runner: ProbeRunner) -> Collection:
    """collect() in a thread, so that a runner without deadlines fails instead of hanging."""
    done: list[Collection] = []
    thread = threading.Thread(target=lambda: done.append(runner.collect()), daemon=True)
    thread.start()
    thread.join(30)
    assert done, "the collection waited for the hung probe"
    return done[0]


def test_a_hung_probe_is_cut_at_its_deadline_and_the_next_ones_still_run() -> None:
    hanging = Hanging()
    runner = _runner(hanging=hanging, system=SystemProbe())
    try:
        first = _collect(runner)
        assert not hanging.release.is_set()  # returned while the probe is still stuck
        hung = first.sections["hanging"]
        assert {k: hung[k] for k in ("ok", "reason", "message")} == {
            "ok": False, "reason": "probe_timeout", "message": "not done within 0.3 s"}
        assert [(f["reason"], f["entity"]) for f in hung["findings"]] == [
            ("probe_timeout", "probe:hanging")]
        assert first.sections["system"]["ok"] is True, "the probe after the hung one ran"
        assert (first.runs["hanging"].success, first.runs["hanging"].timed_out) == (False, True)
        assert first.runs["hanging"].duration_s >= DEADLINE_S
        assert (first.runs["system"].success, first.runs["system"].timed_out) == (True, False)
        assert [(e["type"], e["entity"]) for e in first.events] == [
            ("probe_failed", "probe:hanging")]

        # Still stuck: not started a second time (no pile-up of hung threads).
        second = _collect(runner)
        assert hanging.calls == 1
        assert second.sections["hanging"]["message"] == (
            "still running after an earlier deadline of 0.3 s")
        assert second.runs["hanging"].timed_out and second.events == []
    finally:
        hanging.release.set()
    for thread in threading.enumerate():
        if thread.name == "probe-collect-hanging":
            thread.join(10)
    third = _collect(runner)  # the stuck call ended: the probe runs again, and recovers
    assert hanging.calls == 2 and third.sections["hanging"] == {"ok": True, "findings": []}
    assert [e["type"] for e in third.events] == ["probe_recovered"]
    assert third.runs["hanging"].success


class HangingCheck(Hanging):
    def check(self, ctx: ProbeContext, params: CheckParams) -> ProbeReport:
        return self.collect(ctx)


def test_a_hung_probe_fails_the_check_with_its_own_reason() -> None:
    hanging = HangingCheck()
    try:
        outcome = _runner(hanging=hanging, system=SystemProbe()).check(CheckParams())
    finally:
        hanging.release.set()
    assert outcome.verdict is CheckVerdict.FAIL
    [finding] = outcome.findings
    assert (finding.reason, finding.entity) == ("probe_timeout", "probe:hanging")
    assert "0.3" in finding.message_zh and "0.3" in finding.message_en
    assert outcome.probes["system"]["ok"] is True


class DnsDown(SimulatedHardware):
    """Name lookups that never answer, as with the school's DNS server down."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def resolve(self, host: str) -> float:
        self.release.wait(60)
        return super().resolve(host)


def test_a_lookup_that_never_answers_is_reported_as_dns_at_the_targets_deadline() -> None:
    hardware = DnsDown()
    probe = NetworkProbe(count=1, timeout_s=0.1, dns_allowance_s=0.2)
    ctx = ProbeContext(hardware, Thresholds(), {"fleet": "fleet.example", "peer": "10.0.0.2"})
    done: list[ProbeReport] = []
    thread = threading.Thread(target=lambda: done.append(probe.collect(ctx)), daemon=True)
    try:
        thread.start()
        thread.join(30)
        assert done, "the probe waited for the lookup"
        assert not hardware.release.is_set()
    finally:
        hardware.release.set()
    [report] = done
    targets = report.section["targets"]
    assert targets["peer"]["ok"] is True, "an address needs no lookup and was measured"
    assert targets["fleet"]["ok"] is False
    [finding] = report.findings
    assert (finding.reason, finding.entity) == ("dns_failed", "target:fleet")
    assert finding.message_en == ("cannot reach fleet: the DNS server does not answer: check "
                                  "this PC's DNS server setting and the school's DNS")


def test_telemetry_keeps_its_interval_with_dns_down_and_reports_each_probe(
        broker: Mosquitto, tmp_path: Path) -> None:
    hardware = DnsDown()
    cfg = make_config(tmp_path, broker.url, agent={"probe_deadline_s": DEADLINE_S},
                      network={"targets": {"fleet": "fleet.example"}})
    sub = Subscriber(broker.port, [f"{PREFIX}/dev/room-1/telemetry"])
    try:
        with running_agent(cfg, hardware=hardware):
            telemetry = [m[1] for m in sub.wait_for(lambda m: True, count=3, timeout=30)]
    finally:
        hardware.release.set()
        sub.close()
    for t in telemetry:
        decode("room-1", Kind.TELEMETRY, encode(t))
        runs = t["probe_runs"]
        assert set(runs) == set(t["sections"])
        assert runs["network"]["timed_out"] is True and runs["network"]["success"] is False
        assert t["sections"]["network"]["reason"] == "probe_timeout"
        others = {name: run for name, run in runs.items() if name != "network"}
        assert all(r["success"] and not r["timed_out"] and r["duration_s"] >= 0
                   for r in others.values()), others
        assert t["sections"]["system"]["ok"] is True


def test_probe_deadline_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"agent\.probe_deadline_s"):
        make_config(tmp_path, "mqtt://127.0.0.1:1883", agent={"probe_deadline_s": 0})
