"""Shared request types and helpers of the routers: bounded ids, sane instants, 409s."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import HTTPException, Path, Query
from pydantic import AfterValidator, AwareDatetime, BaseModel, Field
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agent.contract import DEVICE_ID_RE
from fleet.api.scope import Scope
from fleet.db.models import Role
from fleet.reports import local_day_bounds

RowT = TypeVar("RowT")

__all__ = [
    "MAX_ID",
    "DateFrom",
    "DateTo",
    "DeviceIdPath",
    "IdPath",
    "Instant",
    "RefId",
    "RefQuery",
    "Text",
    "apply_patch",
    "day_range",
    "delete_row",
    "flush_or_409",
    "invalid",
    "patch_row",
    "require_writer",
    "zone_name",
]

MAX_ID = 2**31 - 1
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _sane_instant(value: datetime) -> datetime:
    # Far-off years overflow when shifted to UTC and mean a typo anyway.
    if not _EARLIEST <= value <= _LATEST:
        raise ValueError("time must be between 2000 and 2200")
    return value.astimezone(UTC)


Instant = Annotated[AwareDatetime, AfterValidator(_sane_instant)]
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
DeviceIdPath = Annotated[str, Path(pattern=DEVICE_ID_RE.pattern)]
RefId = Annotated[int, Field(ge=1, le=MAX_ID)]
RefQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
DateFrom = Annotated[date | None, Query(alias="from", description="local date, default today")]
DateTo = Annotated[
    date | None, Query(alias="to", description="local date, inclusive; default: from")
]


def Text(max_length: int, min_length: int = 0, default: Any = ...) -> Any:
    """A bounded string field (reads like a type in the models)."""
    return Field(default, min_length=min_length, max_length=max_length)


def zone_name(value: str | None) -> str | None:
    """A field validator: an IANA zone the server knows ("Asia" is a directory, not a zone)."""
    if value is not None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown time zone {value!r}") from None
    return value


def day_range(
    tz: str, today: datetime, start: date | None, end: date | None, max_days: int = 400
) -> tuple[date, date, datetime, datetime]:
    """Local dates ``start``..``end`` (inclusive) and the UTC instants bounding them."""
    zone = ZoneInfo(tz)
    first = start or today.astimezone(zone).date()
    last = end or first
    for name, day in (("from", first), ("to", last)):
        # Also keeps the day after ``last`` inside what a date can hold.
        if not _EARLIEST.date() <= day < _LATEST.date():
            raise invalid("日期须在 2000–2199 年之间 / dates must be in 2000-2199", "query", name)
    if last < first:
        raise invalid("结束日期早于开始日期 / 'to' is before 'from'", "query", "to")
    if (last - first).days > max_days:
        raise invalid(f"日期范围过长 / range longer than {max_days} days", "query", "to")
    return first, last, *local_day_bounds(first, last, tz)


def invalid(message: str, *loc: str | int) -> HTTPException:
    """A 422 shaped like FastAPI's own validation errors, as the schema documents."""
    return HTTPException(422, [{"loc": list(loc), "msg": message, "type": "value_error"}])


def flush_or_409(session: Session, what: str) -> None:
    """Flush pending changes; a uniqueness or reference conflict becomes 409."""
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise HTTPException(
            409,
            f"{what}: 与已有数据冲突（重名或仍被引用）/ conflicts with existing data "
            "(duplicate name or still referenced)",
        ) from None


def apply_patch(obj: object, changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        setattr(obj, key, value)


def patch_row(
    session: Session, scope: Scope, model: type[RowT], row_id: object, what: str, body: BaseModel
) -> RowT:
    """Apply the fields a PATCH body sets to a row in scope; conflicts become 409."""
    row = scope.get(session, model, row_id, what)
    apply_patch(row, body.model_dump(exclude_unset=True, exclude_none=True))
    flush_or_409(session, what)
    return row


def delete_row(session: Session, scope: Scope, model: type[Any], row_id: object, what: str) -> None:
    """Delete a row in scope; a row still referenced is a 409, not a 500."""
    session.delete(scope.get(session, model, row_id, what))
    flush_or_409(session, what)


def require_writer(scope: Scope) -> None:
    """Inventory is written by admins and county technicians; school technicians read."""
    if scope.principal.role is Role.SCHOOL_TECH:
        raise HTTPException(403, "学校技术员只读 / school technicians have read-only access")
