"""Group: owed notices of one classroom and kind become one message once the oldest has
waited ``group_wait`` (Alertmanager's group_wait); muted ones are held back here, with
their reason recorded.  An ending (resolved, closed) is never hidden from those told the
fault began; one nobody heard of is held by the windows and silences, not by inhibition.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

from sqlalchemy import select

from fleet.alerts.mute import Inhibition, muted_by
from fleet.alerts.notices import ENDINGS
from fleet.alerts.stages.base import Group, Tick
from fleet.db.models import Alert


def stage(tick: Tick) -> None:
    owed = tick.session.scalars(
        select(Alert).where(Alert.notice_kind.is_not(None)).order_by(Alert.id)
    ).all()
    groups: dict[tuple[int | None, str], list[Alert]] = defaultdict(list)
    for alert in owed:
        groups[(alert.classroom_id, str(alert.notice_kind))].append(alert)
    for (classroom_id, kind), alerts in groups.items():
        # Shorter while any of the classroom's devices is in a lesson window.
        wait = timedelta(seconds=tick.config.group_wait(any(map(tick.in_lesson, alerts))))
        if min(a.notice_since or tick.now for a in alerts) + wait > tick.now:
            continue
        going = []
        for alert in alerts:
            alert.notice_kind = alert.notice_since = None
            reason = _hold_reason(tick, alert, kind)
            if reason:
                tick.record(alert, "suppressed", f"{kind}: {reason}")
            else:
                going.append(alert)
        if going:
            tick.groups.append(Group(classroom_id, kind, going))


def _hold_reason(tick: Tick, alert: Alert, kind: str) -> str | None:
    if kind not in ENDINGS:
        return alert.suppressed_by
    if alert.last_notified_at is not None:
        return None  # they were told it broke: always tell them it is fixed
    windows = [m for m in tick.muters if not isinstance(m, Inhibition)]
    return muted_by(windows, alert.labels, tick.now)
