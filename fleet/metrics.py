"""The service's own metrics, as plain samples each component reports.

Components keep their counters as ordinary attributes and report them through
``samples()``; the API renders every source in Prometheus text format at ``/metrics``.
Keeping prometheus_client out of the components means tests can build many instances
without fighting over one global registry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = ["MetricSource", "Sample"]


@dataclass(frozen=True)
class Sample:
    name: str  # syncclass_ingest_refused_total
    help: str
    value: float
    kind: Literal["counter", "gauge"] = "counter"
    labels: dict[str, str] = field(default_factory=dict)


class MetricSource(Protocol):
    def samples(self) -> Iterable[Sample]: ...
