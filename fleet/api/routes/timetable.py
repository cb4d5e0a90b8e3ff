"""Timetable import (CSV / Excel, all or nothing) and iCalendar feeds to subscribe to."""

from __future__ import annotations

import io
import multiprocessing
import os
import shutil
import tempfile
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import date
from multiprocessing.connection import Connection
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, File, Form, HTTPException, Path, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request

from fleet.api.auth import CalendarScope, CurrentScope
from fleet.api.deps import API_PREFIX, DB, Services, ServicesDep
from fleet.api.import_jobs import ImportJob, JobState, QueueFull
from fleet.api.routes.common import IdPath, invalid, require_writer
from fleet.api.scope import Principal, Scope
from fleet.db.base import make_engine, session_scope
from fleet.db.models import Classroom, Person
from fleet.timetable import (
    ImportResult,
    Semester,
    TimetableError,
    classroom_calendar,
    import_timetable,
    person_calendar,
)
from fleet.timetable import messages as msg

__all__ = ["router", "upload_limit"]

Middleware = Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]

router = APIRouter(prefix=API_PREFIX, tags=["timetable"])
_ICS = "text/calendar; charset=utf-8"


class ChangeOut(BaseModel):
    """One line of the preview: added / changed / cancelled, or conflict (a lesson changed
    by hand that the file would change; the hand's change is kept)."""

    change: str
    day: date
    classroom_id: int
    classroom: str
    starts: str
    ends: str
    subject: str
    detail: str = ""
    lesson_id: int | None = None


class ImportOut(BaseModel):
    source: str
    lessons: int
    created: int
    updated: int
    unchanged: int
    removed: int
    holidays: int
    conflicts: int = 0
    schedule: str = ""  # whose schedule(s): school or pair names
    semester: str = ""
    dry_run: bool = False  # a preview: nothing was written
    changes: list[ChangeOut] = []  # the first 500, by date and classroom


class RowProblem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str
    # Where in the file (a bad form field, e.g. a holiday date, has none of these).
    line: int | None = None
    column: str | None = None
    sheet: str | None = None


class Refusal(BaseModel):
    """FastAPI's validation-error shape (as documented), plus, for a refused file, where
    in it and how many errors there were: only the first ``errors_shown`` are listed."""

    detail: list[RowProblem]
    errors_total: int | None = None
    errors_shown: int | None = None


class ImportJobOut(BaseModel):
    id: str
    filename: str
    state: JobState
    rows: int
    result: ImportOut | None = None
    # Once refused or failed: the status the import answers and why (a Refusal, or an
    # HTTP error's ``detail``).
    status: int = 0
    problem: dict[str, Any] = {}


_FOREIGN = msg.FOREIGN_CLASSROOMS()
_COPY_CHUNK = 1 << 20


def _parse_holidays(text: str) -> tuple[date, ...]:
    days: list[date] = []
    for part in text.replace("，", ",").split(","):
        if part.strip():
            try:
                days.append(date.fromisoformat(part.strip()))
            except ValueError:
                raise invalid(msg.HOLIDAY_BAD(value=part.strip()), "body", "holidays") from None
    return tuple(days)


def _outside_scope(session: Session, scope: Scope, result: ImportResult) -> bool:
    """Whether the import touches a classroom (its lessons', or its schedules' schools')
    the caller does not look after."""
    if scope.is_admin:
        return False
    return not result.classroom_ids <= set(session.scalars(scope.classroom_ids()))


def _out(result: ImportResult) -> dict[str, Any]:
    data = asdict(result)
    del data["classroom_ids"]
    return ImportOut(**data).model_dump(mode="json")


def _refusal(exc: TimetableError) -> dict[str, Any]:
    detail = [
        RowProblem(loc=["body", "file", e.sheet or "", e.line, e.column], msg=e.reason,
                   type="timetable_row", line=e.line, column=e.column, sheet=e.sheet)
        for e in exc.errors
    ]
    return Refusal(detail=detail, errors_total=exc.total,
                   errors_shown=len(detail)).model_dump()


@dataclass(frozen=True)
class _Import:
    """One upload's import, the same whether it runs in the request or in a job."""

    principal: Principal
    filename: str
    semester: Semester
    max_errors: int
    school: str = ""
    pair: str = ""
    dry_run: bool = False

    def run(self, session: Session, stream: BinaryIO,
            progress: Callable[[int], None] | None = None) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body); anything but 200 leaves the session rolled back."""
        try:
            result = import_timetable(session, stream, self.filename, semester=self.semester,
                                      school=self.school, pair=self.pair, dry_run=self.dry_run,
                                      max_errors=self.max_errors, progress=progress)
        except TimetableError as exc:
            session.rollback()
            return 422, _refusal(exc)
        session.flush()
        if _outside_scope(session, Scope(self.principal), result):
            session.rollback()
            return 403, {"detail": _FOREIGN}
        if self.dry_run:
            session.rollback()
        return 200, _out(result)


def _import_in_child(url: str, upload: _Import, path: str, pipe: Connection) -> None:
    """A job's import, in a process of its own: its interpreter lock, garbage collector
    and memory are not the API's, so /healthz and the page do not wait on it."""
    engine = make_engine(url)
    try:
        with open(path, "rb") as stream, session_scope(sessionmaker(engine)) as session:
            status, body = upload.run(session, stream, lambda rows: pipe.send(("rows", rows)))
        pipe.send(("end", status, body))
    except Exception:
        pipe.send(("failed", traceback.format_exc()))
    finally:
        engine.dispose()
        pipe.close()


def _job(upload: _Import, url: str, path: str) -> Callable[[ImportJob], None]:
    def work(job: ImportJob) -> None:
        spawn = multiprocessing.get_context("spawn")  # no copy of the API's threads and locks
        receiving, sending = spawn.Pipe(duplex=False)
        child = spawn.Process(target=_import_in_child, args=(url, upload, path, sending),
                              name=f"timetable-import-{job.id}", daemon=True)
        end: tuple[Any, ...] = ("failed", "the import process ended without an answer")
        try:
            child.start()
            sending.close()
            while True:
                try:
                    message = receiving.recv()
                except EOFError:
                    break
                if message[0] != "rows":
                    end = message
                    break
                job.rows = message[1]
        finally:
            receiving.close()
            child.join()
            os.unlink(path)
        if end[0] == "failed":
            raise RuntimeError(f"{end[1]} (exit code {child.exitcode})")
        _, job.status, body = end
        if job.status == 200:
            job.result, job.state = body, JobState.DONE
        else:
            job.problem, job.state = body, JobState.REFUSED

    return work


def _size(file: UploadFile) -> int:
    if file.size is not None:
        return file.size
    stream = file.file
    stream.seek(0, io.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    return size


def _spool(file: UploadFile) -> str:
    """A copy for the job, by path: the upload's own file is closed when the request ends."""
    with tempfile.NamedTemporaryFile(prefix="syncclass-timetable-", delete=False) as copy:
        file.file.seek(0)
        shutil.copyfileobj(file.file, copy, _COPY_CHUNK)
    return copy.name


def upload_limit(services: Services) -> Middleware:
    """413 before the body is read when an import declares more than the limit allows.

    The multipart parser would otherwise spool the whole body to disk first; a body
    without Content-Length is still measured in the route.
    """
    path = f"{API_PREFIX}/timetable/import"
    envelope = 64 * 1024  # multipart boundaries and the form's other fields

    async def limit(request: Request, call_next: Callable[[Request], Awaitable[Response]],
                    ) -> Response:
        declared = request.headers.get("content-length", "")
        limit_bytes = services.config.upload_max_bytes
        if (request.method == "POST" and request.url.path == path and declared.isdigit()
                and int(declared) > limit_bytes + envelope):
            return JSONResponse({"detail": msg.TOO_LARGE(limit=limit_bytes)}, status_code=413,
                                headers={"Connection": "close"})
        return await call_next(request)

    return limit


def _job_out(job: ImportJob) -> ImportJobOut:
    result = ImportOut.model_validate(job.result) if job.result is not None else None
    return ImportJobOut(id=job.id, filename=job.filename, state=job.state, rows=job.rows,
                        result=result, status=job.status, problem=job.problem)


@router.post(
    "/timetable/import",
    response_model=ImportOut,
    responses={
        202: {"model": ImportJobOut,
              "description": "a large file: imported in the background; GET the job",
              "links": {"GetImportJob": {
                  "operationId": "import_job_api_v1_timetable_imports__job_id__get",
                  "parameters": {"job_id": "$response.body#/id"}}}},
        413: {"description": "the file is larger than the configured limit"},
        422: {"model": Refusal,
              "description": "refused, nothing applied: the first bad rows, and how many"},
        403: {"description": "the file names classrooms outside your scope"},
        429: {"description": "too many imports waiting; retry after Retry-After seconds"},
    },
)
def import_file(
    session: DB,
    scope: CurrentScope,
    services: ServicesDep,
    file: Annotated[UploadFile, File(description="课表 .csv or .xlsx")],
    semester_start: Annotated[date, Form()],
    semester_end: Annotated[date, Form()],
    holidays: Annotated[str, Form(max_length=4000, description="YYYY-MM-DD, comma separated")] = "",
    semester_name: Annotated[str, Form(max_length=64)] = "",
    school: Annotated[str, Form(max_length=200, description="whose schedule: a school "
                                "(name or county/name); default: each main school")] = "",
    pair: Annotated[str, Form(max_length=128, description="or a pair's schedule")] = "",
    dry_run: Annotated[bool, Form(description="answer the preview, write nothing")] = False,
) -> Any:
    """Import a school's (or pair's) semester timetable; bad rows are reported and
    nothing is applied.  It replaces that schedule's lessons and nothing else.

    ``dry_run`` answers what would change (added, changed, cancelled, and conflicts with
    changes made by hand, by date and classroom) for the person to confirm.  Files up to
    ``import_inline_max_bytes`` are imported in the request; larger ones answer 202 with
    a job to poll at ``/timetable/imports/{job_id}``.
    """
    require_writer(scope)
    config = services.config
    # A sync route: FastAPI runs it in the thread pool, so the import never blocks the loop.
    size = _size(file)
    if size > config.upload_max_bytes:
        raise HTTPException(413, msg.TOO_LARGE(limit=config.upload_max_bytes))
    filename = file.filename or "upload.csv"
    semester = Semester(
        start=semester_start,
        end=semester_end,
        holidays=_parse_holidays(holidays),
        name=semester_name,
    )
    upload = _Import(scope.principal, filename, semester, config.import_max_errors, school,
                     pair, dry_run)
    if size <= config.import_inline_max_bytes:
        status, body = upload.run(session, file.file)
        if status == 403:
            raise HTTPException(403, body["detail"])
        return JSONResponse(body, status_code=status) if status != 200 else body
    path = _spool(file)
    url = services.sessions.kw["bind"].url.render_as_string(hide_password=False)
    try:
        job = services.imports.submit(scope.principal.id, filename, _job(upload, url, path),
                                      dropped=lambda: os.unlink(path))
    except QueueFull:
        os.unlink(path)
        raise HTTPException(429, msg.QUEUE_FULL(), headers={"Retry-After": "30"}) from None
    location = f"{API_PREFIX}/timetable/imports/{job.id}"
    return JSONResponse(_job_out(job).model_dump(mode="json"), status_code=202,
                        headers={"Location": location})


@router.get("/timetable/imports/{job_id}", response_model=ImportJobOut,
            responses={404: {"description": "no such job, or not yours"}})
def import_job(job_id: Annotated[str, Path(max_length=64)], scope: CurrentScope,
               services: ServicesDep) -> ImportJobOut:
    """A background import: its state, rows read so far, and its result or refusal."""
    job = services.imports.get(job_id)
    if job is None or not (scope.is_admin or job.owner == scope.principal.id):
        raise HTTPException(404, msg.NO_SUCH_JOB())
    return _job_out(job)


@router.get("/classrooms/{classroom_id}/calendar.ics", response_class=Response)
def classroom_ics(classroom_id: IdPath, session: DB, scope: CalendarScope) -> Response:
    room = scope.get(session, Classroom, classroom_id, "classroom")
    return Response(classroom_calendar(session, room.id), media_type=_ICS)


@router.get("/people/{person_id}/calendar.ics", response_class=Response)
def person_ics(person_id: IdPath, session: DB, scope: CalendarScope) -> Response:
    person = scope.get(session, Person, person_id, "person")
    return Response(person_calendar(session, person.id), media_type=_ICS)
