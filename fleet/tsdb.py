"""Telemetry, events, checks and status into a time-series database.

Written with ``influxdb-client`` (InfluxDB 2 line protocol over ``/api/v2/write``), which
InfluxDB 2/3 and VictoriaMetrics accept; the lines are formatted here (the client's
``Point`` objects cost more than all the rest of the ingest), the client does the HTTP and
the authentication.  Each telemetry section becomes a measurement (``syncclass_system``,
``syncclass_camera``, ``syncclass_microphone``, ``syncclass_speaker``,
``syncclass_display``, ``syncclass_network``, ``syncclass_bandwidth``): the section's own
numbers and booleans make one point, and each item of its ``devices`` list or ``targets``
table makes one point tagged ``entity`` (``camera:<id>``, ``target:<name>``).  Every point
carries the device's place from the inventory: county, school, pair, classroom, device.

Time: a status point (the birth, the Last Will) is stamped when the fleet receives it: the
Last Will carries the time its connection began, and stamped with that a dead device
would read online on the dashboard until the next point.  Telemetry, events and checks
are stamped with the device's ``ts`` corrected by its measured clock offset
(``DeviceStates.clock_offset``) and never later than their arrival: a live message lands
at its receive time whatever the device's clock says, and a spool replayed after an
outage lands where it happened, not piled on the moment of reconnection.

The sink methods only append to a bounded buffer; a background thread writes batches.
While the database is away (a network error, a 5xx), points stay in the buffer and are
retried with jittered backoff; when the buffer is full the oldest points are dropped and
counted, so neither memory nor the ingest suffers from a dead time-series server.  A batch
the server refuses as bad (a 4xx such as a field type conflict) is counted as rejected
with one line logged and not retried, so it never holds back the points after it.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from agent.contract import parse_ts
from fleet.db.base import SessionFactory, session_scope, utcnow
from fleet.inventory import DeviceContext, DeviceContextCache
from fleet.metrics import Sample
from fleet.sinks import NullSink

__all__ = [
    "MEASUREMENTS",
    "TelemetryWriter",
    "TsdbConfig",
    "line",
    "place_tags",
    "telemetry_lines",
]

log = logging.getLogger(__name__)

MEASUREMENTS: dict[str, tuple[str, str]] = {
    # section: (measurement, entity kind of its items)
    "system": ("syncclass_system", ""),
    "cameras": ("syncclass_camera", "camera"),
    "microphones": ("syncclass_microphone", "microphone"),
    "speakers": ("syncclass_speaker", "speaker"),
    "displays": ("syncclass_display", "display"),
    "network": ("syncclass_network", "target"),
    "bandwidth": ("syncclass_bandwidth", ""),
}
_VERDICT_CODE = {"pass": 0, "warn": 1, "fail": 2}

# Client errors that say nothing about the batch: the writer is misconfigured (token,
# URL) or told to slow down, and every batch would get the same answer, so it waits.
_NOT_THE_BATCH = frozenset({401, 403, 404, 408, 429})


def _refused(status: int | None) -> bool:
    """A 4xx about the batch itself (malformed, too large, a field type conflict)."""
    return status is not None and 400 <= status < 500 and status not in _NOT_THE_BATCH


# Line-protocol escaping.  Commas and spaces end a measurement, and equals signs also end a
# tag key, tag value or field key.  A backslash is doubled so that one at the end of a
# value cannot escape the separator after it (InfluxDB 2 and VictoriaMetrics read "\\" as
# one backslash).  A line cannot hold a line break: CR and LF, and TAB, which some parsers
# take as a separator, become the two characters "\r", "\n", "\t", as influxdb-client
# writes them.
_CONTROL = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True)
class TsdbConfig:
    enabled: bool = False
    url: str = "http://127.0.0.1:8428"
    token: str = ""
    org: str = "syncclass"
    bucket: str = "syncclass"
    batch_size: int = 5_000
    flush_interval_s: float = 5.0
    max_buffer: int = 200_000  # points held while the database is away
    timeout_s: float = 5.0
    retry_max_s: float = 60.0
    # The ingest acknowledges a message only once its points are written, so a fleet
    # killed with points in the buffer gets their messages again.  A server failing for
    # longer than this stops holding the ingest back (alerts must not wait for the
    # dashboards): its points wait in the buffer, retried, as before.
    hold_acks_s: float = 30.0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_buffer < 1:
            raise ValueError("batch_size and max_buffer must be >= 1")


def place_tags(ctx: DeviceContext | None, device_id: str) -> dict[str, str]:
    """The inventory tags of a device's points: where it is, as the dashboards filter."""
    if ctx is None:
        return {"device": device_id}
    return {
        "county": ctx.county,
        "school": ctx.school,
        "pair": ",".join(ctx.pairs),
        "classroom": ctx.classroom,
        "device": device_id,
    }


class _Escaper:
    """``str.translate`` with a memory: it is slow, and the same names, places and entity
    ids come back in every message."""

    _MAX = 100_000  # distinct strings remembered before starting afresh

    def __init__(self, specials: Mapping[str, str]) -> None:
        self._table = str.maketrans({**specials, **_CONTROL})
        self._done: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        done = self._done.get(text)
        if done is None:
            if len(self._done) >= self._MAX:
                self._done.clear()
            done = self._done[text] = text.translate(self._table)
        return done


_measurement = _Escaper({",": "\\,", " ": "\\ "})
_key = _Escaper({",": "\\,", " ": "\\ ", "=": "\\="})  # also tag values


def _field_set(item: Mapping[str, Any]) -> str:
    """The item's numbers and booleans as ``k=v,...``; "" if it has none.

    Values are decoded JSON, so exact type checks suffice (and cost less than isinstance
    on the hot path)."""
    parts = []
    for k, v in item.items():
        kind = type(v)
        if kind is bool:
            parts.append(f"{_key(k)}={'true' if v else 'false'}")
        # Numbers are floats: InfluxDB refuses a field that changes type (12 then 12.5).
        # NaN and the infinities have no line-protocol form.
        elif (kind is float or kind is int) and -math.inf < v < math.inf:
            parts.append(f"{_key(k)}={float(v)!r}")
    return ",".join(parts)


def _tag_set(tags: Mapping[str, str]) -> str:
    """``,k=v,...`` sorted by key (InfluxDB's preferred order); empty values left out."""
    return "".join(f",{_key(k)}={_key(v)}" for k, v in sorted(tags.items()) if k and v)


def _ms(at: datetime) -> int:
    return (at - _EPOCH) // _MS


def line(measurement: str, tags: Mapping[str, str], fields: Mapping[str, Any],
         at: datetime) -> str:
    """One point in InfluxDB line protocol, timestamp in milliseconds ("" without fields)."""
    field_set = _field_set(fields)
    if not field_set:
        return ""
    return f"{_measurement(measurement)}{_tag_set(tags)} {field_set} {_ms(at)}"


def telemetry_lines(
    sections: Mapping[str, Any], tags: Mapping[str, str], at: datetime, seq: int | None = None
) -> list[str]:
    """Every section of one telemetry payload in line protocol (unknown sections too).

    ``seq`` (the message's) rides along as the system section's field ``seq``, so what the
    time series holds can be checked against what the agent sent, gap by gap."""
    ms, own = _ms(at), _tag_set(tags)
    # An item's tags are the device's with ``entity`` in its sorted place.
    before = _tag_set({k: v for k, v in tags.items() if k < "entity"})
    after = _tag_set({k: v for k, v in tags.items() if k > "entity"})
    lines: list[str] = []
    for name, data in sections.items():
        if not isinstance(data, dict):
            continue
        measurement, entity_kind = MEASUREMENTS.get(name, (f"syncclass_{name}", "item"))
        head = _measurement(measurement)
        if name == "system" and seq is not None:
            data = {**data, "seq": seq}
        if field_set := _field_set(data):
            lines.append(f"{head}{own} {field_set} {ms}")
        entities: list[tuple[str, Any]] = []
        if isinstance(items := data.get("devices"), list):
            entities += [(f"{entity_kind}:{item.get('id', '?')}", item)
                         for item in items if isinstance(item, dict)]
        if isinstance(targets := data.get("targets"), dict):
            entities += [(f"target:{target}", item) for target, item in targets.items()]
        for entity, item in entities:
            if isinstance(item, dict) and (field_set := _field_set(item)):
                lines.append(f"{head}{before},entity={_key(entity)}{after} {field_set} {ms}")
    return lines


class TelemetryWriter(NullSink):
    """A ``MessageSink`` writing to InfluxDB / VictoriaMetrics in the background."""

    def __init__(
        self,
        sessions: SessionFactory,
        config: TsdbConfig,
        clock: Callable[[], datetime] = utcnow,
        tags: Callable[[str], dict[str, str]] | None = None,
        places: DeviceContextCache | None = None,
        offset: Callable[[str], float] | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        # The device clock minus the fleet's, seconds (the device state measures it).
        self._offset = offset
        self._sessions = sessions
        self._tags = tags
        # Shared with the alert engine by the app, so one inventory reload clears both.
        self._places = places or DeviceContextCache()
        self._buffer: deque[str] = deque()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time: points leave in order
        self._added = 0  # points ever buffered; written + rejected + dropped have left
        self._failing_since: float | None = None
        self._client = InfluxDBClient(
            url=config.url,
            token=config.token or "-",
            org=config.org,
            timeout=int(config.timeout_s * 1000),
            retries=False,  # retries are ours: the buffer and the backoff below
        )
        self._write = self._client.write_api(write_options=SYNCHRONOUS)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._retry_at: datetime | None = None
        self.written = 0
        self.dropped = 0
        self.write_errors = 0
        self.rejected = 0

    # ------------------------------------------------------------ sink side (never blocks)

    def on_status(self, device_id: str, payload: dict[str, Any]) -> None:
        fields = {"online": payload["state"] == "online", "session": payload["session"]}
        self._add([line("syncclass_status", self._tags_of(device_id), fields, self._clock())])

    def on_telemetry(self, device_id: str, payload: dict[str, Any]) -> None:
        self._add(telemetry_lines(payload["sections"], self._tags_of(device_id),
                                  self._when(device_id, payload), payload["seq"]))

    def on_event(self, device_id: str, payload: dict[str, Any]) -> None:
        tags = {**self._tags_of(device_id), "type": payload["type"], "entity": payload["entity"]}
        self._add([line("syncclass_event", tags, {"count": 1}, self._when(device_id, payload))])

    def on_check(self, device_id: str, payload: dict[str, Any]) -> None:
        tags = {**self._tags_of(device_id), "verdict": payload["verdict"]}
        fields = {"verdict_code": _VERDICT_CODE[payload["verdict"]],
                  "findings": len(payload["findings"])}
        self._add([line("syncclass_check", tags, fields, self._when(device_id, payload))])

    def _when(self, device_id: str, payload: dict[str, Any]) -> datetime:
        """Fleet time of a message: its ts less the device's clock offset, never later
        than now (see the module docstring)."""
        offset = self._offset(device_id) if self._offset is not None else 0.0
        return min(parse_ts(payload["ts"]) - timedelta(seconds=offset), self._clock())

    def reload_tags(self) -> None:
        """Forget cached inventory tags (call after inventory changes)."""
        self._places.clear()

    def _tags_of(self, device_id: str) -> dict[str, str]:
        if self._tags is not None:
            return self._tags(device_id)
        # Every message asks: a session per message cost 2.8 s per 60,000 (issue 13).
        place = self._places.known(device_id)
        if place is None:
            with session_scope(self._sessions) as session:
                place = self._places.get(session, device_id)
        return place_tags(place, device_id)

    def _add(self, lines: list[str]) -> None:
        with self._lock:
            self._added += len(lines)
            self._buffer.extend(lines)
            excess = len(self._buffer) - self.config.max_buffer
            for _ in range(max(0, excess)):
                self._buffer.popleft()
            if excess > 0:
                self.dropped += excess
                if self.dropped == excess:
                    log.error("time-series buffer full: dropping the oldest points")

    # ------------------------------------------------------------ writer side

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def cut(self) -> Callable[[], None]:
        """``Durable``: the points buffered so far, written (or refused, or dropped)."""
        with self._lock:
            upto = self._added
        return lambda: self._persist(upto)

    def _persist(self, upto: int) -> None:
        failing = self._failing_since
        if failing is not None and time.monotonic() - failing > self.config.hold_acks_s:
            return
        with self._flush_lock:
            if self.written + self.rejected + self.dropped < upto:
                self._flush()
            if self.written + self.rejected + self.dropped < upto:
                raise ConnectionError(f"time-series server {self.config.url} is failing")

    def flush(self) -> int:
        """Write buffered points in batches; returns how many were written.

        On a failure the batch goes back to the head of the buffer and the next attempt
        waits (jittered exponential backoff up to ``retry_max_s``), unless called
        directly; a refused batch is dropped and counted (``rejected``).
        """
        with self._flush_lock:
            return self._flush()

    def _flush(self) -> int:
        total = 0
        while True:
            with self._lock:
                n = min(self.config.batch_size, len(self._buffer))
                batch = [self._buffer.popleft() for _ in range(n)]
            if not batch:
                break
            try:
                self._write.write(bucket=self.config.bucket, org=self.config.org,
                                  record="\n".join(batch),
                                  # typed as the enum class, whose values are plain str
                                  write_precision=WritePrecision.MS)  # type: ignore[arg-type]
            except ApiException as exc:
                if not _refused(exc.status):
                    self._failed(batch, exc)
                    break
                # The server refused this batch itself: sending it again gets the same
                # answer, and at the head of the buffer it would hold back every later
                # point.  Counted, one line of it logged, and the next batch goes on.
                self.rejected += len(batch)
                log.error("time-series server refused %d points (HTTP %s: %s); first: %s",
                          len(batch), exc.status, (exc.body or exc.reason or "")[:300],
                          batch[0][:300])
                continue
            except Exception as exc:
                self._failed(batch, exc)
                break
            self._failures = 0
            self._failing_since = None
            total += len(batch)
            self.written += len(batch)
        return total

    def _failed(self, batch: list[str], exc: Exception) -> None:
        """The server is away or failing (5xx, network, auth): the batch waits its turn."""
        self._requeue(batch)
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        self.write_errors += 1
        self._failures += 1
        log.warning("time-series write to %s failed (%d points buffered): %s",
                    self.config.url, self.buffered, exc)

    def _requeue(self, batch: list[str]) -> None:
        with self._lock:
            room = self.config.max_buffer - len(self._buffer)
            keep = batch[len(batch) - room:] if room < len(batch) else batch
            self.dropped += len(batch) - len(keep)
            self._buffer.extendleft(reversed(keep))

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="tsdb-writer", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(self.config.timeout_s * 2 + 5)
        self.flush()
        self._client.close()  # type: ignore[no-untyped-call]

    def _run(self) -> None:
        while not self._stop.wait(self._next_wait()):
            self.flush()

    def _next_wait(self) -> float:
        if self._failures == 0:
            return self.config.flush_interval_s
        backoff = min(self.config.retry_max_s,
                      self.config.flush_interval_s * 2 ** min(self._failures, 16))
        # Jittered, so fleet processes that lost the server together do not all come
        # back at the same instant when it returns.
        return float(backoff * random.uniform(0.5, 1.0))

    def samples(self) -> Iterable[Sample]:
        yield Sample("syncclass_tsdb_points_written_total", "Points written to the TSDB",
                     self.written)
        yield Sample("syncclass_tsdb_points_dropped_total",
                     "Points dropped because the TSDB buffer was full", self.dropped)
        yield Sample("syncclass_tsdb_write_errors_total", "Failed TSDB batch writes",
                     self.write_errors)
        yield Sample("syncclass_tsdb_points_rejected_total",
                     "Points in batches the TSDB refused as bad (HTTP 4xx), not retried",
                     self.rejected)
        yield Sample("syncclass_tsdb_points_buffered", "Points waiting to be written",
                     self.buffered, "gauge")
