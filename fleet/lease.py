"""The coordinator lease: one fleet process of a cluster runs the ticker.

Every process ingests (active-active); one, the coordinator, runs what happens because
time passes: alert timers, reminders, escalations and the notification stage, check
scheduling and expiry, unanswered commands and silence detection (active-standby, as
Zabbix HA nodes and Alertmanager replicas divide the work).

The lease is a row in the fleet's own database (``fleet_lease``), taken and renewed with
one conditional UPDATE, so SQLite (one process) and PostgreSQL (several) run the same
code: a process takes the row when it holds it already or the row has expired, and the
fencing ``token`` goes up by one at every change of holder.  A row rather than a
PostgreSQL advisory lock because the lock belongs to one connection: the ticker's
transactions run on pooled connections, a lock lost with a dropped connection is not
noticed by the process until it asks, and SQLite has no such lock; the row has one
path for both, an expiry the operator sets, and a token to fence with.

Fencing (:meth:`Lease.fenced`): while the coordinator ticks, every transaction its thread
begins first reads the lease row ``FOR SHARE`` with its own holder and token.  A process
that lost the lease (paused past its expiry, cut off from the database) finds another
token and writes nothing; a process taking over waits in its UPDATE until the old
holder's running transaction has ended, so it then reads everything that one wrote
(reminders marked sent, checks recorded) and never does it again.

Expiry is judged by the processes' wall clocks (the hosts keep NTP time; a clock off
by more than ``ttl_s`` minus one tick lets a standby take over early, and fencing still
keeps the two apart).  A coordinator that stops cleanly (SIGTERM) gives the lease up at
once; one that dies keeps it for ``ttl_s``, then the first standby to tick takes it:
fail-over within ``ttl_s`` plus one tick.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, case, event, select, update
from sqlalchemy.orm import Session, SessionTransaction

from fleet.db.base import SessionFactory, insert_on_conflict, session_scope, utcnow
from fleet.db.models import FleetLease
from fleet.metrics import Sample

__all__ = ["COORDINATOR", "Lease", "LeaseConfig", "LeaseLost"]

log = logging.getLogger(__name__)

COORDINATOR = "coordinator"
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class LeaseConfig:
    """TOML table ``[lease]``."""

    # A dead coordinator is replaced this long after its last renewal (plus one tick).
    ttl_s: float = 10.0

    def __post_init__(self) -> None:
        if self.ttl_s < 3.0:
            raise ValueError("ttl_s must be >= 3 (the coordinator renews once a second)")


class LeaseLost(RuntimeError):
    """This process no longer holds the lease its ticker writes under."""


def holder_name() -> str:
    """Host, process and a nonce: a restarted process is a new holder."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Lease:
    def __init__(self, sessions: SessionFactory, config: LeaseConfig | None = None,
                 name: str = COORDINATOR, holder: str | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        # The real wall clock, never the fleet's (a test's clock may stand still).
        self._sessions = sessions
        self.config = config or LeaseConfig()
        self.name = name
        self.holder = holder or holder_name()
        self._clock = clock
        self._token: int | None = None
        self._fence = threading.local()
        self.takeovers = 0
        self.fenced_out = 0
        with session_scope(sessions) as session:
            session.execute(
                insert_on_conflict(session, FleetLease)
                .values(name=name, holder="", token=0, expires_at=_NEVER)
                .on_conflict_do_nothing(index_elements=[FleetLease.name])
            )
        event.listen(sessions, "after_begin", self._check_fence)

    @property
    def held(self) -> bool:
        return self._token is not None

    @property
    def token(self) -> int | None:
        return self._token

    def renew(self) -> bool:
        """Take or keep the lease; whether this process holds it now.  A database that
        cannot be asked means not holding it (fencing would refuse the writes anyway)."""
        now = self._clock()
        try:
            with session_scope(self._sessions) as session:
                token = session.execute(
                    update(FleetLease)
                    .where(FleetLease.name == self.name,
                           (FleetLease.holder == self.holder) | (FleetLease.expires_at < now))
                    .values(
                        # A new holder fences every write of the one before.
                        token=case((FleetLease.holder == self.holder, FleetLease.token),
                                   else_=FleetLease.token + 1),
                        holder=self.holder,
                        expires_at=now + timedelta(seconds=self.config.ttl_s),
                        renewed_at=now,
                    )
                    .returning(FleetLease.token)
                ).scalar_one_or_none()
        except Exception:
            log.exception("lease %s: renewal failed; not coordinating", self.name)
            token = None
        self._changed(token)
        return token is not None

    def _changed(self, token: int | None) -> None:
        if token == self._token:
            return
        if token is None:
            log.warning("lease %s: lost (token %s); standing by", self.name, self._token)
        else:
            self.takeovers += 1
            log.warning("lease %s: taken by %s with token %d", self.name, self.holder, token)
        self._token = token

    def release(self) -> None:
        """Give the lease up now (a clean stop): the next standby to tick takes it."""
        if self._token is None:
            return
        with session_scope(self._sessions) as session:
            session.execute(
                update(FleetLease)
                .where(FleetLease.name == self.name, FleetLease.holder == self.holder,
                       FleetLease.token == self._token)
                .values(expires_at=_NEVER)
            )
        log.info("lease %s: released by %s", self.name, self.holder)
        self._token = None

    @contextmanager
    def fenced(self) -> Iterator[None]:
        """Every transaction begun on this thread inside checks the lease first."""
        self._fence.token = self._token
        try:
            yield
        finally:
            self._fence.token = None

    def _check_fence(self, session: Session, transaction: SessionTransaction,
                     connection: Connection) -> None:
        token = getattr(self._fence, "token", None)
        if token is None:
            return
        # FOR SHARE (nothing on SQLite, whose one writer is this process): a standby's
        # takeover UPDATE waits until this transaction is over.
        ours = connection.execute(
            select(FleetLease.token)
            .where(FleetLease.name == self.name, FleetLease.holder == self.holder,
                   FleetLease.token == token)
            .with_for_update(read=True)
        ).first()
        if ours is None:
            self.fenced_out += 1
            self._token = None
            raise LeaseLost(f"lease {self.name}: token {token} of {self.holder} is no "
                            "longer current; this process stands by")

    def samples(self) -> Iterable[Sample]:
        yield Sample("syncclass_coordinator", "1 while this process holds the coordinator "
                     "lease and runs the ticker", 1 if self.held else 0, "gauge",
                     labels={"holder": self.holder})
        yield Sample("syncclass_lease_token", "The fencing token this process holds "
                     "(0: standing by)", self._token or 0, "gauge")
        yield Sample("syncclass_lease_takeovers_total",
                     "Times this process took the coordinator lease", self.takeovers)
        yield Sample("syncclass_lease_fenced_total", "Ticker transactions refused because "
                     "the lease had passed to another process", self.fenced_out)

