"""People: technicians and county 电教 contacts, with their roles and schools.

Admins manage everyone; a county technician manages the technicians of their county;
anyone may change their own contact details and password.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, selectinload

from fleet.api.auth import CurrentScope, hash_password
from fleet.api.deps import API_PREFIX, DB
from fleet.api.routes.common import IdPath, RefId, Text, flush_or_409, invalid
from fleet.api.scope import Scope, not_found
from fleet.db.models import ApiToken, County, Person, PersonSchool, Role, School

__all__ = ["router"]

router = APIRouter(prefix=f"{API_PREFIX}/people", tags=["people"])


class PersonIn(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    name: str = Text(64, 1)
    role: Role
    county_id: RefId | None = None
    email: str = Text(256, default="")
    phone: str = Text(32, default="")
    password: str = Text(256, 8)
    active: bool = True
    school_ids: list[RefId] = Field(default_factory=list, max_length=100)


class PersonPatch(BaseModel):
    name: str | None = Text(64, 1, None)
    role: Role | None = None
    county_id: RefId | None = None
    email: str | None = Text(256, default=None)
    phone: str | None = Text(32, default=None)
    password: str | None = Text(256, 8, None)
    active: bool | None = None
    school_ids: list[RefId] | None = Field(None, max_length=100)


class PersonOut(BaseModel):
    id: int
    username: str
    name: str
    role: Role
    county_id: int | None
    email: str
    phone: str
    active: bool
    school_ids: list[int]


def _set_schools(person: Person, school_ids: list[int]) -> None:
    # Keep existing links: replacing a row with an identical key confuses the unit of work.
    wanted = set(school_ids)
    kept = [link for link in person.schools if link.school_id in wanted]
    have = {link.school_id for link in kept}
    person.schools = kept + [PersonSchool(school_id=s) for s in sorted(wanted - have)]


def _out(person: Person) -> PersonOut:
    return PersonOut(
        id=person.id,
        username=person.username,
        name=person.name,
        role=person.role,
        county_id=person.county_id,
        email=person.email,
        phone=person.phone,
        active=person.active,
        school_ids=sorted(s.school_id for s in person.schools),
    )


def _may_manage(scope: Scope, role: Role, county_id: int | None) -> None:
    """Admins manage anyone; county technicians only non-admins of their own county."""
    p = scope.principal
    if p.role is Role.ADMIN:
        return
    if p.role is Role.COUNTY_TECH and role is not Role.ADMIN and county_id == p.county_id:
        return
    raise HTTPException(403, "无权管理此人员 / not allowed to manage this person")


def _validate(
    session: Session, scope: Scope, role: Role, county_id: int | None, school_ids: list[int]
) -> None:
    if role is Role.COUNTY_TECH and county_id is None:
        raise invalid("县技术员需指定县 / a county technician needs county_id", "body", "county_id")
    if county_id is not None and session.get(County, county_id) is None:
        raise not_found("county")
    for school_id in school_ids:
        school = scope.get(session, School, school_id, f"school {school_id}")
        if county_id is not None and school.county_id != county_id:
            raise invalid(
                f"学校 {school_id} 不在该县 / school not in the county", "body", "school_ids"
            )


@router.get("")
def list_people(session: DB, scope: CurrentScope) -> list[PersonOut]:
    query = (
        select(Person)
        .where(scope.person())
        .order_by(Person.id)
        .options(selectinload(Person.schools))
    )
    return [_out(p) for p in session.scalars(query)]


@router.get("/{person_id}")
def get_person(person_id: IdPath, session: DB, scope: CurrentScope) -> PersonOut:
    return _out(scope.get(session, Person, person_id, "person"))


@router.post("", status_code=201)
def create_person(body: PersonIn, session: DB, scope: CurrentScope) -> PersonOut:
    _may_manage(scope, body.role, body.county_id)
    _validate(session, scope, body.role, body.county_id, body.school_ids)
    if session.scalars(select(Person.id).where(Person.username == body.username)).first():
        raise HTTPException(409, f"用户名 {body.username} 已存在 / username taken")
    data = body.model_dump(exclude={"password", "school_ids"})
    person = Person(**data, password_hash=hash_password(body.password))
    _set_schools(person, body.school_ids)
    session.add(person)
    flush_or_409(session, "person")
    return _out(person)


@router.patch("/{person_id}")
def update_person(
    person_id: IdPath, body: PersonPatch, session: DB, scope: CurrentScope
) -> PersonOut:
    person = scope.get(session, Person, person_id, "person")
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    personal = {"name", "email", "phone", "password"}
    if not (person.id == scope.principal.id and set(changes) <= personal):
        _may_manage(scope, person.role, person.county_id)
        role = body.role or person.role
        county_id = body.county_id if body.county_id is not None else person.county_id
        _may_manage(scope, role, county_id)
        schools = body.school_ids
        if schools is None:
            schools = [s.school_id for s in person.schools]
        _validate(session, scope, role, county_id, schools)
        person.role, person.county_id = role, county_id
        _set_schools(person, schools)
        if body.active is not None:
            person.active = body.active
    for key in personal & set(changes):
        if key == "password":
            person.password_hash = hash_password(changes[key])
        else:
            setattr(person, key, changes[key])
    flush_or_409(session, "person")
    return _out(person)


@router.delete("/{person_id}", status_code=204)
def delete_person(person_id: IdPath, session: DB, scope: CurrentScope) -> None:
    person = scope.get(session, Person, person_id, "person")
    _may_manage(scope, person.role, person.county_id)
    if person.id == scope.principal.id:
        raise HTTPException(409, "不能删除自己 / cannot delete yourself")
    session.execute(delete(ApiToken).where(ApiToken.person_id == person.id))
    session.delete(person)
    flush_or_409(session, "person")
