"""The on-disk queue between the agent's producers and the MQTT link, and its counters.

Every agent-sent message except the retained status goes through here: telemetry,
events, check results and command results.  The spool hands out the per-device ``seq``
in the same transaction that stores the message, so a seq is used if and only if its
message is on disk: a crash or power loss (SQLite WAL, ``synchronous=FULL``) loses at
most the message being written and never reuses a seq.  A record leaves the spool only
when the broker acknowledged it (PUBACK), so the link sends it again after a reconnect
or a restart; the fleet drops the resulting duplicates by ``seq``.

The spool is bounded in records and bytes; when full the oldest records go first and
the number dropped is kept until it is reported (an ``spool_dropped`` event).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.contract import Kind, encode

__all__ = ["Record", "Spool", "SpoolStats"]

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    seq INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Record:
    id: int
    kind: Kind
    seq: int
    payload: bytes


@dataclass(frozen=True)
class SpoolStats:
    queued: int
    bytes: int
    dropped_total: int
    dropped_unreported: int

    def to_json(self) -> dict[str, int]:
        return {"queued": self.queued, "bytes": self.bytes, "dropped_total": self.dropped_total}


class Spool:
    """A thread-safe, bounded, durable FIFO of encoded messages."""

    def __init__(self, path: Path, max_records: int = 20_000,
                 max_bytes: int = 64 * 1024 * 1024) -> None:
        self.path = path
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open()
            first_seq = 1
        except sqlite3.DatabaseError as exc:
            # A torn SD card must not keep the classroom dark: keep the broken file for
            # a post-mortem and start again.  The seq jumps forward (a gap the fleet
            # reports) rather than restarting at 1, which it would take for duplicates.
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            log.error("spool %s is unreadable (%s); moved to %s", path, exc, aside)
            for suffix in ("", "-wal", "-shm"):
                side = Path(f"{path}{suffix}")
                if side.exists():
                    side.rename(Path(f"{aside}{suffix}"))
            self._db = self._open()
            first_seq = int(time.time() * 1000)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('next_seq', ?)", (first_seq,))
            for key in ("session", "dropped_total", "dropped_unreported"):
                self._db.execute("INSERT OR IGNORE INTO meta VALUES (?, 0)", (key,))
            self._count, self._bytes = self._recount()
            self._enforce_bounds()  # the bounds may have been lowered since the last run
            self._db.execute("COMMIT")

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed record survives power loss, not only a process crash.
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            db.execute("SELECT COUNT(*) FROM records").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _meta(self, key: str) -> int:
        value: int = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]
        return value

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))

    def append(self, kind: Kind, build: Callable[[int], dict[str, Any]]) -> int:
        """Store the payload ``build(seq)`` under the next seq; return the seq.

        ``build`` runs inside the transaction: if it or encoding fails (a payload over the
        contract's limit raises ContractError) nothing is stored and no seq is used.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._meta("next_seq")
                payload = encode(build(seq))
                self._db.execute("INSERT INTO records (kind, seq, payload) VALUES (?, ?, ?)",
                                 (kind.value, seq, payload))
                self._set_meta("next_seq", seq + 1)
                self._count += 1
                self._bytes += len(payload)
                self._enforce_bounds()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._count, self._bytes = self._recount()
                raise
        return seq

    def _recount(self) -> tuple[int, int]:
        count, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM records").fetchone()
        return count, size

    def _enforce_bounds(self) -> None:
        """Inside a transaction: delete the oldest records until the bounds hold."""
        if self._count <= self.max_records and self._bytes <= self.max_bytes:
            return
        # Oldest first, read only as far as needed (usually one row), never the newest:
        # the record just written.
        rows = self._db.execute(
            "SELECT id, LENGTH(payload) FROM records "
            "WHERE id < (SELECT MAX(id) FROM records) ORDER BY id")
        doomed: list[tuple[int]] = []
        for row_id, length in rows:
            if self._count <= self.max_records and self._bytes <= self.max_bytes:
                break
            doomed.append((row_id,))
            self._count -= 1
            self._bytes -= length
        rows.close()
        self._db.executemany("DELETE FROM records WHERE id = ?", doomed)
        gone = len(doomed)
        for key in ("dropped_total", "dropped_unreported"):
            self._set_meta(key, self._meta(key) + gone)
        log.warning("spool full: dropped the %d oldest record(s)", gone)

    def report_drops(self, build: Callable[[int, int, int], dict[str, Any]]) -> int:
        """If records were dropped since the last report, store ``build(seq, dropped,
        dropped_total)`` (an event) and clear the unreported count; return ``dropped``."""
        with self._lock:
            dropped = self._meta("dropped_unreported")
            total = self._meta("dropped_total")
        if not dropped:
            return 0
        self.append(Kind.EVENT, lambda seq: build(seq, dropped, total))
        with self._lock, self._db:
            self._set_meta("dropped_unreported", self._meta("dropped_unreported") - dropped)
        return dropped

    def after(self, record_id: int, limit: int) -> list[Record]:
        """Up to ``limit`` records after ``record_id``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, kind, seq, payload FROM records WHERE id > ? ORDER BY id LIMIT ?",
                (record_id, limit),
            ).fetchall()
        return [Record(r[0], Kind(r[1]), r[2], bytes(r[3])) for r in rows]

    def delete(self, record_ids: list[int]) -> None:
        """Forget acknowledged records (those the bound already dropped are skipped).

        One transaction for the lot: a sync per record would cap a backlog's drain at the
        disk's sync rate.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for record_id in record_ids:
                    row = self._db.execute(
                        "DELETE FROM records WHERE id = ? RETURNING LENGTH(payload)",
                        (record_id,)).fetchone()
                    if row is not None:
                        self._count -= 1
                        self._bytes -= row[0]
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @property
    def last_seq(self) -> int:
        """The last seq handed out (0 before the first message)."""
        with self._lock:
            return self._meta("next_seq") - 1

    def next_session(self) -> int:
        """A new, durable connection number: the status ``session``."""
        with self._lock, self._db:
            session = self._meta("session") + 1
            self._set_meta("session", session)
        return session

    def continue_sessions(self, after: int) -> None:
        """Number the next connection above ``after``: a machine that replaces a device
        carries on the device's sessions, so the fleet takes its birth for the newest."""
        with self._lock, self._db:
            self._set_meta("session", max(self._meta("session"), after))

    def stats(self) -> SpoolStats:
        with self._lock:
            return SpoolStats(self._count, self._bytes, self._meta("dropped_total"),
                              self._meta("dropped_unreported"))

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def close(self) -> None:
        with self._lock:
            self._db.close()
