"""Runs every probe, isolates the ones that break, and turns state changes into events.

``collect`` fills the periodic telemetry; ``check`` runs a pre-class check.  A probe that
raises yields ``{"ok": false, "reason": "probe_error", "message": ...}`` for its section
(and a failing finding in a check) and never stops the others, as node_exporter's scrape
survives a broken collector.  A check (seconds of
capture and throughput) may run while telemetry is collected: each kind of call is
serialised with itself, and the probes' state between runs (known devices, counters) is
only ever replaced whole, never half-updated.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from agent.contract import CheckVerdict, EventType
from agent.probes import build
from agent.probes.base import CheckParams, Finding, Probe, ProbeContext, ProbeReport

__all__ = ["CheckOutcome", "Collection", "ProbeRunner"]

log = logging.getLogger(__name__)


@dataclass
class Collection:
    sections: dict[str, Any]
    events: list[dict[str, Any]]  # contract "event" bodies: type, entity, detail, messages


@dataclass
class CheckOutcome:
    verdict: CheckVerdict
    probes: dict[str, Any]
    findings: list[Finding]

    def to_json(self) -> dict[str, Any]:
        """The ``verdict``, ``probes`` and ``findings`` fields of a contract ``check``."""
        return {
            "verdict": self.verdict.value,
            "probes": self.probes,
            "findings": [f.to_json() for f in self.findings],
        }


def _worst(findings: list[Finding]) -> CheckVerdict:
    return ProbeReport(None, findings).verdict


class ProbeRunner:
    def __init__(self, ctx: ProbeContext, probes: Mapping[str, Probe] | None = None) -> None:
        self.ctx = ctx
        self.probes = dict(probes) if probes is not None else build()
        self._collect_lock = threading.Lock()
        self._check_lock = threading.Lock()
        self._broken: set[str] = set()  # probes whose last collect raised
        self._reachable: dict[str, bool] = {}  # network target -> last state

    def collect(self) -> Collection:
        with self._collect_lock:
            sections, events = {}, []
            for name, probe in self.probes.items():
                report, error = self._run(name, partial(probe.collect, self.ctx))
                sections[name] = report.section
                events += self._probe_transition(name, error)
            events += self._target_transitions(sections.get("network"))
            return Collection(sections, events)

    def check(self, params: CheckParams) -> CheckOutcome:
        with self._check_lock:
            sections, findings = {}, []
            for name, probe in self.probes.items():
                report, error = self._run(name, partial(probe.check, self.ctx, params))
                sections[name] = report.section
                findings += report.findings
                if error is not None:
                    findings.append(Finding(
                        CheckVerdict.FAIL, "probe_error",
                        f"检测项 {name} 运行出错（请把此信息转给运维）：{error}",
                        f"probe {name} failed (pass this on to support): {error}",
                        f"probe:{name}"))
            return CheckOutcome(_worst(findings), sections, findings)

    def _run(self, name: str, call: Callable[[], ProbeReport]) -> tuple[ProbeReport, str | None]:
        try:
            report = call()
            error = None
        except Exception as exc:  # one broken probe must not take the others down
            log.exception("probe %s failed", name)
            error = f"{type(exc).__name__}: {exc}"
            report = ProbeReport({"ok": False, "reason": "probe_error", "message": error})
        return report, error

    def _probe_transition(self, name: str, error: str | None) -> list[dict[str, Any]]:
        if error is not None and name not in self._broken:
            self._broken.add(name)
            return [{
                "type": EventType.PROBE_FAILED.value, "entity": f"probe:{name}",
                "detail": {"probe": name, "error": error},
                "message_zh": f"检测项 {name} 运行出错：{error}",
                "message_en": f"probe {name} failed: {error}",
            }]
        if error is None and name in self._broken:
            self._broken.discard(name)
            return [{
                "type": EventType.PROBE_RECOVERED.value, "entity": f"probe:{name}",
                "detail": {"probe": name},
                "message_zh": f"检测项 {name} 已恢复", "message_en": f"probe {name} recovered",
            }]
        return []

    def _target_transitions(self, network: Any) -> list[dict[str, Any]]:
        if not isinstance(network, dict) or not isinstance(network.get("targets"), dict):
            return []
        events = []
        for name, item in network["targets"].items():
            # Reachable means something answered; a slow answer is a finding, not an event.
            reachable = item.get("rtt_ms") is not None
            before = self._reachable.get(name)
            self._reachable[name] = reachable
            if before == reachable or (before is None and reachable):
                continue
            detail = {k: item.get(k) for k in ("host", "rtt_ms", "loss_pct", "reason")}
            if reachable:
                events.append({
                    "type": EventType.TARGET_REACHABLE.value, "entity": f"target:{name}",
                    "detail": detail, "message_zh": f"{name} 已恢复连通",
                    "message_en": f"{name} reachable again",
                })
            else:
                events.append({
                    "type": EventType.TARGET_UNREACHABLE.value, "entity": f"target:{name}",
                    "detail": detail,
                    "message_zh": f"无法连接 {name}（{item.get('host')}）",
                    "message_en": f"cannot reach {name} ({item.get('host')})",
                })
        return events
