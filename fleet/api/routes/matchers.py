"""Label matchers of silences and maintenance windows, and who may write which.

A non-admin's mute must be pinned to places they look after, and only those: otherwise a
school technician could quiet a whole county, or the whole fleet, with one rule matcher.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import HTTPException
from pydantic import Field
from sqlalchemy import Select
from sqlalchemy.orm import Session

from fleet.api.scope import Scope
from fleet.db.models import Classroom, Device, Role, School

__all__ = [
    "MatcherKey",
    "MatcherValue",
    "matchers_in_scope",
    "matchers_touch_scope",
    "refuse_matchers",
]

MatcherKey = Literal["device_id", "classroom_id", "school_id", "county_id", "rule", "severity"]
MatcherValue = Annotated[str, Field(min_length=1, max_length=128)]


def _number(text: str) -> int:
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else -1


def _place_in_scope(session: Session, scope: Scope, key: str, text: str) -> bool | None:
    """Whether a place matcher names something in scope; None for other labels."""
    number = _number(text)
    if key == "county_id":
        p = scope.principal
        return p.role is Role.COUNTY_TECH and number == p.county_id
    if key == "device_id":
        query: Select[Any] = scope.device_ids().where(Device.id == text)
    elif key == "classroom_id":
        query = scope.classroom_ids().where(Classroom.id == number)
    elif key == "school_id":
        query = scope.school_ids().where(School.id == number)
    else:
        return None
    return session.execute(query).first() is not None


def matchers_in_scope(session: Session, scope: Scope, matchers: Mapping[str, Any]) -> bool:
    """Admins may mute anything; others only what names a place of theirs, and only those."""
    if scope.is_admin:
        return True
    verdicts = [_place_in_scope(session, scope, k, str(v)) for k, v in matchers.items()]
    places = [v for v in verdicts if v is not None]
    return bool(places) and all(places)


def matchers_touch_scope(session: Session, scope: Scope, matchers: Mapping[str, Any]) -> bool:
    """Whether a mute can affect a place the person looks after, so they should see it:
    a fleet-wide window, their county's, or one naming a place of theirs."""
    if scope.is_admin:
        return True
    county = matchers.get("county_id")
    if county is not None:
        in_county = scope.school_ids().where(School.county_id == _number(str(county)))
        if session.execute(in_county).first() is None:
            return False
    places = {k: v for k, v in matchers.items() if k != "county_id"}
    return all(_place_in_scope(session, scope, k, str(v)) is not False
               for k, v in places.items())


def refuse_matchers(what_zh: str, what_en: str) -> HTTPException:
    return HTTPException(
        403,
        f"{what_zh}须限定在你负责的设备/教室/学校 / a {what_en} must name a device, classroom "
        "or school you look after",
    )
