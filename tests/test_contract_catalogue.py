"""The reason catalogue is closed and complete: every reason the real agent can put in a
finding is in it (read from the agent's source and seen from its probes under every
simulated fault), each at no worse a level than the catalogue says, and the README's copy
of the table is exactly what ``python -m agent.contract catalogue`` prints."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.contract import REASONS, CheckVerdict, markdown_catalogue
from agent.hardware.scenario import FAULT_KINDS, Fault, default_scenario
from agent.hardware.simulated import SimulatedHardware
from agent.probes.base import CheckParams, ProbeContext
from agent.probes.runner import ProbeRunner
from agent.thresholds import Thresholds

ROOT = Path(__file__).resolve().parent.parent
REASON = re.compile(r"^[a-z]+(?:_[a-z]+)*$")
# Calls that carry a reason into a finding as it is, and the argument that holds it.
_CARRIERS = {"Finding": 1, "graded": 3, "_unreachable": 0, "_failed": 0}
# Backends' errors whose reason a probe passes on as its finding's (network targets and
# network camera streams); the others are wrapped into a catalogued reason of the probe's.
_PASSED_ON = ("stream.py", "netio.py", "base.py", "simulated.py")
_WRAPPED = {"bandwidth_unauthorized", "bandwidth_rate_limited",  # -> bandwidth_untested
            "camera_missing", "microphone_missing"}  # simulated backend: read a gone device


def _name(node: ast.expr) -> str:
    return node.id if isinstance(node, ast.Name) else (
        node.attr if isinstance(node, ast.Attribute) else "")


def _literal(node: ast.expr) -> set[str]:
    # Anything but a string literal (MISSING_REASONS["camera"]: the catalogue's own) is
    # not a reason the source spells out.
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and REASON.match(node.value):
        return {node.value}
    return set()


def _elts(node: ast.expr) -> list[ast.expr]:
    return list(node.elts) if isinstance(node, ast.Tuple | ast.List) else []


def _values(node: ast.expr) -> list[ast.expr]:
    return [v for v in node.values if v is not None] if isinstance(node, ast.Dict) else []


def reasons_in_source() -> set[str]:
    found: set[str] = set()
    for path in sorted((ROOT / "agent").rglob("*.py")):
        if "contract" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = _name(node.func)
                at = _CARRIERS.get(name, 0 if name == "HardwareError" and path.name in _PASSED_ON
                                   else None)
                if at is not None and len(node.args) > at:
                    found |= _literal(node.args[at])
            # The probes' tables: rows of (measurement, reason, ...) and role -> (reason, ...).
            if isinstance(node, ast.AnnAssign | ast.Assign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(_name(t) == "_LIMITS" for t in targets):
                    found |= {r for row in _elts(node.value) for r in _literal(_elts(row)[1])}
                if any(_name(t) == "MISSING" for t in targets):
                    found |= {r for row in _values(node.value) for r in _literal(_elts(row)[0])}
    return found - _WRAPPED


def test_every_reason_in_the_agents_source_is_catalogued() -> None:
    found = reasons_in_source()
    assert len(found) > 20, found  # the scan sees the probes
    assert found - set(REASONS) == set()


def test_the_catalogue_holds_no_reason_the_agent_cannot_send() -> None:
    # Reasons the scan cannot read as a literal: the busy warnings are f"{role}_busy" and
    # the capture failures f"{role}_capture_failed", the slow links f"bandwidth_{direction}_low";
    # avgear's host reason is chosen by an expression; the missing devices come from
    # MISSING_REASONS itself.
    built = {"bandwidth_up_low", "bandwidth_down_low", "camera_busy", "microphone_busy",
             "camera_capture_failed",
             "microphone_capture_failed", "av_host_unreachable", "av_host_port_closed",
             "camera_missing", "microphone_missing", "speaker_missing", "display_disconnected"}
    sent = reasons_in_source() | built
    assert set(REASONS) - sent == set()


_RANK = {CheckVerdict.PASS.value: 0, CheckVerdict.WARN.value: 1, CheckVerdict.FAIL.value: 2,
         "ok": 0}
_VALUES = {"packet_loss": 8, "rtt": 400, "jitter": 80, "bandwidth_up": 1.0,
           "bandwidth_down": 1.0}


@pytest.mark.parametrize("kind", sorted(FAULT_KINDS))
def test_every_simulated_fault_gives_catalogued_findings(kind: str) -> None:
    hw = SimulatedHardware(default_scenario())
    runner = ProbeRunner(ProbeContext(hw, Thresholds(), {"peer": "peer.example"},
                                      bandwidth_url="http://fleet.example/bw"))
    runner.collect()  # the baseline: what is there before the fault
    hw.apply(Fault(kind, value=_VALUES.get(kind)))
    seen = [(f.level.value, f.reason) for f in runner.check(CheckParams()).findings]
    # Telemetry carries its sections' findings too (contract v2), warnings included.
    seen += [(f["level"], f["reason"]) for section in runner.collect().sections.values()
             if isinstance(section, dict) for f in section.get("findings", [])]
    # A device held by the lesson's app is healthy evidence, not a finding.
    assert seen or kind == "device_in_use", f"{kind} shows in no finding"
    for level, reason in seen:
        assert reason in REASONS, reason
        assert _RANK[level] <= _RANK[REASONS[reason].level], (reason, level)


def test_the_catalogue_command_prints_the_table() -> None:
    out = subprocess.run([sys.executable, "-m", "agent.contract", "catalogue"],
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out == markdown_catalogue()
    assert out.count("\n") == len(REASONS) + 2
    bad = subprocess.run([sys.executable, "-m", "agent.contract", "nope"],
                         capture_output=True, text=True, check=False, cwd=ROOT)
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_the_readme_holds_the_generated_catalogue() -> None:
    """Fails until the README carries the table between its markers (the lead pastes the
    section from notes/contract2.md; helpers do not edit the README)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- reasons:begin -->\n(.*?)<!-- reasons:end -->", readme, re.DOTALL)
    assert found is not None, "README.md has no <!-- reasons:begin/end --> markers"
    assert found.group(1) == markdown_catalogue()
