"""The page's session: the login token in an HttpOnly, SameSite=Strict cookie, so a new
tab is logged in and the page's scripts never hold the token, with a CSRF token that
every write must echo in a header (double submit: another site can neither read it nor
send the cookie with its own header).  The bearer token stays for the API.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from fastapi import HTTPException, Request, Response

__all__ = ["COOKIE", "CSRF_HEADER", "clear_cookie", "cookie_token", "csrf_for", "set_cookie"]

COOKIE = "syncclass_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_for(token: str) -> str:
    """Tied to the session: a CSRF token from another session (or an old one) is refused."""
    return hmac.new(b"syncclass-csrf", token.encode(), hashlib.sha256).hexdigest()


def set_cookie(response: Response, request: Request, token: str, expires: datetime,
               now: datetime) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=max(0, int((expires - now).total_seconds())),
        path="/api/",
        httponly=True,
        samesite="strict",
        # Behind TLS (or a proxy that says so) the cookie never travels in clear.
        secure=request.url.scheme == "https",
    )


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/api/", httponly=True, samesite="strict")


def cookie_token(request: Request) -> str | None:
    """The session cookie's token; a write without the matching CSRF header is refused."""
    token = request.cookies.get(COOKIE)
    if token is None:
        return None
    if request.method not in _SAFE and not hmac.compare_digest(
        request.headers.get(CSRF_HEADER, ""), csrf_for(token)
    ):
        raise HTTPException(
            403, "缺少或错误的 CSRF 令牌，请刷新页面 / CSRF token missing or wrong: reload the page"
        )
    return token
