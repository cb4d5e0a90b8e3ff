"""The page's cookie session: HttpOnly and SameSite=Strict, writes only with the
session's CSRF token, logout ends it on the server; bearer tokens work as before."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.fleet.api_world import PASSWORD, World, world

__all__ = ["world"]

WINDOW = {"name": "鹿西夜间", "weekdays": [0], "start_time": "22:00", "end_time": "06:00",
          "matchers": {}}


def test_cookie_session_needs_csrf_for_writes(world: World) -> None:
    client = TestClient(world.app)  # a browser of its own: its own cookie jar
    opened = client.post("/api/v1/auth/session",
                         json={"username": "admin", "password": PASSWORD})
    assert opened.status_code == 200, opened.text
    body = opened.json()
    assert set(body) == {"expires_at", "csrf_token"}  # the token itself stays in the cookie
    cookie = opened.headers["set-cookie"]
    assert cookie.startswith("syncclass_session=")
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/api/", "Max-Age=43200"):
        assert attribute in cookie, cookie
    assert client.get("/api/v1/me").json()["username"] == "admin"

    # A write the cookie alone would carry (what a forged cross-site form sends) is
    # refused, and so is another session's CSRF token; nothing is written.
    refused = client.post("/api/v1/maintenance-windows", json=WINDOW)
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"] and "刷新页面" in refused.json()["detail"]
    other = client.post("/api/v1/maintenance-windows", json=WINDOW,
                        headers={"X-CSRF-Token": "0" * 64})
    assert other.status_code == 403
    assert world.get("admin", "/api/v1/maintenance-windows").json() == []
    made = client.post("/api/v1/maintenance-windows", json=WINDOW,
                       headers={"X-CSRF-Token": body["csrf_token"]})
    assert made.status_code == 201, made.text

    # Logging out without the CSRF token is refused too; with it, the session is gone.
    assert client.delete("/api/v1/auth/session").status_code == 403
    assert client.get("/api/v1/me").status_code == 200
    stolen = client.cookies.get("syncclass_session")
    closed = client.delete("/api/v1/auth/session", headers={"X-CSRF-Token": body["csrf_token"]})
    assert closed.status_code == 204
    assert client.get("/api/v1/me").status_code == 401
    replay = TestClient(world.app, cookies={"syncclass_session": stolen or ""})
    assert replay.get("/api/v1/me").status_code == 401  # ended on the server, not only here


def test_bearer_tokens_are_untouched(world: World) -> None:
    """The API's clients keep the bearer token; it needs no CSRF header for writes."""
    made = world.post("admin", "/api/v1/maintenance-windows", json=WINDOW)
    assert made.status_code == 201, made.text
    wrong = TestClient(world.app).post("/api/v1/auth/session",
                                       json={"username": "admin", "password": "nope"})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
