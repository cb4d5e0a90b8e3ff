"""The probe runner: isolation of a broken probe, events on state changes, check verdicts."""

from __future__ import annotations

from typing import ClassVar

import pytest

from agent.contract import CheckVerdict, Kind, decode, encode, envelope
from agent.hardware.scenario import Fault
from agent.hardware.simulated import SimulatedHardware
from agent.probes import PROBES, build
from agent.probes.base import CheckParams, Probe, ProbeContext, ProbeReport
from agent.probes.runner import ProbeRunner
from agent.probes.system import SystemProbe
from agent.thresholds import Thresholds


class Flaky(Probe):
    name: ClassVar[str] = "flaky"

    def __init__(self) -> None:
        self.broken = True

    def collect(self, ctx: ProbeContext) -> ProbeReport:
        if self.broken:
            raise RuntimeError("sensor fell off")
        return ProbeReport({"ok": True})


def make_runner(hw: SimulatedHardware, **probes: Probe) -> ProbeRunner:
    ctx = ProbeContext(hw, Thresholds(), {"peer": "peer.example"},
                       bandwidth_url="http://fleet.example/bw")
    return ProbeRunner(ctx, probes or None)


def test_a_raising_probe_never_breaks_the_others() -> None:
    flaky = Flaky()
    runner = make_runner(SimulatedHardware(), flaky=flaky, system=SystemProbe())
    first = runner.collect()
    broken = first.sections["flaky"]
    assert {k: broken[k] for k in ("ok", "reason", "message")} == {
        "ok": False, "reason": "probe_error", "message": "RuntimeError: sensor fell off"}
    # Contract v2: the section carries its finding, so the fleet reads one model.
    assert [(f["level"], f["reason"], f["entity"]) for f in broken["findings"]] == [
        ("fail", "probe_error", "probe:flaky")]
    assert first.sections["system"]["ok"] is True
    assert [(e["type"], e["entity"]) for e in first.events] == [("probe_failed", "probe:flaky")]
    assert runner.collect().events == []  # still broken: said once
    flaky.broken = False
    assert [e["type"] for e in runner.collect().events] == ["probe_recovered"]


def test_a_raising_probe_fails_the_check() -> None:
    runner = make_runner(SimulatedHardware(), flaky=Flaky(), system=SystemProbe())
    outcome = runner.check(CheckParams())
    assert outcome.verdict is CheckVerdict.FAIL
    assert [(f.reason, f.entity) for f in outcome.findings] == [("probe_error", "probe:flaky")]
    assert outcome.probes["system"]["ok"] is True


def test_target_events_on_transitions_only() -> None:
    hw = SimulatedHardware()
    runner = make_runner(hw)
    assert runner.collect().events == []  # reachable from the start: nothing to say
    hw.apply(Fault("packet_loss", device="peer.example", value=100))
    [down] = runner.collect().events
    assert (down["type"], down["entity"]) == ("target_unreachable", "target:peer")
    assert down["detail"]["loss_pct"] == 100 and down["message_en"].startswith("cannot reach")
    assert runner.collect().events == []
    hw.clear("packet_loss")
    assert [e["type"] for e in runner.collect().events] == ["target_reachable"]
    hw.apply(Fault("packet_loss", value=8))  # degraded but answering: a finding, no event
    assert runner.collect().events == []


def test_healthy_classroom_passes_and_payloads_fit_the_contract() -> None:
    runner = make_runner(SimulatedHardware())
    collection = runner.collect()
    assert set(collection.sections) == set(PROBES)
    telemetry = {**envelope("room-1", 7), "interval": 15, "sections": collection.sections}
    decode("room-1", Kind.TELEMETRY, encode(telemetry))
    outcome = runner.check(CheckParams(targets={"stream": "rtmp://live.example/app"}))
    assert outcome.verdict is CheckVerdict.PASS and outcome.findings == []
    assert set(outcome.probes["network"]["targets"]) == {"peer", "stream"}
    check = {**envelope("room-1", 8), **outcome.to_json(), "request_id": None}
    assert decode("room-1", Kind.CHECK, encode(check))["verdict"] == "pass"


def test_faulty_classroom_fails_with_actionable_findings() -> None:
    hw = SimulatedHardware()
    runner = make_runner(hw)
    runner.collect()
    hw.apply(Fault("camera_black"))
    hw.apply(Fault("mic_unplugged"))
    hw.apply(Fault("clock_unsynced"))
    outcome = runner.check(CheckParams())
    found = {(f.level.value, f.reason) for f in outcome.findings}
    assert ("fail", "camera_black") in found and ("fail", "microphone_missing") in found
    assert ("warn", "clock_unsynced") in found
    assert outcome.verdict is CheckVerdict.FAIL
    assert all(f.message_zh and f.message_en for f in outcome.findings)
    check = {**envelope("room-1", 9), **outcome.to_json(), "request_id": "c-1"}
    assert len(decode("room-1", Kind.CHECK, encode(check))["findings"]) == len(outcome.findings)


def test_registry_enables_and_refuses_unknown_names() -> None:
    assert set(build()) == set(PROBES)
    assert "bandwidth" not in build({"bandwidth": False})
    with pytest.raises(ValueError, match="camras"):
        build({"camras": True})
    assert build()["cameras"] is not build()["cameras"]  # fresh instances, fresh state
