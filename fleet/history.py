"""Each device's recent network, bandwidth and temperature figures for the device page.

Read from the time-series store when one answers InfluxQL (``[history] influxql_url``,
InfluxDB 1.x's ``/query``, which Grafana's data source also uses), else from a bounded
history the fleet keeps itself: for every device and figure, averages over 5-minute
buckets for the last day and over 1-hour buckets for the last week, in memory.

Why memory and not the database: a telemetry message arrives every 15 s from every
device, and a row per message (or a bucket update per message) would make the database
the ingest's bottleneck for a page that is only glanced at; the ring costs at most
``SERIES_MAX × (288 + 168)`` buckets of 14 bytes per device, and a few array updates
per message.  It starts empty after a restart, which is what the time-series store is for.
"""

from __future__ import annotations

import bisect
import threading
from array import array
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from agent.contract import ContractError, parse_ts
from fleet.db.base import utcnow
from fleet.sinks import NullSink

__all__ = [
    "FIGURES",
    "SPANS",
    "Figure",
    "HistoryConfig",
    "Series",
    "Span",
    "TelemetryHistory",
]

Span = Literal["day", "week"]


@dataclass(frozen=True)
class Figure:
    section: str  # the telemetry section (and measurement syncclass_<section>)
    field: str
    per_target: bool  # one series per network target


#: What the device page charts, in the order it draws them.
FIGURES: Final = (
    Figure("network", "rtt_ms", True),
    Figure("network", "loss_pct", True),
    Figure("network", "jitter_ms", True),
    Figure("bandwidth", "rx_mbps", False),
    Figure("bandwidth", "tx_mbps", False),
    Figure("bandwidth", "down_mbps", False),
    Figure("bandwidth", "up_mbps", False),
    Figure("system", "temp_c", False),
)


@dataclass(frozen=True)
class SpanSpec:
    length: timedelta
    bucket: timedelta

    @property
    def buckets(self) -> int:
        return int(self.length / self.bucket)


SPANS: Final[dict[str, SpanSpec]] = {
    "day": SpanSpec(timedelta(days=1), timedelta(minutes=5)),
    "week": SpanSpec(timedelta(days=7), timedelta(hours=1)),
}
#: Series one device may have (figures × targets): an agent naming ever new targets
#: cannot grow the fleet's memory.
SERIES_MAX: Final = 64
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class HistoryConfig:
    """``[history]``: where the device page reads its charts."""

    # InfluxDB 1.x (or a server speaking its /query API); empty: the fleet's own history.
    influxql_url: str = ""
    database: str = "syncclass"
    username: str = ""
    password: str = ""
    timeout_s: float = 5.0


@dataclass(frozen=True)
class Series:
    field: str
    target: str  # the network target, "" for the device's own figures
    points: list[tuple[int, float]]  # (epoch ms of the bucket's start, mean)


def figures_of(sections: Mapping[str, Any]) -> Iterable[tuple[str, str, float]]:
    """(field, target, value) of every charted number in one telemetry's sections."""
    for figure in FIGURES:
        data = sections.get(figure.section)
        if not isinstance(data, dict):
            continue
        items: list[tuple[str, Any]] = [("", data)]
        if figure.per_target:
            targets = data.get("targets")
            items = list(targets.items()) if isinstance(targets, dict) else []
        for target, item in items:
            value = item.get(figure.field) if isinstance(item, dict) else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                yield figure.field, str(target), float(value)


class _Ring:
    """Sorted buckets of one span, the oldest dropped first, in flat arrays (14 bytes a
    bucket: ~92 KB per device of 11 series over a week, measured with tracemalloc, so
    ~90 MB for a thousand such devices)."""

    def __init__(self, spec: SpanSpec) -> None:
        self._width = int(spec.bucket.total_seconds() * 1000)
        self._span = spec.buckets
        self._index = array("I")  # bucket number since the epoch
        self._sums = array("d")
        self._counts = array("H")

    def add(self, ms: int, value: float) -> None:
        n = ms // self._width
        index = self._index
        if index and n <= index[-1] - self._span:
            return  # older than the span: a spool replayed after a long outage
        i = bisect.bisect_left(index, n)
        if i < len(index) and index[i] == n:
            if self._counts[i] < 0xFFFF:
                self._sums[i] += value
                self._counts[i] += 1
            return
        index.insert(i, n)
        self._sums.insert(i, value)
        self._counts.insert(i, 1)
        cut = bisect.bisect_right(index, index[-1] - self._span)
        if cut:
            del index[:cut], self._sums[:cut], self._counts[:cut]

    def points(self, since_ms: int) -> list[tuple[int, float]]:
        i = bisect.bisect_left(self._index, -(-since_ms // self._width))
        return [(n * self._width, round(t / c, 3))
                for n, t, c in zip(self._index[i:], self._sums[i:], self._counts[i:],
                                   strict=True)]


class TelemetryHistory(NullSink):
    """The fleet's own bounded history: a sink after the device states."""

    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._rings: dict[str, dict[tuple[str, str], dict[str, _Ring]]] = {}

    def on_telemetry(self, device_id: str, payload: dict[str, Any]) -> None:
        sections = payload.get("sections")
        if not isinstance(sections, dict):
            return
        now = self._clock()
        try:  # a device clock running ahead never writes into the future
            at = min(parse_ts(str(payload.get("ts"))), now)
        except ContractError:
            at = now
        ms = int((at - _EPOCH).total_seconds() * 1000)
        with self._lock:
            device = self._rings.setdefault(device_id, {})
            for field, target, value in figures_of(sections):
                rings = device.get((field, target))
                if rings is None:
                    if len(device) >= SERIES_MAX:
                        continue
                    rings = device[(field, target)] = {k: _Ring(s) for k, s in SPANS.items()}
                for ring in rings.values():
                    ring.add(ms, value)

    def forget(self, device_id: str) -> None:
        with self._lock:
            self._rings.pop(device_id, None)

    def read(self, device_id: str, span: Span, now: datetime) -> list[Series]:
        since = int((now - SPANS[span].length - _EPOCH).total_seconds() * 1000)
        with self._lock:
            device = self._rings.get(device_id, {})
            found = [Series(field, target, rings[span].points(since))
                     for (field, target), rings in device.items()]
        return [s for s in found if s.points]
