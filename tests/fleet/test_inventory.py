from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from fleet.db.base import SessionFactory, make_engine, session_scope
from fleet.db.migrate import upgrade
from fleet.db.models import (
    Classroom,
    County,
    Device,
    Lesson,
    LessonMode,
    LessonReceiver,
    Pair,
    Person,
    School,
    SchoolKind,
)
from fleet.inventory import (
    DEMO_INVENTORY,
    InventoryError,
    checked_classrooms,
    county_contacts,
    device_context,
    find_school,
    lesson_classrooms,
    load_inventory,
    parse_document,
    technicians_for_school,
)
from tests.fleet.pg import fresh_database
from tests.fleet.pilot import FAST_HASHER


def _count(session: Session, model: type[Any]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def _school(session: Session, name: str) -> School:
    return find_school(session, name)


def _demo() -> dict[str, Any]:
    return parse_document(DEMO_INVENTORY.read_bytes(), DEMO_INVENTORY.name)


def test_demo_pilot_has_four_counties_each_with_a_pair(pilot: SessionFactory) -> None:
    with session_scope(pilot) as s:
        assert sorted(c.name for c in s.scalars(select(County))) == sorted(
            ["洞头区", "乐清市", "文成县", "泰顺县"])
        assert _count(s, Device) == 9
        pairs = s.scalars(select(Pair)).all()
        assert len(pairs) == 4
        for pair in pairs:
            assert pair.town_school.kind == SchoolKind.TOWN
            assert all(m.school.kind == SchoolKind.RURAL for m in pair.members)
            assert all(m.school.county_id == pair.town_school.county_id for m in pair.members)
        assert sorted(len(p.members) for p in pairs) == [1, 1, 1, 2]
        for school in s.scalars(select(School)):
            assert technicians_for_school(s, school.id), f"{school.name} has no technician"
        for county in s.scalars(select(County)):
            assert [p.role.value for p in county_contacts(s, county.id)] == ["county_tech"]


def test_reload_is_idempotent_and_keeps_password_hashes(pilot: SessionFactory) -> None:
    with session_scope(pilot) as s:
        before = {p.username: (p.id, p.password_hash) for p in s.scalars(select(Person))}
        result = load_inventory(s, _demo(), hasher=FAST_HASHER)
    assert result.created == {} and result.updated == {}
    with session_scope(pilot) as s:
        after = {p.username: (p.id, p.password_hash) for p in s.scalars(select(Person))}
        assert after == before
        assert _count(s, Device) == 9 and _count(s, Pair) == 4


def test_passwords_are_argon2_hashes_any_verifier_accepts(pilot: SessionFactory) -> None:
    with session_scope(pilot) as s:
        admin = s.scalars(select(Person).where(Person.username == "admin")).one()
        assert admin.password_hash.startswith("$argon2id$")
        assert "syncclass-demo" not in admin.password_hash
        assert PasswordHasher().verify(admin.password_hash, "syncclass-demo")


def test_device_context_names_the_whole_chain(pilot: SessionFactory) -> None:
    with session_scope(pilot) as s:
        ctx = device_context(s, "yueqing-longxi-sync1")
        assert ctx is not None
        assert (ctx.county, ctx.school, ctx.classroom) == (
            "乐清市", "乐清市龙西乡小学", "同步课堂教室")
        assert ctx.school_kind == SchoolKind.RURAL
        assert ctx.pairs == ("乐清城南—山头、龙西结对",)
        town = device_context(s, "yueqing-chengnan-sync1")
        assert town is not None and town.pair_ids == ctx.pair_ids
        assert ctx.place == "乐清市 乐清市龙西乡小学 同步课堂教室"
        assert ctx.timezone == "Asia/Shanghai"
        assert device_context(s, "no-such-device") is None


def test_technicians_and_contacts_skip_inactive_people(pilot: SessionFactory) -> None:
    doc = _demo()
    for person in doc["people"]:
        if person["username"] in ("dt-luxi-tech", "dt-dianjiao"):
            person["active"] = False
    with session_scope(pilot) as s:
        load_inventory(s, doc, hasher=FAST_HASHER)
    with session_scope(pilot) as s:
        luxi = _school(s, "洞头区鹿西乡小学")
        assert technicians_for_school(s, luxi.id) == []
        assert county_contacts(s, luxi.county_id) == []
        shiyan = _school(s, "洞头区实验小学")
        assert [p.username for p in technicians_for_school(s, shiyan.id)] == ["dt-shiyan-tech"]


def test_changes_update_in_place(pilot: SessionFactory) -> None:
    doc = _demo()
    room = doc["counties"][0]["schools"][0]["classrooms"][0]
    room["devices"][0]["address"] = "10.77.1.21"
    doc["pairs"][1]["rural"] = ["乐清市龙西乡小学"]
    with session_scope(pilot) as s:
        result = load_inventory(s, doc, hasher=FAST_HASHER)
    assert result.updated == {"device": 1}
    with session_scope(pilot) as s:
        assert s.get(Device, "dongtou-shiyan-sync1").address == "10.77.1.21"  # type: ignore[union-attr]
        pair = s.scalars(select(Pair).where(Pair.name == "乐清城南—山头、龙西结对")).one()
        assert [m.school.name for m in pair.members] == ["乐清市龙西乡小学"]


def test_expected_devices_load_and_bad_ones_are_named(pilot: SessionFactory) -> None:
    doc = _demo()
    devices = doc["counties"][0]["schools"][0]["classrooms"][0]["devices"]
    devices[0]["expected"] = {"cameras": ["046d:082d:8A2B3C4D"], "speakers": []}
    with session_scope(pilot) as s:
        assert load_inventory(s, doc, hasher=FAST_HASHER).updated == {"device": 1}
    with session_scope(pilot) as s:
        device = s.get_one(Device, "dongtou-shiyan-sync1")
        assert device.expected == {"cameras": ["046d:082d:8A2B3C4D"], "speakers": []}
    for bad, says in (({"projectors": ["x"]}, "'projectors' is not one of"),
                      ({"cameras": ["a b"]}, "not a device id"),
                      (["046d:082d:1"], "must name one or more of")):
        devices[0]["expected"] = bad
        with session_scope(pilot) as s, pytest.raises(InventoryError) as err:
            load_inventory(s, doc, hasher=FAST_HASHER)
        [problem] = err.value.problems
        assert problem.startswith("counties[0].schools[0].classrooms[0].devices[0].expected: ")
        assert says in problem
    with session_scope(pilot) as s:  # the bad documents changed nothing
        assert s.get_one(Device, "dongtou-shiyan-sync1").expected == {
            "cameras": ["046d:082d:8A2B3C4D"], "speakers": []}


def test_json_document_loads_too(pilot: SessionFactory) -> None:
    doc = {"counties": [{"name": "瑞安市", "city": "温州市", "schools": [
        {"name": "瑞安市示例小学", "kind": "town",
         "classrooms": [{"name": "录播教室", "devices": [{"id": "ruian-1"}]}]}]}]}
    parsed = parse_document(json.dumps(doc, ensure_ascii=False).encode(), "extra.json")
    with session_scope(pilot) as s:
        result = load_inventory(s, parsed, hasher=FAST_HASHER)
    assert result.created == {"county": 1, "school": 1, "classroom": 1, "device": 1}
    with session_scope(pilot) as s:
        ctx = device_context(s, "ruian-1")
        assert ctx is not None and ctx.county == "瑞安市" and ctx.pairs == ()


def test_bad_document_names_every_problem_and_stores_nothing(pilot: SessionFactory) -> None:
    doc = {
        "counties": [{"name": "苍南县", "schools": [
            {"name": "苍南县示例小学", "kind": "city", "timezone": "Mars/Base"}]}],
        "pairs": [{"name": "坏结对", "town": "不存在的学校", "rural": []}],
        "people": [{"username": "x", "name": "某人", "role": "county_tech"},
                   {"username": "y", "name": "某人", "role": "boss"},
                   {"username": "x", "name": "又一人", "role": "admin"}],
    }
    with session_scope(pilot) as s, pytest.raises(InventoryError) as err:
        load_inventory(s, doc, hasher=FAST_HASHER)
    problems = "\n".join(err.value.problems)
    for where in ("counties[0].schools[0].kind", "counties[0].schools[0].timezone",
                  "pairs[0].town", "pairs[0].rural", "people[0].county", "people[1].role",
                  "people[2].username: 'x' 与 people[0].username 重复"):
        assert where in problems
    with session_scope(pilot) as s:
        assert s.scalars(select(County).where(County.name == "苍南县")).first() is None
        assert _count(s, Person) == 14


def test_unparseable_document_is_refused() -> None:
    with pytest.raises(InventoryError, match=r"bad\.toml"):
        parse_document(b"[[counties]\nname=", "bad.toml")


def test_same_school_name_in_two_counties_needs_the_county(pilot: SessionFactory) -> None:
    doc = {"counties": [{"name": "平阳县", "schools": [
        {"name": "洞头区实验小学", "kind": "town"}]}]}
    with session_scope(pilot) as s:
        load_inventory(s, doc, hasher=FAST_HASHER)
    with session_scope(pilot) as s:
        with pytest.raises(LookupError, match=r"county/school"):
            find_school(s, "洞头区实验小学")
        assert find_school(s, "平阳县/洞头区实验小学").county.name == "平阳县"


def test_lesson_classrooms_and_checked_classrooms(pilot: SessionFactory) -> None:
    with session_scope(pilot) as s:
        main = s.scalars(select(Classroom).join(School).where(
            School.name == "乐清市城南实验小学")).one()
        rural = s.scalars(select(Classroom).join(School).where(
            School.name.in_(["乐清市大荆镇山头小学", "乐清市龙西乡小学"]))).all()
        lesson = Lesson(subject="科学", starts_at=datetime(2026, 9, 3, 6, tzinfo=UTC),
                        ends_at=datetime(2026, 9, 3, 6, 40, tzinfo=UTC),
                        mode=LessonMode.RECORDED, main_classroom=main,
                        receivers=[LessonReceiver(classroom=r) for r in rural])
        s.add(lesson)
        s.flush()
        assert [c.id for c in lesson_classrooms(lesson)] == [main.id, *(r.id for r in rural)]
        assert [c.id for c in checked_classrooms(lesson)] == [r.id for r in rural]
        lesson.mode = LessonMode.LIVE
        assert checked_classrooms(lesson) == lesson_classrooms(lesson)


def test_bulk_levels_load_and_reload_on_postgres(postgres: str) -> None:
    """Each level goes in as one INSERT … RETURNING: on PostgreSQL too every row gets the
    id of its own parent, and a reload of the same document changes nothing."""
    url = fresh_database(postgres, f"inventory_{uuid.uuid4().hex[:8]}")
    upgrade(url)
    engine = make_engine(url)
    sessions = sessionmaker(engine)
    doc = _demo()
    wanted = {d["id"]: (c["name"], s["name"], r["name"])
              for c in doc["counties"] for s in c["schools"] for r in s["classrooms"]
              for d in r["devices"]}
    with session_scope(sessions) as s:
        first = load_inventory(s, doc, hasher=FAST_HASHER)
    assert first.created["device"] == len(wanted) == 9 and first.created["county"] == 4
    with session_scope(sessions) as s:
        again = load_inventory(s, doc, hasher=FAST_HASHER)
        assert again.created == {} and again.updated == {}
        placed = {d.id: (d.classroom.school.county.name, d.classroom.school.name,
                         d.classroom.name) for d in s.scalars(select(Device))}
    assert placed == wanted
    engine.dispose()
