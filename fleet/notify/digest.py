"""Many notices owed to one target, merged into one message when its limit is reached.

The notices are listed most severe first, then by the lesson at stake (soonest first),
each by its own bilingual subject, with a link to the alert list.  The digest is an
outbox row of its own (kind ``digest``); each notice it carries is marked ``merged``
with ``digest_id`` pointing at it and shares its fate.  A digest that has to wait and
is merged again hands its notices on to the new one, so a notice is in one digest only.
The text is kept within what the channel accepts: notices that do not fit stay owed
and go in the next message, never cut off.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fleet.db.models import Notification, NotificationStatus
from fleet.notify import dingtalk, wecom

__all__ = ["DIGEST", "SEVERITY_RANK", "carried", "merge"]

DIGEST = "digest"
#: Most urgent first: the order of a digest's notices (then by lesson time).
SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
_KIND_RANK = {"escalation": 0, "firing": 1, "reminder": 2, "resolved": 3}
# What a digest's text may take on each channel: the channel's own cap less its frame
# (markdown title, mentions, JSON escaping of DingTalk's doubled line breaks).
_TEXT_BYTES = {
    "dingtalk": dingtalk.MAX_BODY_BYTES // 2,
    "wecom": wecom.MAX_CONTENT_BYTES - 512,
    "email": 200_000,
    "webhook": 200_000,
}


def _order(row: Notification) -> tuple[int, int, str, datetime, int]:
    payload = row.payload or {}
    return (
        SEVERITY_RANK.get(str(payload.get("severity", "")), 9),
        _KIND_RANK.get(row.kind, 9),
        str(payload.get("lesson_at") or "9999"),  # ISO instants in UTC sort as text
        row.created_at,
        row.id,
    )


def carried(session: Session, digest_id: int) -> list[Notification]:
    """The rows merged into a digest: its notices, and digests merged into it with theirs."""
    out: list[Notification] = []
    queue = [digest_id]
    while queue:
        rows = session.scalars(
            select(Notification).where(
                Notification.digest_id == queue.pop(),
                Notification.status == NotificationStatus.MERGED,
            )
        ).all()
        out += rows
        queue += [r.id for r in rows if r.kind == DIGEST]
    return out


def _leaves(session: Session, rows: list[Notification]) -> list[Notification]:
    """The notices themselves: a waiting digest stands for the notices it carries, however
    deep (a digest that waited was merged into the next)."""
    out: list[Notification] = []
    for row in rows:
        if row.kind == DIGEST:
            out += [n for n in carried(session, row.id) if n.kind != DIGEST]
        else:
            out.append(row)
    return out


def _headline(notices: list[Notification]) -> tuple[str, str]:
    rooms = {str((n.payload or {}).get("classroom_id") or f"n{n.id}") for n in notices
             if n.kind != "resolved"}
    fixed = {str((n.payload or {}).get("classroom_id") or f"n{n.id}") for n in notices
             if n.kind == "resolved"}
    zh, en = [], []
    if rooms:
        zh.append(f"{len(rooms)} 间教室告警")
        en.append(f"{_classrooms(len(rooms))} alerting")
    if fixed:
        zh.append(f"{len(fixed)} 间教室恢复")
        en.append(f"{_classrooms(len(fixed))} recovered")
    return "，".join(zh), ", ".join(en)


def _classrooms(n: int) -> str:
    return f"{n} classroom" if n == 1 else f"{n} classrooms"


def _text(notices: list[Notification], link: str) -> tuple[str, str]:
    zh, en = _headline(notices)
    lines = [f"{zh} / {en}：", *(f"{i}. {n.subject}" for i, n in enumerate(notices, 1))]
    if link:
        lines += ["", f"全部告警 / all alerts: {link}"]
    return f"【汇总】{zh} / [Digest] {en}", "\n".join(lines)


def merge(session: Session, rows: list[Notification], now: datetime) -> Notification:
    """One digest row, due now, carrying as many of the notices of ``rows`` (all owed to
    one target) as fit the channel, most urgent first."""
    first = rows[0]
    notices = sorted(_leaves(session, rows), key=_order)
    budget = _TEXT_BYTES.get(first.channel, 200_000)
    link = next((str(u) for n in notices if (u := (n.payload or {}).get("alerts_url"))), "")
    taken = notices[:1]
    for notice in notices[1:]:
        subject, body = _text([*taken, notice], link)
        if len((subject + body).encode("utf-8")) > budget:
            break
        taken.append(notice)
    subject, body = _text(taken, link)
    payload: dict[str, Any] = {
        "notices": [n.id for n in taken],
        "alert_ids": sorted({a for n in taken for a in (n.payload or {}).get("alert_ids", [])}),
    }
    if link:
        payload["alerts_url"] = link
    if "secret" in (first.payload or {}):
        payload["secret"] = first.payload["secret"]
    mobiles = {m for n in taken for m in (n.payload or {}).get("at_mobiles", [])}
    if mobiles:
        payload["at_mobiles"] = sorted(mobiles)
    digest = Notification(
        alert_id=taken[0].alert_id,
        channel=first.channel,
        target=first.target,
        kind=DIGEST,
        subject=subject,
        body=body,
        payload=payload,
        status=NotificationStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(digest)
    session.flush()
    carried = {n.id for n in taken}
    for notice in taken:
        notice.status = NotificationStatus.MERGED
        notice.digest_id = digest.id
    # Digests merged again: their notices now travel in the new one, or wait, owed again.
    for old in (r for r in rows if r.kind == DIGEST):
        session.execute(
            update(Notification)
            .where(Notification.digest_id == old.id, Notification.id.not_in(carried))
            .values(status=NotificationStatus.PENDING, digest_id=None, next_attempt_at=now)
            .execution_options(synchronize_session=False)
        )
        old.status = NotificationStatus.MERGED
        old.digest_id = digest.id
    return digest
