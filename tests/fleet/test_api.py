"""The people API: login, tokens, roles scoped to what each person looks after, CRUD."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, select

from fleet.db.base import session_scope
from fleet.db.models import (
    ApiToken,
    Classroom,
    County,
    Device,
    DeviceState,
    Person,
    School,
    SchoolKind,
)
from tests.fleet.api_world import NOW, PASSWORD, World, world

__all__ = ["world"]

DONGTOU, YUEQING = "洞头区", "乐清市"


def _school_id(w: World, name: str) -> int:
    with session_scope(w.sessions) as session:
        return session.scalars(select(School.id).where(School.name == name)).one()


def test_login_gives_a_token_stored_only_as_its_hash(world: World) -> None:
    reply = world.client.post(
        "/api/v1/auth/login", json={"username": "dt-dianjiao", "password": PASSWORD}
    )
    assert reply.status_code == 200
    token = reply.json()["access_token"]
    with session_scope(world.sessions) as session:
        stored = session.scalars(select(ApiToken.token_hash)).all()
    assert token not in stored and len(stored) == 1
    me = world.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["username"] == "dt-dianjiao" and me["role"] == "county_tech"


def test_wrong_password_unknown_or_disabled_user_and_no_token_are_401(world: World) -> None:
    with session_scope(world.sessions) as session:
        disabled = session.scalars(select(Person).where(Person.username == "yq-dianjiao")).one()
        disabled.active = False
    for body in (
        {"username": "dt-dianjiao", "password": "wrong"},
        {"username": "nobody", "password": PASSWORD},
        {"username": "yq-dianjiao", "password": PASSWORD},
    ):
        reply = world.client.post("/api/v1/auth/login", json=body)
        assert reply.status_code == 401
        assert "wrong username or password" in reply.json()["detail"]
    assert world.client.get("/api/v1/schools").status_code == 401
    bogus = {"Authorization": "Bearer not-a-token"}
    assert world.client.get("/api/v1/schools", headers=bogus).status_code == 401


def test_token_expires(world: World) -> None:
    headers = world.headers("admin")
    assert world.client.get("/api/v1/me", headers=headers).status_code == 200
    world.clock.advance(hours=13)
    reply = world.client.get("/api/v1/me", headers=headers)
    assert reply.status_code == 401 and "expired" in reply.json()["detail"]


def test_logout_revokes_the_token(world: World) -> None:
    headers = world.headers("admin")
    assert world.client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert world.client.get("/api/v1/me", headers=headers).status_code == 401


def test_school_tech_sees_only_their_school(world: World) -> None:
    schools = world.get("dt-luxi-tech", "/api/v1/schools").json()
    assert [s["name"] for s in schools] == ["洞头区鹿西乡小学"]
    devices = world.get("dt-luxi-tech", "/api/v1/devices").json()
    assert [d["id"] for d in devices] == ["dongtou-luxi-sync1"]


def test_school_tech_of_one_county_gets_404_for_another_countys_things(world: World) -> None:
    alert_id = world.take_offline("yueqing-shantou-sync1")
    foreign_school = _school_id(world, "乐清市大荆镇山头小学")
    foreign_room = world.classroom("乐清市大荆镇山头小学")
    for path in (
        f"/api/v1/schools/{foreign_school}",
        f"/api/v1/classrooms/{foreign_room}",
        "/api/v1/devices/yueqing-shantou-sync1",
        f"/api/v1/alerts/{alert_id}",
    ):
        reply = world.get("dt-luxi-tech", path)
        assert reply.status_code == 404, path
    # The same answer as for an id that does not exist at all: nothing leaks.
    assert (
        world.get("dt-luxi-tech", "/api/v1/schools/99999").json()
        == world.get("dt-luxi-tech", f"/api/v1/schools/{foreign_school}").json()
    )
    assert world.get("dt-luxi-tech", "/api/v1/alerts").json() == []
    assert [a["id"] for a in world.get("yq-dianjiao", "/api/v1/alerts").json()] == [alert_id]


def test_county_tech_sees_their_county_only(world: World) -> None:
    counties = world.get("dt-dianjiao", "/api/v1/counties").json()
    assert [c["name"] for c in counties] == [DONGTOU]
    schools = {s["name"] for s in world.get("dt-dianjiao", "/api/v1/schools").json()}
    assert schools == {"洞头区实验小学", "洞头区鹿西乡小学"}
    pairs = world.get("dt-dianjiao", "/api/v1/pairs").json()
    assert len(pairs) == 1
    all_schools = world.get("admin", "/api/v1/schools").json()
    assert len(all_schools) > len(schools)


def test_admin_crud_with_validation_conflicts_and_references(world: World) -> None:
    county = world.post("admin", "/api/v1/counties", json={"name": "泰顺县测试", "city": "温州市"})
    assert county.status_code == 201
    cid = county.json()["id"]
    dup = world.post("admin", "/api/v1/counties", json={"name": "泰顺县测试"})
    assert dup.status_code == 409
    bad = world.post(
        "admin", "/api/v1/schools", json={"county_id": cid, "name": "X", "kind": "city"}
    )
    assert bad.status_code == 422
    tz = world.post(
        "admin",
        "/api/v1/schools",
        json={"county_id": cid, "name": "X", "kind": "town", "timezone": "Mars/Base"},
    )
    assert tz.status_code == 422
    school = world.post(
        "admin", "/api/v1/schools", json={"county_id": cid, "name": "测试小学", "kind": "town"}
    ).json()
    assert school["timezone"] == "Asia/Shanghai"
    room = world.post(
        "admin", "/api/v1/classrooms", json={"school_id": school["id"], "name": "同步课堂教室"}
    ).json()
    bad_id = world.post(
        "admin", "/api/v1/devices", json={"id": "bad id/with slash", "classroom_id": room["id"]}
    )
    assert bad_id.status_code == 422
    device = world.post("admin", "/api/v1/devices", json={"id": "ts-1", "classroom_id": room["id"]})
    assert device.status_code == 201 and device.json()["health"] is None
    again = world.post("admin", "/api/v1/devices", json={"id": "ts-1", "classroom_id": room["id"]})
    assert again.status_code == 409
    # A school still holding classrooms cannot be deleted; nothing is lost.
    assert (
        world.client.delete(
            f"/api/v1/schools/{school['id']}", headers=world.headers("admin")
        ).status_code
        == 409
    )
    patched = world.client.patch(
        "/api/v1/devices/ts-1", headers=world.headers("admin"), json={"enabled": False}
    )
    assert patched.json()["enabled"] is False
    assert (
        world.client.delete("/api/v1/devices/ts-1", headers=world.headers("admin")).status_code
        == 204
    )
    with session_scope(world.sessions) as session:
        assert session.get(Device, "ts-1") is None


def test_county_tech_writes_in_their_county_school_tech_reads_only(world: World) -> None:
    dongtou = world.get("dt-dianjiao", "/api/v1/counties").json()[0]["id"]
    yueqing = [
        c["id"] for c in world.get("admin", "/api/v1/counties").json() if c["name"] == YUEQING
    ]
    made = world.post(
        "dt-dianjiao",
        "/api/v1/schools",
        json={"county_id": dongtou, "name": "洞头区新校", "kind": "rural"},
    )
    assert made.status_code == 201
    foreign = world.post(
        "dt-dianjiao",
        "/api/v1/schools",
        json={"county_id": yueqing[0], "name": "越界学校", "kind": "rural"},
    )
    assert foreign.status_code == 404
    readonly = world.post(
        "dt-luxi-tech", "/api/v1/classrooms", json={"school_id": made.json()["id"], "name": "A"}
    )
    assert readonly.status_code == 403
    assert world.post("dt-dianjiao", "/api/v1/counties", json={"name": "新县"}).status_code == 403


def test_people_management_and_password_change(world: World) -> None:
    luxi = _school_id(world, "洞头区鹿西乡小学")
    new = world.post(
        "dt-dianjiao",
        "/api/v1/people",
        json={
            "username": "luxi-2",
            "name": "新技术员",
            "role": "school_tech",
            "county_id": world.get("dt-dianjiao", "/api/v1/me").json()["county_id"],
            "password": "long-enough-pw",
            "school_ids": [luxi],
        },
    )
    assert new.status_code == 201, new.text
    escalate = world.post(
        "dt-dianjiao",
        "/api/v1/people",
        json={"username": "root2", "name": "x", "role": "admin", "password": "long-enough-pw"},
    )
    assert escalate.status_code == 403
    short = world.post(
        "admin",
        "/api/v1/people",
        json={"username": "u3", "name": "x", "role": "admin", "password": "short"},
    )
    assert short.status_code == 422
    login = world.client.post(
        "/api/v1/auth/login", json={"username": "luxi-2", "password": "long-enough-pw"}
    )
    assert login.status_code == 200
    me = {"Authorization": f"Bearer {login.json()['access_token']}"}
    pid = new.json()["id"]
    changed = world.client.patch(
        f"/api/v1/people/{pid}", headers=me, json={"password": "another-pw-1"}
    )
    assert changed.status_code == 200
    promote = world.client.patch(f"/api/v1/people/{pid}", headers=me, json={"role": "admin"})
    assert promote.status_code == 403
    old = world.client.post(
        "/api/v1/auth/login", json={"username": "luxi-2", "password": "long-enough-pw"}
    )
    assert old.status_code == 401


def test_openapi_schema_is_served(world: World) -> None:
    schema = world.client.get("/openapi.json").json()
    assert "/api/v1/alerts/{alert_id}/ack" in schema["paths"]
    assert "/api/v1/bandwidth" in schema["paths"]


def test_healthz_and_metrics(world: World) -> None:
    assert world.client.get("/healthz").json() == {"status": "ok", "db": True, "mqtt": None,
                                                  "coordinator": None}
    world.get("admin", "/api/v1/schools")
    text = world.client.get("/metrics").text
    assert "# TYPE syncclass_devices_online gauge" in text  # a component's own samples
    assert (
        'syncclass_api_requests_total{method="GET",route="/api/v1/schools",status="200"} 1.0'
        in text
    )


def test_healthz_reports_mqtt_down(world: World) -> None:
    world.services.mqtt_connected = lambda: False
    reply = world.client.get("/healthz")
    assert reply.status_code == 503 and reply.json()["mqtt"] is False


def test_inventory_writes_tell_the_fleet_once_committed(world: World) -> None:
    seen: list[bool] = []

    def inventory_changed() -> None:
        # A separate session: sees only what the request has committed.
        with session_scope(world.sessions) as session:
            device = session.get(Device, "dongtou-luxi-sync1")
            assert device is not None
            seen.append(device.enabled)

    world.services.inventory_changed = inventory_changed
    path = "/api/v1/devices/dongtou-luxi-sync1"
    assert world.get("admin", path).status_code == 200
    reader = world.client.patch(
        path, headers=world.headers("dt-luxi-tech"), json={"enabled": False}
    )
    assert reader.status_code == 403
    missing = world.client.patch(
        "/api/v1/devices/no-such-device", headers=world.headers("admin"), json={"enabled": False}
    )
    assert missing.status_code == 404
    assert seen == []
    patched = world.client.patch(path, headers=world.headers("admin"), json={"enabled": False})
    assert patched.status_code == 200
    assert seen == [False]


def _add_devices(world: World, n: int, start: int) -> None:
    """``n`` devices, each in a classroom of its own school, with a flushed state row."""
    with session_scope(world.sessions) as session:
        county = session.scalars(select(County).order_by(County.id)).first()
        assert county is not None
        for i in range(start, start + n):
            school = School(county_id=county.id, name=f"负载测试小学{i}", kind=SchoolKind.RURAL)
            room = Classroom(school=school, name="同步课堂教室")
            session.add(Device(id=f"load-{i}", classroom=room))
        session.flush()  # device rows first: the state rows reference them
        for i in range(start, start + n):
            session.add(
                DeviceState(
                    device_id=f"load-{i}", online=True, agent_version="0.1.0", last_seen=NOW
                )
            )


def _statements(world: World, path: str) -> tuple[int, Any]:
    engine = world.sessions.kw["bind"]
    count = 0

    def before_cursor_execute(*_: object) -> None:
        nonlocal count
        count += 1

    headers = world.headers("admin")
    event.listen(engine, "before_cursor_execute", before_cursor_execute)
    try:
        reply = world.client.get(path, headers=headers)
    finally:
        event.remove(engine, "before_cursor_execute", before_cursor_execute)
    assert reply.status_code == 200
    return count, reply.json()


def test_device_list_queries_do_not_grow_with_the_devices(world: World) -> None:
    _add_devices(world, 3, 0)
    few, listed = _statements(world, "/api/v1/devices")
    assert {d["school"] for d in listed} >= {f"负载测试小学{i}" for i in range(3)}
    _add_devices(world, 9, 3)
    many, listed = _statements(world, "/api/v1/devices")
    loaded = [d for d in listed if d["id"].startswith("load-")]
    assert len(loaded) == 12 and all(d["health"]["online"] for d in loaded)
    assert many == few


def test_device_pages_follow_the_link_header_to_every_device_once(world: World) -> None:
    _add_devices(world, 7, 100)
    everyone = [d["id"] for d in world.get("admin", "/api/v1/devices?limit=5000").json()]
    seen: list[str] = []
    path: str | None = "/api/v1/devices?limit=3"
    pages = 0
    while path is not None:
        reply = world.client.get(path, headers=world.headers("admin"))
        assert reply.status_code == 200
        page = [d["id"] for d in reply.json()]
        assert len(page) <= 3
        seen += page
        pages += 1
        link = reply.headers.get("link")
        # A full page names the next one; the last (short or empty) page names none.
        assert (link is not None) == (len(page) == 3)
        path = None if link is None else link.split(";")[0].strip("<>")
    assert seen == everyone and len(everyone) >= 7
    assert pages == len(everyone) // 3 + 1
    # A page size out of range is refused with a clear 422, not clamped.
    reply = world.client.get("/api/v1/devices?limit=0", headers=world.headers("admin"))
    assert reply.status_code == 422
