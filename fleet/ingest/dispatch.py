"""Hand validated messages to the sinks, off the MQTT network thread.

The network thread only calls ``submit`` (a non-blocking put on a bounded queue), so a
slow sink (a database under load, a slow time-series server) never delays keepalives.
One worker thread validates and dispatches in arrival order, which keeps each device's
messages in order for every sink.

Acknowledgement after processing: a message is acknowledged to the broker only once it
is durable.  Every ``ack_interval_s`` the worker takes a cut between two messages (each
``Durable`` sink's cut: the device states changed so far, the time-series points so
far); a second thread makes the cut durable, sinks in the order given (the time series
before the device state, whose stored seqs would otherwise mark as duplicates messages
whose points were never written), then acknowledges the cut's messages in the order they
came.  The session's Receive Maximum bounds what is delivered and not acknowledged, so
the queue never holds more than that and a slow fleet slows the broker instead of
dropping; a process killed or stopped gets the unacknowledged rest again from its
persistent session, and the gate drops what it had already handled.  Lag probes ride
the same queue (``fleet.ingest.lag``) and count once their cut is durable.

Duplicates: QoS 1 is at-least-once and agents replay their spool after an outage, so the
same ``(device, seq)`` can arrive twice.  The optional ``gate`` (``fleet.state.DeviceStates``)
sees every accepted message first and tracks sequence numbers; a message it reports as an
exact duplicate is counted and not given to any sink, so alert rules and the time series
see each message once.  A message whose seq the gate does not believe (far beyond the
expected next one) is held back and counted as suspicious; the gate may release it later
with the message that confirms it.  Status messages are never dropped (retained ones are
redelivered on every reconnect by design).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from agent.contract import Kind
from fleet.ingest.lag import Lag
from fleet.ingest.validate import Accepted, Validator
from fleet.metrics import Sample
from fleet.sinks import Durable, Gate, MessageSink

__all__ = ["Acker", "Dispatcher", "Gate", "Received"]

log = logging.getLogger(__name__)

SINK_LOG_EVERY_S = 60.0
# A cut that cannot be made durable (the database is away) is tried again this often.
RETRY_S = 1.0

# Acknowledges (mid, qos) of a session generation; told nothing for an older session.
Acker = Callable[[int, int, int], None]


class Received(NamedTuple):
    topic: str
    data: bytes
    mid: int = 0
    qos: int = 0
    generation: int = 0  # the broker session it came on (mids are that session's)
    probe: bool = False


@dataclass
class _Cut:
    acks: list[tuple[int, int, int]] = field(default_factory=list)  # mid, qos, generation
    probes: list[bytes] = field(default_factory=list)
    persist: list[Callable[[], None]] = field(default_factory=list)


_METHOD = {
    Kind.STATUS: "on_status",
    Kind.TELEMETRY: "on_telemetry",
    Kind.EVENT: "on_event",
    Kind.CHECK: "on_check",
    Kind.CMD_RESULT: "on_cmd_result",
}


class Dispatcher:
    def __init__(
        self,
        validator: Validator,
        sinks: Sequence[MessageSink],
        gate: Gate | None = None,
        queue_size: int = 200_000,
        durable: Sequence[Durable] = (),
        ack_interval_s: float = 1.0,
        lag: Lag | None = None,
    ) -> None:
        self.validator = validator
        self._sinks = list(sinks)
        self._gate = gate
        self._durable = list(durable)
        self._ack_interval = ack_interval_s
        self.lag = lag or Lag()
        self._acker: Acker | None = None
        self._each_cut: Callable[[], None] | None = None
        # Not bounded here: only unacknowledged messages wait, and dropping one would
        # lose it and hold a place of the broker's window until the next connection.
        self._queue: queue.Queue[Received] = queue.Queue()
        self._queue_size = queue_size
        self._cuts: queue.Queue[_Cut | None] = queue.Queue()  # None: the last one was sent
        self._open = _Cut()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._ack_thread: threading.Thread | None = None
        self._rounds = 0
        self.acked = 0
        self.persist_failures = 0
        self.received = 0
        self.queue_over = 0
        self.duplicates = 0
        self.accepted: Counter[str] = Counter()
        self.sink_errors: Counter[str] = Counter()
        self._last_sink_log: dict[str, float] = {}

    # ------------------------------------------------------------ network thread side

    def submit(self, topic: str, data: bytes, mid: int = 0, qos: int = 0,
               generation: int = 0, probe: bool = False) -> None:
        """Queue one raw message; never blocks, never drops.  Beyond ``queue_size`` it is
        counted: the broker sent more than the Receive Maximum it was asked for."""
        self.received += 1
        self._queue.put_nowait(Received(topic, data, mid, qos, generation, probe))
        if self._queue.qsize() > self._queue_size:
            self.queue_over += 1
            if self.queue_over == 1 or self.queue_over % 1000 == 0:
                log.error("ingest queue beyond its size %d (%d times): the broker keeps no "
                          "Receive Maximum", self._queue_size, self.queue_over)

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    # ------------------------------------------------------------ worker side

    def start(self, acker: Acker | None = None,
              each_cut: Callable[[], None] | None = None) -> None:
        """Dispatch on a thread; with an ``acker``, acknowledge durable cuts through it;
        ``each_cut`` is called on the dispatch thread after each cut (the lag probe)."""
        self._acker, self._each_cut = acker, each_cut
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="ingest-dispatch", daemon=True)
            self._thread.start()
            self._ack_thread = threading.Thread(target=self._run_acks, name="ingest-ack",
                                                daemon=True)
            self._ack_thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop within about ``timeout``: the message in hand is finished, what it and
        everything before it changed is made durable and acknowledged; the rest of the
        queue is left unacknowledged, for the session to deliver again."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        deadline = time.monotonic() + timeout
        self._stopping.set()
        thread.join(timeout / 2)
        if thread.is_alive():
            log.error("ingest dispatcher still busy after %.0fs; leaving it", timeout / 2)
        else:
            self._cuts.put(self._cut())
        self._cuts.put(None)
        ack_thread, self._ack_thread = self._ack_thread, None
        if ack_thread is not None:
            ack_thread.join(max(0.0, deadline - time.monotonic()))
            if ack_thread.is_alive():
                log.error("handled messages not made durable within %.0fs of stopping; the "
                          "broker delivers them again to the next start", timeout)

    def _run(self) -> None:
        next_cut = time.monotonic() + self._ack_interval
        while not self._stopping.is_set():
            try:
                item = self._queue.get(timeout=min(self._ack_interval, 0.2))
            except queue.Empty:
                pass
            else:
                if item.probe:
                    self._open.probes.append(item.data)
                else:
                    self.handle(item.topic, item.data)
                if item.qos:
                    self._open.acks.append((item.mid, item.qos, item.generation))
            if time.monotonic() >= next_cut:
                next_cut = time.monotonic() + self._ack_interval
                self._cuts.put(self._cut())
                if self._each_cut is not None:
                    try:
                        self._each_cut()
                    except Exception:
                        log.exception("ingest: the per-cut hook failed")

    def _cut(self) -> _Cut:
        cut, self._open = self._open, _Cut()
        for sink in self._durable:
            cut.persist.append(sink.cut())
        return cut

    def _run_acks(self) -> None:
        while (cut := self._cuts.get()) is not None:
            if not self._make_durable(cut):
                continue
            for mid, qos, generation in cut.acks:
                if self._acker is not None:
                    self._acker(mid, qos, generation)
            self.acked += len(cut.acks)
            for probe in cut.probes:
                self.lag.handled(probe)
            self._rounds += 1

    def _make_durable(self, cut: _Cut) -> bool:
        """Each sink's part of the cut, in order, tried until it is written; while it is
        not, nothing is acknowledged and the broker holds back at the Receive Maximum."""
        for persist in cut.persist:
            failures = 0
            while True:
                try:
                    persist()
                    break
                except Exception:
                    failures += 1
                    self.persist_failures += 1
                    if failures == 1 or failures % 60 == 0:
                        log.exception("handled messages not yet durable (try %d); they stay "
                                      "unacknowledged until they are", failures)
                    if self._stopping.is_set() and failures >= 3:
                        return False  # the session delivers them again after a restart
                    self._stopping.wait(RETRY_S)
        return True

    def handle(self, topic: str, data: bytes) -> None:
        """Validate one message and give it to every sink; nothing raised escapes."""
        msg = self.validator.check(topic, data)
        if msg is None:
            return
        for kind, payload in self._admitted(topic, msg):
            self._dispatch(msg.device_id, kind, payload)

    def _dispatch(self, device_id: str, kind: Kind, payload: dict[str, Any]) -> None:
        self.accepted[kind.value] += 1
        for sink in self._sinks:
            try:
                getattr(sink, _METHOD[kind])(device_id, payload)
            except Exception:
                name = type(sink).__name__
                self.sink_errors[name] += 1
                # A database outage fails every message: one traceback per sink a minute
                # tells the operator as much as thousands would.
                now = time.monotonic()
                if now - self._last_sink_log.get(name, -SINK_LOG_EVERY_S) >= SINK_LOG_EVERY_S:
                    self._last_sink_log[name] = now
                    log.exception("sink %s failed on %s from %s (%d failures so far)", name,
                                  kind.value, device_id, self.sink_errors[name])

    def _admitted(self, topic: str, msg: Accepted) -> tuple[tuple[Kind, dict[str, Any]], ...]:
        mine = ((msg.kind, msg.payload),)
        if self._gate is None:
            return mine
        try:
            admission = self._gate.admit(msg.device_id, msg.kind, msg.payload)
        except Exception:
            # A broken gate must not stop the ingest: let the message through.
            self.sink_errors[type(self._gate).__name__] += 1
            log.exception("gate failed on %s from %s", msg.kind.value, msg.device_id)
            return mine
        if admission.withheld == "duplicate":
            self.duplicates += 1
        elif admission.withheld:
            self.validator.suspicions.record(admission.withheld, topic, admission.detail)
        return admission.release

    def samples(self) -> Iterable[Sample]:
        yield Sample("syncclass_ingest_received_total", "MQTT messages received", self.received)
        yield Sample(
            "syncclass_ingest_queue_over_total",
            "Messages queued beyond queue_size (the broker exceeded the Receive Maximum)",
            self.queue_over,
        )
        yield Sample(
            "syncclass_ingest_queue_depth", "Messages waiting for dispatch", self.depth, "gauge"
        )
        yield Sample("syncclass_ingest_acked_total",
                     "Messages acknowledged to the broker after they were made durable",
                     self.acked)
        yield Sample("syncclass_ingest_persist_failures_total",
                     "Failed attempts to make handled messages durable", self.persist_failures)
        behind = self.lag.behind_s()
        if behind is not None:
            yield Sample("syncclass_ingest_behind_seconds",
                         "How far behind the broker this process is (its lag probe)",
                         behind, "gauge")
        yield Sample(
            "syncclass_ingest_duplicates_total",
            "Messages dropped as exact (device, seq) duplicates",
            self.duplicates,
        )
        for kind, count in sorted(self.accepted.items()):
            yield Sample(
                "syncclass_ingest_accepted_total",
                "Validated messages dispatched to the sinks, by kind",
                count,
                labels={"kind": kind},
            )
        for sink, count in sorted(self.sink_errors.items()):
            yield Sample(
                "syncclass_ingest_sink_errors_total",
                "Exceptions raised by a sink while handling a message",
                count,
                labels={"sink": sink},
            )
        yield from self.validator.samples()
