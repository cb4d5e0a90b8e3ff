"""The disk spool: order, seq that survives restarts and crashes, bounds, drop reports."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.contract import MAX_PAYLOAD_BYTES, ContractError, Kind
from agent.spool import Spool


def _body(seq: int, **extra: Any) -> dict[str, Any]:
    return {"seq": seq, **extra}


def test_fifo_and_seq_survive_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    assert spool.last_seq == 0
    seqs = [spool.append(Kind.TELEMETRY, _body) for _ in range(3)]
    assert seqs == [1, 2, 3]
    first = spool.after(0, 10)
    assert [r.seq for r in first] == [1, 2, 3]
    assert json.loads(first[0].payload) == {"seq": 1}
    spool.delete([first[0].id])
    spool.close()

    again = Spool(tmp_path / "s.sqlite")
    assert [r.seq for r in again.after(0, 10)] == [2, 3], "unacknowledged records survive"
    assert again.append(Kind.EVENT, _body) == 4, "a seq is never reused"
    assert len(again) == 3


def test_sessions_grow_across_restarts(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    assert [spool.next_session(), spool.next_session()] == [1, 2]
    spool.close()
    assert Spool(tmp_path / "s.sqlite").next_session() == 3


def test_a_payload_that_cannot_be_sent_uses_no_seq(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    with pytest.raises(ContractError):
        spool.append(Kind.TELEMETRY, lambda seq: _body(seq, blob="x" * MAX_PAYLOAD_BYTES))
    with pytest.raises(ZeroDivisionError):
        spool.append(Kind.TELEMETRY, lambda seq: _body(seq, bad=1 / 0))
    assert spool.append(Kind.TELEMETRY, _body) == 1
    assert len(spool) == 1


def test_bounded_oldest_dropped_counted_and_reported_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_records=5)
    for _ in range(8):
        spool.append(Kind.TELEMETRY, _body)
    assert [r.seq for r in spool.after(0, 10)] == [4, 5, 6, 7, 8]
    stats = spool.stats()
    assert (stats.queued, stats.dropped_total, stats.dropped_unreported) == (5, 3, 3)

    reported: list[tuple[int, int]] = []

    def event(seq: int, dropped: int, total: int) -> dict[str, Any]:
        reported.append((dropped, total))
        return _body(seq, type="spool_dropped")

    assert spool.report_drops(event) == 3
    # Storing the report itself pushed one more record out: that one is for next time.
    assert reported == [(3, 3)]
    assert spool.stats().dropped_unreported == 1
    assert json.loads(spool.after(0, 10)[-1].payload)["type"] == "spool_dropped"
    assert spool.report_drops(event) == 1
    assert spool.stats().dropped_total == 5


def test_lowered_bound_trims_at_open(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_records=100)
    for _ in range(30):
        spool.append(Kind.TELEMETRY, _body)
    spool.close()
    smaller = Spool(tmp_path / "s.sqlite", max_records=10)
    assert [r.seq for r in smaller.after(0, 100)] == list(range(21, 31))
    assert (smaller.stats().queued, smaller.stats().dropped_unreported) == (10, 20)


def test_bounded_by_bytes(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_records=1000, max_bytes=3000)
    for _ in range(10):
        spool.append(Kind.TELEMETRY, lambda seq: _body(seq, pad="x" * 900))
    assert spool.stats().bytes <= 3000
    assert len(spool) == 3
    assert spool.stats().dropped_total == 7


def test_corrupt_file_is_kept_aside_and_seq_moves_forward(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    spool = Spool(path)
    spool.append(Kind.TELEMETRY, _body)
    spool.close()
    for side in tmp_path.glob("s.sqlite-*"):
        side.unlink()
    path.write_bytes(b"this is not a database" * 100)
    recovered = Spool(path)
    assert recovered.append(Kind.TELEMETRY, _body) > 1_000_000, "no seq the fleet already saw"
    assert list(tmp_path.glob("s.sqlite.corrupt-*")), "the broken file is kept"


_WRITER = """
import sys
from pathlib import Path
from agent.contract import Kind
from agent.spool import Spool
spool = Spool(Path(sys.argv[1]))
while True:
    seq = spool.append(Kind.TELEMETRY, lambda seq: {"seq": seq, "pad": "x" * 200})
    if seq % 20 == 0:
        print(seq, flush=True)
"""


def test_sigkill_mid_write_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    while int(proc.stdout.readline()) < 60:  # let it write a while, then pull the plug
        pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    after = Spool(path)
    seqs = [r.seq for r in after.after(0, 1_000_000)]
    assert seqs == list(range(1, len(seqs) + 1)), "every committed record, in order, no gap"
    assert after.append(Kind.TELEMETRY, _body) == len(seqs) + 1


def test_the_newest_record_stays_even_when_it_alone_is_over_the_bound(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_records=1000, max_bytes=500)
    for _ in range(3):
        spool.append(Kind.TELEMETRY, _body)
    spool.append(Kind.TELEMETRY, lambda seq: _body(seq, pad="x" * 900))
    assert [r.seq for r in spool.after(0, 10)] == [4]
    assert (spool.stats().bytes > 500, spool.stats().dropped_total) == (True, 3)
