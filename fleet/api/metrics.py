"""``/metrics``: every component's samples plus the API's own request counters.

Each app builds its own ``CollectorRegistry`` so several apps (tests, several fleet
processes in one interpreter) never share or collide in prometheus_client's global one.
A component whose samples cannot be read (its database is away) is left out and
flagged by ``syncclass_metric_source_failed{source=...}``, not the whole page.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from fleet.metrics import MetricSource, Sample

__all__ = ["RequestCounter", "SampleCollector", "build_registry"]

log = logging.getLogger(__name__)


def _template(request: Request) -> str:
    """The matched route's template, not the raw path: ids must not explode the labels."""
    return str(getattr(request.scope.get("route"), "path", "unmatched"))


class RequestCounter:
    """Counts API requests by method, route template and status (a MetricSource)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str, str]] = Counter()

    async def __call__(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        path = _template(request)
        with self._lock:
            self._counts[(request.method, path, str(response.status_code))] += 1
        return response

    def samples(self) -> Iterable[Sample]:
        with self._lock:
            counts = dict(self._counts)
        for (method, path, status), n in sorted(counts.items()):
            yield Sample(
                "syncclass_api_requests_total",
                "API requests by method, route and status",
                float(n),
                labels={"method": method, "route": path, "status": status},
            )


class SampleCollector(Collector):
    def __init__(self, sources: Iterable[MetricSource]) -> None:
        self._sources = list(sources)

    def collect(self) -> Iterator[Metric]:
        by_name: dict[str, list[Sample]] = {}
        for source in self._sources:
            name = type(source).__name__
            try:
                samples = list(source.samples())
                failed = 0.0
            except Exception:
                # A source that reads the database must not take every other component's
                # counters down with it while the database is away.
                log.exception("metric source %s failed", name)
                samples, failed = [], 1.0
            samples.append(Sample("syncclass_metric_source_failed",
                                  "1 when the component's metrics could not be read",
                                  failed, "gauge", {"source": name}))
            for sample in samples:
                by_name.setdefault(sample.name, []).append(sample)
        for name, samples in sorted(by_name.items()):
            keys = sorted({k for s in samples for k in s.labels})
            first = samples[0]
            family: CounterMetricFamily | GaugeMetricFamily
            if first.kind == "counter":
                family = CounterMetricFamily(name, first.help, labels=keys)
            else:
                family = GaugeMetricFamily(name, first.help, labels=keys)
            for s in samples:
                family.add_metric([s.labels.get(k, "") for k in keys], s.value)
            yield family


def build_registry(sources: Iterable[MetricSource]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SampleCollector(sources))
    return registry
