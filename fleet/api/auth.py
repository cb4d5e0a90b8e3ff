"""People's authentication: argon2 password hashes and bearer tokens.

A login returns a random token (or, for the page, puts it in an HttpOnly cookie:
``cookie_session``); only its SHA-256 is stored (``ApiToken``), so a copy of
the database does not let anyone in.  Calendar subscriptions cannot send a bearer header,
so each person also has a calendar token: an HMAC of their id, good for their calendar
feed and nothing else.  Failed logins back off and lock out (``login_guard``), and every
attempt is logged and kept in the login audit.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from datetime import datetime, timedelta
from typing import Annotated

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select

from fleet.api.cookie_session import clear_cookie, cookie_token, csrf_for, set_cookie
from fleet.api.deps import API_PREFIX, DB, Services, ServicesDep
from fleet.api.login_guard import (
    Attempt,
    audit_login,
    drop_stale,
    login_succeeded,
    reserve_attempt,
)
from fleet.api.scope import Principal, Scope
from fleet.db.base import session_scope
from fleet.db.models import ApiToken, LoginAudit, Person, PersonSchool, Role

__all__ = [
    "CalendarScope",
    "CurrentScope",
    "calendar_token",
    "hash_password",
    "principal_of",
    "router",
    "verify_password",
]

log = logging.getLogger(__name__)

_hasher = PasswordHasher()
_bearer = HTTPBearer(auto_error=False)
# Verifying against this keeps an unknown username as slow as a wrong password.
_DUMMY_HASH = _hasher.hash("syncclass-no-such-user")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and bool(stored_hash)
    except (VerificationError, InvalidHashError):
        return False


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def calendar_token(secret: str, person_id: int) -> str:
    """``<person id>.<hmac>``: self-contained, so a calendar URL needs nothing else."""
    mac = hmac.new(secret.encode(), f"calendar:{person_id}".encode(), "sha256").hexdigest()
    return f"{person_id}.{mac}"


def _calendar_person(session: DB, secret: str, token: str) -> Person | None:
    head, _, _ = token.partition(".")
    if not (head.isascii() and head.isdigit() and len(head) < 10):
        return None
    if not hmac.compare_digest(calendar_token(secret, int(head)), token):
        return None
    return session.get(Person, int(head))


def principal_of(session: DB, person: Person) -> Principal:
    school_ids = session.scalars(
        select(PersonSchool.school_id).where(PersonSchool.person_id == person.id)
    ).all()
    return Principal(
        id=person.id,
        username=person.username,
        name=person.name,
        role=person.role,
        county_id=person.county_id,
        school_ids=frozenset(school_ids),
    )


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def _presented(request: Request, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The bearer token, else the page's session cookie (whose writes need CSRF)."""
    raw = credentials.credentials if credentials is not None else cookie_token(request)
    if raw is None:
        raise _unauthorized("需要登录 / login required")
    return raw


def current_scope(
    request: Request,
    session: DB,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Scope:
    token = session.get(ApiToken, _sha256(_presented(request, credentials)))
    if token is None or token.expires_at <= services.clock():
        raise _unauthorized("登录已失效 / token invalid or expired")
    person = session.get(Person, token.person_id)
    if person is None or not person.active:
        raise _unauthorized("账号已停用 / account disabled")
    return Scope(principal_of(session, person))


CurrentScope = Annotated[Scope, Depends(current_scope)]


def calendar_scope(
    request: Request,
    session: DB,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    token: Annotated[
        str | None, Query(max_length=100, description="calendar token from /api/v1/me")
    ] = None,
) -> Scope:
    """A bearer token, or the person's calendar token for calendar apps."""
    if credentials is not None or token is None:
        return current_scope(request, session, services, credentials)
    person = _calendar_person(session, services.config.calendar_secret, token)
    if person is None or not person.active:
        raise _unauthorized("日历链接无效 / calendar token invalid")
    return Scope(principal_of(session, person))


CalendarScope = Annotated[Scope, Depends(calendar_scope)]


router = APIRouter(prefix=API_PREFIX, tags=["auth"])


# Control characters are in no username; PostgreSQL cannot even store a NUL (a 500),
# and a newline would forge lines in the log.
_USERNAME_CHARS = r"^[^\x00-\x1f\x7f]+$"


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64, pattern=_USERNAME_CHARS)
    password: str = Field(min_length=1, max_length=256)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: str


class SessionOut(BaseModel):
    """The page's login: the token is in the HttpOnly cookie, never in the page."""

    expires_at: str
    csrf_token: str  # to send as X-CSRF-Token with every write


class MeOut(BaseModel):
    id: int
    username: str
    name: str
    role: Role
    county_id: int | None
    school_ids: list[int]
    calendar_url: str


_TOO_MANY = "登录失败次数过多，请 {s} 秒后再试 / too many failed logins, try again in {s} s"


def _client_address(request: Request) -> str:
    # Behind a local reverse proxy uvicorn already puts the forwarded client here.
    return request.client.host if request.client is not None else ""


def _audit_refusal(services: Services, attempt: Attempt, outcome: str, detail: str) -> None:
    """In its own unit of work: the refusal rolls the request's one back."""
    with session_scope(services.sessions) as session:
        audit_login(session, attempt, outcome, detail, services.clock())


@router.post(
    "/auth/login",
    responses={
        401: {"description": "wrong username or password"},
        429: {"description": "too many failed logins: wait Retry-After seconds"},
    },
)
def login(body: LoginIn, request: Request, session: DB, services: ServicesDep) -> TokenOut:
    token, expires = _log_in(body, request, session, services)
    return TokenOut(access_token=token, expires_at=expires.isoformat())


@router.post(
    "/auth/session",
    responses={
        401: {"description": "wrong username or password"},
        429: {"description": "too many failed logins: wait Retry-After seconds"},
    },
)
def open_session(
    body: LoginIn, request: Request, response: Response, session: DB, services: ServicesDep
) -> SessionOut:
    """The page's login: an HttpOnly SameSite=Strict cookie and its CSRF token."""
    token, expires = _log_in(body, request, session, services)
    set_cookie(response, request, token, expires, services.clock())
    return SessionOut(expires_at=expires.isoformat(), csrf_token=csrf_for(token))


@router.delete(
    "/auth/session", status_code=204, responses={403: {"description": "CSRF token missing"}}
)
def close_session(request: Request, response: Response, session: DB) -> None:
    """Logs the page out; the cookie goes whether or not its session was still valid."""
    token = cookie_token(request)  # a cross-site logout is refused like any write
    if token is not None:
        session.execute(delete(ApiToken).where(ApiToken.token_hash == _sha256(token)))
    clear_cookie(response)


def _log_in(
    body: LoginIn, request: Request, session: DB, services: Services
) -> tuple[str, datetime]:
    now = services.clock()
    attempt = Attempt(body.username, _client_address(request))
    limits = services.config.login
    wait = reserve_attempt(services.sessions, attempt, limits, now)
    if wait is not None:
        # Refused before argon2, right or wrong password: the lockout holds until it ends.
        log.warning(
            "login throttled: %r from %s, retry in %d s", body.username, attempt.address, wait
        )
        _audit_refusal(services, attempt, "throttled", f"retry after {wait} s")
        raise HTTPException(429, _TOO_MANY.format(s=wait), headers={"Retry-After": str(wait)})
    person = session.scalars(select(Person).where(Person.username == body.username)).first()
    # Always pay for one argon2 verification before deciding, so the response time does
    # not tell which usernames exist (or are disabled).  Timing is not asserted in tests.
    stored = person.password_hash if person is not None else _DUMMY_HASH
    password_ok = verify_password(stored, body.password)
    if person is None or not person.active or not password_ok:
        why = (
            "unknown user" if person is None
            else "account disabled" if not person.active
            else "wrong password"
        )
        log.warning("login failed: %r from %s (%s)", body.username, attempt.address, why)
        _audit_refusal(services, attempt, "failed", why)
        raise _unauthorized("用户名或密码错误 / wrong username or password")
    # Before this request's unit of work writes anything: SQLite has one writer at a time.
    drop_stale(services.sessions, limits, now)
    if _hasher.check_needs_rehash(person.password_hash):
        # Seeded or older hashes move to the current argon2 parameters on next login.
        person.password_hash = hash_password(body.password)
    login_succeeded(session, attempt, limits)
    audit_login(session, attempt, "ok", "", now)
    log.info("login ok: %r from %s", body.username, attempt.address)
    session.execute(delete(ApiToken).where(ApiToken.expires_at <= now))
    token = secrets.token_urlsafe(32)
    expires = now + timedelta(hours=services.config.token_ttl_hours)
    session.add(
        ApiToken(token_hash=_sha256(token), person_id=person.id, created_at=now, expires_at=expires)
    )
    return token, expires


class LoginAuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    username: str
    address: str
    outcome: str
    detail: str


@router.get("/auth/audit")
def login_audit(
    session: DB,
    scope: CurrentScope,
    username: Annotated[str | None, Query(max_length=64, pattern=_USERNAME_CHARS)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[LoginAuditOut]:
    """Login attempts, newest first (admins only)."""
    if not scope.is_admin:
        raise HTTPException(403, "仅管理员 / admins only")
    query = select(LoginAudit).order_by(LoginAudit.at.desc(), LoginAudit.id.desc()).limit(limit)
    if username is not None:
        query = query.where(LoginAudit.username == username)
    return [LoginAuditOut.model_validate(row) for row in session.scalars(query)]


@router.post("/auth/logout", status_code=204)
def logout(
    session: DB,
    scope: CurrentScope,
    # Never None here: ``scope`` has already refused a request without a bearer token.
    credentials: Annotated[HTTPAuthorizationCredentials, Depends(_bearer)],
) -> None:
    session.execute(delete(ApiToken).where(ApiToken.token_hash == _sha256(credentials.credentials)))


@router.get("/me")
def me(scope: CurrentScope, services: ServicesDep) -> MeOut:
    p = scope.principal
    token = calendar_token(services.config.calendar_secret, p.id)
    return MeOut(
        id=p.id,
        username=p.username,
        name=p.name,
        role=p.role,
        county_id=p.county_id,
        school_ids=sorted(p.school_ids),
        calendar_url=f"/api/v1/people/{p.id}/calendar.ics?token={token}",
    )
