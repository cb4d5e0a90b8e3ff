"""Classrooms (同步课堂教室) of the schools in scope."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
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
)
from fleet.db.models import Classroom, School

__all__ = ["router"]

router = APIRouter(prefix=f"{API_PREFIX}/classrooms", tags=["inventory"])


class ClassroomIn(BaseModel):
    school_id: RefId
    name: str = Text(128, 1)


class ClassroomPatch(BaseModel):
    name: str | None = Text(128, 1, None)


class ClassroomOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    school_id: int
    name: str


@router.get("")
def list_classrooms(
    session: DB, scope: CurrentScope, school_id: RefQuery = None
) -> list[ClassroomOut]:
    query = select(Classroom).where(scope.classroom()).order_by(Classroom.id)
    if school_id is not None:
        query = query.where(Classroom.school_id == school_id)
    return [ClassroomOut.model_validate(c) for c in session.scalars(query)]


@router.get("/{classroom_id}")
def get_classroom(classroom_id: IdPath, session: DB, scope: CurrentScope) -> ClassroomOut:
    return ClassroomOut.model_validate(scope.get(session, Classroom, classroom_id, "classroom"))


@router.post("", status_code=201)
def create_classroom(body: ClassroomIn, session: DB, scope: CurrentScope) -> ClassroomOut:
    require_writer(scope)
    scope.get(session, School, body.school_id, "school")
    room = Classroom(school_id=body.school_id, name=body.name)
    session.add(room)
    flush_or_409(session, "classroom")
    return ClassroomOut.model_validate(room)


@router.patch("/{classroom_id}")
def update_classroom(
    classroom_id: IdPath, body: ClassroomPatch, session: DB, scope: CurrentScope
) -> ClassroomOut:
    require_writer(scope)
    room = patch_row(session, scope, Classroom, classroom_id, "classroom", body)
    return ClassroomOut.model_validate(room)


@router.delete("/{classroom_id}", status_code=204)
def delete_classroom(classroom_id: IdPath, session: DB, scope: CurrentScope) -> None:
    require_writer(scope)
    delete_row(session, scope, Classroom, classroom_id, "classroom")
