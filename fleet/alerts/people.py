"""What people do to alerts: acknowledge, resolve by hand, silence, maintenance windows.

A mixin of :class:`fleet.alerts.engine.AlertEngine`, which provides the unit of work
(``_writing``: locked, and the open-alerts index kept right) and the life-cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from fleet.alerts import mute
from fleet.alerts.config import AlertConfig
from fleet.alerts.lifecycle import LIVE, Lifecycle
from fleet.alerts.notices import set_notice
from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import Alert, AlertState, Silence

__all__ = ["AlertNotFound", "AlertStateError", "PeopleActions"]


class AlertNotFound(LookupError):
    """No alert, silence or window with that id."""


class AlertStateError(ValueError):
    """The alert is not in a state that allows this (e.g. acknowledging a resolved one)."""


class PeopleActions:
    sessions: SessionFactory
    config: AlertConfig
    clock: Callable[[], datetime]
    life: Lifecycle
    _writing: Callable[[], AbstractContextManager[Session]]

    def acknowledge(self, alert_id: int, actor: str, comment: str) -> None:
        """Someone is on it: stops reminders and the timed escalation; others are told who."""
        if not comment.strip():
            raise ValueError("an acknowledgement needs a comment saying who is on it and how")
        with self._writing() as session:
            alert = self._get(session, alert_id)
            if alert.state not in LIVE:
                raise AlertStateError(f"alert {alert_id} is {alert.state.value}, not firing")
            now = self.clock()
            alert.state = AlertState.ACKNOWLEDGED
            alert.acknowledged_at = now
            alert.acknowledged_by = actor
            alert.ack_comment = comment.strip()
            self.life.record(session, alert, "acknowledged", alert.ack_comment, now, actor)
            set_notice(alert, "acknowledged", now)
            self.life.track(session, alert)

    def resolve_manually(self, alert_id: int, actor: str, comment: str) -> None:
        """Close a ticket by hand (a device taken away for repair).

        A fault the device still reports stays resolved, waiting for the device to
        confirm: its further reports are absorbed, not reopened, so nobody gets a new
        e-mail seconds later and the ticket keeps its "since"; the device's all-clear
        confirms it.  Unseen for a reopen window and then reported again, it is news.
        """
        if not comment.strip():
            raise ValueError("a manual resolution needs a comment")
        with self._writing() as session:
            alert = self._get(session, alert_id)
            if alert.state is AlertState.RESOLVED:
                raise AlertStateError(f"alert {alert_id} is already resolved")
            # Still reported (not clearing): the API and page say "waiting for the device",
            # and those told of it hear it was closed by hand, not that it recovered.
            present = alert.clear_since is None
            self.life.resolve(session, alert, self.clock(), actor, comment.strip(),
                          "closed" if present else "resolved")
            alert.awaiting_device = present
            self.life.track(session, alert)

    @staticmethod
    def _get(session: Session, alert_id: int) -> Alert:
        alert = session.get(Alert, alert_id)
        if alert is None:
            raise AlertNotFound(f"no alert {alert_id}")
        return alert

    def add_silence(
        self,
        matchers: Mapping[str, Any],
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str = "",
    ) -> int:
        with session_scope(self.sessions) as session:
            return mute.add_silence(session, matchers, starts_at, ends_at, created_by, comment).id

    def delete_silence(self, silence_id: int) -> None:
        with session_scope(self.sessions) as session:
            silence = session.get(Silence, silence_id)
            if silence is None:
                raise AlertNotFound(f"no silence {silence_id}")
            session.delete(silence)

    def add_maintenance_window(
        self,
        name: str,
        weekdays: Sequence[int],
        start_time: str,
        end_time: str,
        matchers: Mapping[str, Any] | None = None,
        timezone: str | None = None,
    ) -> int:
        """A recurring mute; no matchers means every alert (the whole fleet's nights)."""
        with session_scope(self.sessions) as session:
            return mute.add_window(session, name, weekdays, start_time, end_time,
                                   matchers or {}, timezone or self.config.timezone).id
