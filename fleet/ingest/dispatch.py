"""Hand validated messages to the sinks, off the MQTT network thread.

The network thread only calls ``submit`` (a non-blocking put on a bounded queue), so a
slow sink (a database under load, a slow time-series server) never delays keepalives or
acknowledgements.  One worker thread validates and dispatches in arrival order, which
keeps each device's messages in order for every sink.

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
from collections.abc import Iterable, Sequence
from typing import Any

from agent.contract import Kind
from fleet.ingest.validate import Accepted, Validator
from fleet.metrics import Sample
from fleet.sinks import Gate, MessageSink

__all__ = ["Dispatcher", "Gate"]

log = logging.getLogger(__name__)

SINK_LOG_EVERY_S = 60.0


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
    ) -> None:
        self.validator = validator
        self._sinks = list(sinks)
        self._gate = gate
        # None is the stop marker.
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self.received = 0
        self.queue_dropped = 0
        self.duplicates = 0
        self.accepted: Counter[str] = Counter()
        self.sink_errors: Counter[str] = Counter()
        self._last_sink_log: dict[str, float] = {}

    # ------------------------------------------------------------ network thread side

    def submit(self, topic: str, data: bytes) -> None:
        """Queue one raw message; never blocks (a full queue drops it and counts it)."""
        self.received += 1
        try:
            self._queue.put_nowait((topic, data))
        except queue.Full:
            self.queue_dropped += 1
            if self.queue_dropped == 1 or self.queue_dropped % 1000 == 0:
                log.error("ingest queue full: %d messages dropped so far", self.queue_dropped)

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    # ------------------------------------------------------------ worker side

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ingest-dispatch", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop after what is already queued has been dispatched."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            log.error("ingest dispatcher did not drain its queue in %.0fs; leaving it", timeout)
            return
        thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self.handle(*item)

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
            "syncclass_ingest_queue_dropped_total",
            "MQTT messages dropped because the ingest queue was full",
            self.queue_dropped,
        )
        yield Sample(
            "syncclass_ingest_queue_depth", "Messages waiting for dispatch", self.depth, "gauge"
        )
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
