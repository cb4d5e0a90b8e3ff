"""Runs every probe, isolates the ones that break, and turns state changes into events.

``collect`` fills the periodic telemetry; ``check`` runs a pre-class check.  A probe that
raises yields ``{"ok": false, "reason": "probe_error", "message": ...}`` for its section
and a failing ``probe_error`` finding and never stops the others, as node_exporter's scrape
survives a broken collector.  A check (seconds of
capture and throughput) may run while telemetry is collected: each kind of call is
serialised with itself, and the probes' state between runs (known devices, counters) is
only ever replaced whole, never half-updated.

Each probe has a deadline, as node_exporter's collectors have a scrape timeout: a probe
runs in its own thread and the runner waits for it only until its deadline, then reports
``probe_timeout`` and goes on, so a hung lookup (DNS down) delays the others by at most
that deadline and the telemetry still leaves on time.  Python cannot kill a thread, so a
probe that is still running when the next run starts is not started again (no pile-up of
hung threads); it is reported as timed out until it returns.  Every run's duration and
success are kept (``runs``) and go into telemetry as ``probe_runs``, like
node_scrape_collector_duration_seconds and _success.  Probes still run one after another:
the Linux backend's udev context is not meant to be shared between threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from agent.contract import CheckVerdict, EventType
from agent.probes import build
from agent.probes.base import CheckParams, Finding, Probe, ProbeContext, ProbeReport

__all__ = [
    "CHECK_DEADLINE_S",
    "COLLECT_DEADLINE_S",
    "CheckOutcome",
    "Collection",
    "ProbeRun",
    "ProbeRunner",
]

log = logging.getLogger(__name__)

# Per probe.  A collection must fit in the default 15 s interval; a check's probes take
# seconds by design (ffmpeg waits up to 15 s for a camera, the bandwidth test about 6 s).
COLLECT_DEADLINE_S = 10.0
CHECK_DEADLINE_S = 60.0


@dataclass(frozen=True)
class ProbeRun:
    """How one probe's run went: node_exporter's collector duration and success."""

    duration_s: float
    success: bool
    timed_out: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"duration_s": round(self.duration_s, 3), "success": self.success,
                "timed_out": self.timed_out}


@dataclass
class Collection:
    sections: dict[str, Any]
    events: list[dict[str, Any]]  # contract "event" bodies: type, entity, detail, messages
    runs: dict[str, ProbeRun] = field(default_factory=dict)

    def runs_json(self) -> dict[str, Any]:
        """The telemetry's optional ``probe_runs`` field."""
        return {name: run.to_json() for name, run in self.runs.items()}


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


def _broken(name: str, run: ProbeRun, error: str | None, deadline_s: float) -> list[Finding]:
    """The finding of a probe that timed out or raised (none when it ran)."""
    if run.timed_out:
        return [Finding(CheckVerdict.FAIL, "probe_timeout",
                        f"检测项 {name} 超时：{deadline_s:g} 秒内未完成",
                        f"probe {name} timed out: not done within {deadline_s:g} s",
                        f"probe:{name}")]
    if error is not None:
        return [Finding(CheckVerdict.FAIL, "probe_error",
                        f"检测项 {name} 运行出错（请把此信息转给运维）：{error}",
                        f"probe {name} failed (pass this on to support): {error}",
                        f"probe:{name}")]
    return []


def _with_findings(section: Any, findings: list[Finding]) -> Any:
    """A telemetry section with its warnings and failures (contract v2's ``findings``)."""
    if not isinstance(section, dict):
        return section
    return {**section, "findings": [f.to_json() for f in findings]}


def _worst(findings: list[Finding]) -> CheckVerdict:
    return ProbeReport(None, findings).verdict


class ProbeRunner:
    def __init__(self, ctx: ProbeContext, probes: Mapping[str, Probe] | None = None, *,
                 collect_deadline_s: float = COLLECT_DEADLINE_S,
                 check_deadline_s: float = CHECK_DEADLINE_S) -> None:
        self.ctx = ctx
        self.probes = dict(probes) if probes is not None else build()
        self.collect_deadline_s = collect_deadline_s
        self.check_deadline_s = check_deadline_s
        self._running: dict[tuple[str, str], threading.Thread] = {}  # (kind, probe) -> late
        self._running_lock = threading.Lock()
        self._collect_lock = threading.Lock()
        self._check_lock = threading.Lock()
        self._broken: set[str] = set()  # probes whose last collect raised
        self._reachable: dict[str, bool] = {}  # network target -> last state

    def collect(self) -> Collection:
        with self._collect_lock:
            sections, events, runs = {}, [], {}
            for name, probe in self.probes.items():
                report, error, runs[name] = self._run(
                    "collect", name, partial(probe.collect, self.ctx), self.collect_deadline_s)
                found = report.findings + _broken(name, runs[name], error,
                                                  self.collect_deadline_s)
                sections[name] = _with_findings(report.section, found)
                events += self._probe_transition(name, error)
            events += self._target_transitions(sections.get("network"))
            return Collection(sections, events, runs)

    def check(self, params: CheckParams) -> CheckOutcome:
        with self._check_lock:
            sections, findings = {}, []
            for name, probe in self.probes.items():
                report, error, run = self._run(
                    "check", name, partial(probe.check, self.ctx, params), self.check_deadline_s)
                sections[name] = report.section
                findings += report.findings + _broken(name, run, error, self.check_deadline_s)
            return CheckOutcome(_worst(findings), sections, findings)

    def _run(self, kind: str, name: str, call: Callable[[], ProbeReport],
             deadline_s: float) -> tuple[ProbeReport, str | None, ProbeRun]:
        started = time.monotonic()
        key = (kind, name)
        with self._running_lock:
            late = self._running.get(key)
            if late is not None and not late.is_alive():
                del self._running[key]
                late = None
        if late is not None:  # last run's thread is still stuck: do not start another
            stuck = f"still running after an earlier deadline of {deadline_s:g} s"
            return self._timed_out(stuck), stuck, ProbeRun(0.0, False, True)
        outcome: list[tuple[ProbeReport, str | None]] = []

        def target() -> None:
            try:
                outcome.append((call(), None))
            except Exception as exc:  # one broken probe must not take the others down
                log.exception("probe %s failed", name)
                error = f"{type(exc).__name__}: {exc}"
                outcome.append((ProbeReport({"ok": False, "reason": "probe_error",
                                             "message": error}), error))

        thread = threading.Thread(target=target, name=f"probe-{kind}-{name}", daemon=True)
        thread.start()
        thread.join(deadline_s)
        duration = time.monotonic() - started
        if thread.is_alive():
            with self._running_lock:
                self._running[key] = thread
            log.error("probe %s (%s) passed its deadline of %g s", name, kind, deadline_s)
            late_error = f"not done within {deadline_s:g} s"
            return self._timed_out(late_error), late_error, ProbeRun(duration, False, True)
        if not outcome:  # ended by a BaseException (SystemExit) without a report
            outcome.append((ProbeReport({"ok": False, "reason": "probe_error",
                                         "message": "ended without a report"}),
                            "ended without a report"))
        report, failure = outcome[0]
        return report, failure, ProbeRun(duration, failure is None)

    @staticmethod
    def _timed_out(message: str) -> ProbeReport:
        return ProbeReport({"ok": False, "reason": "probe_timeout", "message": message})

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
