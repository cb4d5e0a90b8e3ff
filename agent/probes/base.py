"""The probe interface: what every probe module implements and the runner calls.

A probe owns one telemetry section (``name``).  ``collect`` is cheap and runs every
interval; ``check`` is thorough (captures frames, records audio, measures throughput) and
runs only in a pre-class check.  Probes only return data: they never publish, spool or
serialise (Telegraf's accumulator rule), and one failing probe never fails the others.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

# One Struct for a finding on both ends of the wire: the agent builds what the fleet checks.
from agent.contract import CheckVerdict, Finding, utcnow

if TYPE_CHECKING:
    from agent.baseline import Baseline
    from agent.hardware.base import Hardware
    from agent.quiet import QuietWindows
    from agent.thresholds import Thresholds

__all__ = [
    "CheckParams",
    "Finding",
    "Probe",
    "ProbeContext",
    "ProbeReport",
    "grade",
    "graded",
    "mark",
]


@dataclass(frozen=True)
class CheckParams:
    """What the fleet asks of a pre-class check (the ``run-check`` command's args)."""

    # Extra network targets for this lesson, e.g. {"peer": "10.1.2.3"}: the paired
    # classroom's endpoint, which the fleet tells each end.
    targets: dict[str, str] = field(default_factory=dict)
    # Throughput this lesson needs (Mbit/s); None means the configured default.
    need_up_mbps: float | None = None
    need_down_mbps: float | None = None
    # A recorded lesson (录播) needs no uplink from the receiving end.
    uplink: bool = True
    bandwidth_url: str | None = None
    # Passive evidence only: no picture, sound or throughput sampled (see agent.quiet).
    passive: bool = False


@dataclass
class ProbeContext:
    hardware: Hardware
    thresholds: Thresholds
    targets: dict[str, str]  # name -> host or URL, from config
    bandwidth_url: str | None = None
    clock: Callable[[], datetime] = utcnow  # for times probes report (``measured_at``)
    # The classroom's expected devices (None: each presence probe remembers its own).
    baseline: Baseline | None = None
    # Network encoders and recording hosts (录播主机): name -> URL or host[:port].
    av_hosts: dict[str, str] = field(default_factory=dict)
    # Lessons near, when nothing may be sampled (None: no lesson is ever known).
    quiet: QuietWindows | None = None
    # Cameras and microphones are sampled between checks this often, one device per
    # collection, when nothing holds them and no lesson is near (0: only in checks).
    sample_every_s: float = 0.0

    def may_disturb(self, params: CheckParams | None = None) -> bool:
        """Whether sampling (which takes devices and the uplink) is allowed now."""
        if params is not None and params.passive:
            return False
        return self.quiet is None or self.quiet.quiet_until() is None


@dataclass
class ProbeReport:
    """A probe's section plus the findings a check derives from it."""

    section: Any  # JSON-serialisable; goes into telemetry/check payloads under ``name``
    findings: list[Finding] = field(default_factory=list)

    @property
    def verdict(self) -> CheckVerdict:
        levels = {f.level for f in self.findings}
        if CheckVerdict.FAIL in levels:
            return CheckVerdict.FAIL
        if CheckVerdict.WARN in levels:
            return CheckVerdict.WARN
        return CheckVerdict.PASS


def grade(value: float, warn: float, fail: float, *, low_is_bad: bool = False) -> CheckVerdict:
    """Where ``value`` falls against a warn and a fail level (high is bad unless told)."""
    if low_is_bad:
        value, warn, fail = -value, -warn, -fail
    if value > fail:
        return CheckVerdict.FAIL
    if value > warn:
        return CheckVerdict.WARN
    return CheckVerdict.PASS


def graded(
    value: float, warn: float, fail: float, reason: str, entity: str,
    texts: tuple[str, str], *, low_is_bad: bool = False,
) -> Finding | None:
    """A finding when ``value`` crosses ``warn`` or ``fail``; None when it passes.

    ``texts`` are the Chinese and English messages; ``{threshold}`` in them becomes the
    level crossed (replaced, not formatted: a device name may hold braces).
    """
    level = grade(value, warn, fail, low_is_bad=low_is_bad)
    if level is CheckVerdict.PASS:
        return None
    threshold = fail if level is CheckVerdict.FAIL else warn
    zh, en = (t.replace("{threshold}", str(threshold)) for t in texts)
    return Finding(level, reason, zh, en, entity, value, threshold)


def mark(item: dict[str, Any], findings: list[Finding]) -> dict[str, Any]:
    """Set ``ok`` (no failing finding) and, when not ok, ``reason`` and ``message``.

    Warnings leave ``ok`` true: the contract's ``ok`` means "usable for a lesson"; they
    reach the fleet as the section's ``findings`` (contract v2), like failures do.
    """
    failing = [f for f in findings if f.level is CheckVerdict.FAIL]
    item["ok"] = not failing
    if failing:
        item["reason"] = failing[0].reason
        item["message"] = f"{failing[0].message_zh} / {failing[0].message_en}"
    return item


class Probe(ABC):
    name: ClassVar[str]  # the telemetry section this probe fills

    @abstractmethod
    def collect(self, ctx: ProbeContext) -> ProbeReport:
        """Cheap measurement for the periodic telemetry."""

    def check(self, ctx: ProbeContext, params: CheckParams) -> ProbeReport:
        """Thorough pre-class check; by default the periodic measurement."""
        return self.collect(ctx)
