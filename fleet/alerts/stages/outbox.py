"""Outbox: one row per recipient, queued in the same transaction as the tickets.

The history says "queued to N"; each delivery's fate is written there when the
dispatcher knows it.  An alert is marked notified even when nobody is configured:
reminders then retry, and the page shows why.
"""

from __future__ import annotations

from fleet.alerts.stages.base import Outgoing, Tick
from fleet.notify.base import redact


def stage(tick: Tick) -> None:
    for out in tick.outgoing:
        _queue(tick, out)


def _queue(tick: Tick, out: Outgoing) -> None:
    kind, alerts = out.group.kind, out.group.alerts
    for r in out.to:
        tick.enqueue(
            tick.session,
            alert_id=alerts[0].id,
            channel=r.channel,
            target=r.target,
            kind=kind,
            subject=out.message.subject,
            body=out.message.body,
            payload={**r.payload, **out.about, "fallback": [f.route() for f in r.fallback]},
            now=tick.now,
        )
        tick.sent[(kind, r.channel)] += 1
    for alert in alerts:
        alert.last_notified_at = tick.now
        if out.skipped:
            names = ", ".join(f"{r.channel} {redact(r.target)}" for r in out.skipped)
            tick.record(alert, "recovery_skipped",
                        f"{kind}: 未收到告警者不发恢复通知 / not sent to those the alert never "
                        f"reached: {names}")
        if out.to:
            names = ", ".join(f"{r.channel} {redact(r.target)}" for r in out.to)
            tick.record(alert, "queued", f"{kind} → 已排队 queued to {len(out.to)}: {names}")
        elif not out.skipped:
            tick.record(alert, "unrouted", f"{kind}: no technician, robot or webhook configured")
