"""Counties (县/区): read by everyone in scope, written by admins."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from fleet.api.auth import CurrentScope
from fleet.api.deps import API_PREFIX, DB
from fleet.api.routes.common import IdPath, Text, delete_row, flush_or_409, patch_row
from fleet.db.models import County

__all__ = ["router"]

router = APIRouter(prefix=f"{API_PREFIX}/counties", tags=["inventory"])


class CountyIn(BaseModel):
    name: str = Text(64, 1)
    city: str = Text(64, default="")
    dingtalk_webhook: str | None = Text(512, default=None)
    dingtalk_secret: str | None = Text(128, default=None)
    wecom_webhook: str | None = Text(512, default=None)


class CountyPatch(BaseModel):
    name: str | None = Text(64, 1, None)
    city: str | None = Text(64, default=None)
    dingtalk_webhook: str | None = Text(512, default=None)
    dingtalk_secret: str | None = Text(128, default=None)
    wecom_webhook: str | None = Text(512, default=None)


class CountyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    city: str


def _admin_only(scope: CurrentScope) -> None:
    if not scope.is_admin:
        raise HTTPException(403, "仅管理员 / admins only")


@router.get("")
def list_counties(session: DB, scope: CurrentScope) -> list[CountyOut]:
    rows = session.scalars(select(County).where(scope.county()).order_by(County.id))
    return [CountyOut.model_validate(c) for c in rows]


@router.get("/{county_id}")
def get_county(county_id: IdPath, session: DB, scope: CurrentScope) -> CountyOut:
    return CountyOut.model_validate(scope.get(session, County, county_id, "county"))


@router.post("", status_code=201)
def create_county(body: CountyIn, session: DB, scope: CurrentScope) -> CountyOut:
    _admin_only(scope)
    county = County(**body.model_dump())
    session.add(county)
    flush_or_409(session, "county")
    return CountyOut.model_validate(county)


@router.patch("/{county_id}")
def update_county(
    county_id: IdPath, body: CountyPatch, session: DB, scope: CurrentScope
) -> CountyOut:
    _admin_only(scope)
    county = patch_row(session, scope, County, county_id, "county", body)
    return CountyOut.model_validate(county)


@router.delete("/{county_id}", status_code=204)
def delete_county(county_id: IdPath, session: DB, scope: CurrentScope) -> None:
    _admin_only(scope)
    delete_row(session, scope, County, county_id, "county")
