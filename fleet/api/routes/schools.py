"""Schools: county technicians manage their county's, school technicians read theirs."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, field_validator
from sqlalchemy import select

from fleet.api.auth import CurrentScope
from fleet.api.deps import API_PREFIX, DB
from fleet.api.routes.common import (
    IdPath,
    RefId,
    RefQuery,
    Text,
    delete_row,
    flush_or_409,
    patch_row,
    require_writer,
    zone_name,
)
from fleet.api.scope import Scope, not_found
from fleet.db.models import DEFAULT_TZ, County, School, SchoolKind

__all__ = ["router"]

router = APIRouter(prefix=f"{API_PREFIX}/schools", tags=["inventory"])


class SchoolIn(BaseModel):
    county_id: RefId
    name: str = Text(128, 1)
    kind: SchoolKind
    address: str = Text(256, default="")
    timezone: str = Text(64, 1, DEFAULT_TZ)
    _tz = field_validator("timezone")(zone_name)


class SchoolPatch(BaseModel):
    name: str | None = Text(128, 1, None)
    kind: SchoolKind | None = None
    address: str | None = Text(256, default=None)
    timezone: str | None = Text(64, 1, None)
    _tz = field_validator("timezone")(zone_name)


class SchoolOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    county_id: int
    name: str
    kind: SchoolKind
    address: str
    timezone: str


def _check_county(session: DB, scope: Scope, county_id: int) -> None:
    if scope.is_admin:
        if session.get(County, county_id) is None:
            raise not_found("county")
    elif scope.principal.county_id != county_id:
        raise not_found("county")


@router.get("")
def list_schools(session: DB, scope: CurrentScope, county_id: RefQuery = None) -> list[SchoolOut]:
    query = select(School).where(scope.school()).order_by(School.id)
    if county_id is not None:
        query = query.where(School.county_id == county_id)
    return [SchoolOut.model_validate(s) for s in session.scalars(query)]


@router.get("/{school_id}")
def get_school(school_id: IdPath, session: DB, scope: CurrentScope) -> SchoolOut:
    return SchoolOut.model_validate(scope.get(session, School, school_id, "school"))


@router.post("", status_code=201)
def create_school(body: SchoolIn, session: DB, scope: CurrentScope) -> SchoolOut:
    require_writer(scope)
    _check_county(session, scope, body.county_id)
    school = School(**body.model_dump())
    session.add(school)
    flush_or_409(session, "school")
    return SchoolOut.model_validate(school)


@router.patch("/{school_id}")
def update_school(
    school_id: IdPath, body: SchoolPatch, session: DB, scope: CurrentScope
) -> SchoolOut:
    require_writer(scope)
    school = patch_row(session, scope, School, school_id, "school", body)
    return SchoolOut.model_validate(school)


@router.delete("/{school_id}", status_code=204)
def delete_school(school_id: IdPath, session: DB, scope: CurrentScope) -> None:
    require_writer(scope)
    delete_row(session, scope, School, school_id, "school")
