"""Who hears about a classroom's alerts, by escalation level, and by which other way.

Level 0: the school's appointed technicians (e-mail) and the school's group robots.
Level 1 (escalated): also the county 电教 contacts and the county's group robots.
Config-level generic webhooks hear everything.  Duplicates collapse to one delivery.

Each route names its fallback: the other channels of the same people, used when the
route stays refused.  A group robot's people are the technicians (or 电教 contacts) it
serves, reached by e-mail; a person's e-mail falls back to their group's robots, which
@-mention them by phone on DingTalk.  A generic webhook has no people behind it.

An alert with no place (a device the inventory does not know) goes to the admins: only
they can enrol it, and no school or county can be derived from a stranger's id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet.db.models import County, Person, Role, School
from fleet.inventory import county_contacts, technicians_for_school

__all__ = ["Recipient", "recipients"]


@dataclass(frozen=True)
class Recipient:
    channel: str  # email / dingtalk / wecom / webhook
    target: str  # address or webhook URL
    payload: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    fallback: tuple[Recipient, ...] = field(default=(), compare=False, hash=False)

    def route(self) -> dict[str, Any]:
        """The route as the outbox keeps it in a notification's payload."""
        return {"channel": self.channel, "target": self.target, "payload": dict(self.payload)}


def _robots(owner: School | County, people: Sequence[Person] = ()) -> list[Recipient]:
    out = []
    if owner.dingtalk_webhook:
        secret = {"secret": owner.dingtalk_secret} if owner.dingtalk_secret else {}
        mobiles = [p.phone for p in people if p.phone]
        mention = {"at_mobiles": mobiles} if mobiles else {}
        out.append(Recipient("dingtalk", owner.dingtalk_webhook, secret | mention))
    if owner.wecom_webhook:
        out.append(Recipient("wecom", owner.wecom_webhook))
    return out


def _emails(people: Sequence[Person]) -> list[Recipient]:
    return [Recipient("email", p.email) for p in people if p.email]


def _group(owner: School | County, people: Sequence[Person]) -> list[Recipient]:
    """One group's routes: each person's e-mail and the group's robots, each the other's
    fallback."""
    robots = _robots(owner)
    found = [
        Recipient("email", p.email, fallback=tuple(_robots(owner, [p])))
        for p in people
        if p.email
    ]
    found += [Recipient(r.channel, r.target, r.payload, tuple(_emails(people))) for r in robots]
    return found


def recipients(
    session: Session, school_id: int | None, level: int, webhooks: Sequence[str] = ()
) -> list[Recipient]:
    found: list[Recipient] = []
    school = session.get(School, school_id) if school_id is not None else None
    if school is not None:
        found += _group(school, technicians_for_school(session, school.id))
        if level >= 1:
            found += _group(school.county, county_contacts(session, school.county_id))
    elif school_id is None:
        found += _emails(session.scalars(
            select(Person).where(Person.role == Role.ADMIN, Person.active.is_(True))
            .order_by(Person.id)
        ).all())
    found += [Recipient("webhook", url) for url in webhooks]
    return list(dict.fromkeys(found))
