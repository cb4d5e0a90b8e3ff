"""结对学校: a town school and the rural schools it teaches with (捆绑考核 unit)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from fleet.api.auth import CurrentScope
from fleet.api.deps import API_PREFIX, DB
from fleet.api.routes.common import (
    IdPath,
    RefId,
    Text,
    delete_row,
    flush_or_409,
    invalid,
    require_writer,
)
from fleet.api.scope import Scope
from fleet.db.models import Pair, PairMember, School, SchoolKind

__all__ = ["router"]

router = APIRouter(prefix=f"{API_PREFIX}/pairs", tags=["inventory"])


class PairIn(BaseModel):
    name: str = Text(128, 1)
    town_school_id: RefId
    member_school_ids: list[RefId] = Field(min_length=1, max_length=50)


class PairPatch(BaseModel):
    name: str | None = Text(128, 1, None)
    town_school_id: RefId | None = None
    member_school_ids: list[RefId] | None = Field(None, min_length=1, max_length=50)


class PairOut(BaseModel):
    id: int
    name: str
    town_school_id: int
    member_school_ids: list[int]


def _out(pair: Pair) -> PairOut:
    return PairOut(
        id=pair.id,
        name=pair.name,
        town_school_id=pair.town_school_id,
        member_school_ids=sorted(m.school_id for m in pair.members),
    )


def _school(session: Session, scope: Scope, school_id: int, kind: SchoolKind) -> School:
    school = scope.get(session, School, school_id, f"school {school_id}")
    if school.kind is not kind:
        raise invalid(
            f"学校 {school.name} 类型应为 {kind.value} / school {school_id} must be {kind.value}",
            "body",
            "town_school_id" if kind is SchoolKind.TOWN else "member_school_ids",
        )
    return school


def _set_schools(session: Session, scope: Scope, pair: Pair, town: int, members: list[int]) -> None:
    _school(session, scope, town, SchoolKind.TOWN)
    for member in set(members):
        _school(session, scope, member, SchoolKind.RURAL)
    pair.town_school_id = town
    pair.members = [PairMember(school_id=m) for m in sorted(set(members))]


@router.get("")
def list_pairs(session: DB, scope: CurrentScope) -> list[PairOut]:
    query = select(Pair).where(scope.pair()).order_by(Pair.id).options(selectinload(Pair.members))
    return [_out(p) for p in session.scalars(query)]


@router.get("/{pair_id}")
def get_pair(pair_id: IdPath, session: DB, scope: CurrentScope) -> PairOut:
    return _out(scope.get(session, Pair, pair_id, "pair"))


@router.post("", status_code=201)
def create_pair(body: PairIn, session: DB, scope: CurrentScope) -> PairOut:
    require_writer(scope)
    pair = Pair(name=body.name)
    _set_schools(session, scope, pair, body.town_school_id, body.member_school_ids)
    session.add(pair)
    flush_or_409(session, "pair")
    return _out(pair)


@router.patch("/{pair_id}")
def update_pair(pair_id: IdPath, body: PairPatch, session: DB, scope: CurrentScope) -> PairOut:
    require_writer(scope)
    pair = scope.get(session, Pair, pair_id, "pair")
    if body.name is not None:
        pair.name = body.name
    if body.town_school_id is not None or body.member_school_ids is not None:
        members = body.member_school_ids or [m.school_id for m in pair.members]
        _set_schools(session, scope, pair, body.town_school_id or pair.town_school_id, members)
    flush_or_409(session, "pair")
    return _out(pair)


@router.delete("/{pair_id}", status_code=204)
def delete_pair(pair_id: IdPath, session: DB, scope: CurrentScope) -> None:
    require_writer(scope)
    delete_row(session, scope, Pair, pair_id, "pair")
