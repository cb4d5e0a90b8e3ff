"""The inventory: loading it from a TOML/JSON document, and the lookups others need.

A document (see ``fleet/demo_inventory.toml``) nests counties → schools → classrooms →
devices, and lists pairs (结对学校) and people by the names of the schools they join or
look after.  Loading is idempotent: it creates what is missing and updates what exists,
keyed by names (and device ids, usernames); nothing absent from the document is deleted,
since checks and alerts refer to it.  A document with errors changes nothing.
"""

from __future__ import annotations

import json
import threading
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from agent.contract import ContractError, check_expected
from fleet.db.models import (
    Classroom,
    County,
    Device,
    Lesson,
    LessonMode,
    Pair,
    PairMember,
    Person,
    PersonSchool,
    Role,
    School,
    SchoolKind,
)

__all__ = [
    "DEMO_INVENTORY",
    "DeviceContext",
    "DeviceContextCache",
    "InventoryError",
    "LoadResult",
    "checked_classrooms",
    "county_contacts",
    "device_context",
    "find_classroom",
    "find_school",
    "lesson_classrooms",
    "load_inventory",
    "load_inventory_file",
    "parse_document",
    "technicians_for_school",
]

DEMO_INVENTORY = Path(__file__).resolve().parent / "demo_inventory.toml"
_WEBHOOK_KEYS = ("dingtalk_webhook", "dingtalk_secret", "wecom_webhook")


class InventoryError(ValueError):
    """The document has problems; each names where (``counties[0].schools[1].kind``)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("清单有误 / inventory has errors:\n" + "\n".join(problems))
        self.problems = problems


@dataclass
class LoadResult:
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)

    def _count(self, kind: str, was_new: bool) -> None:
        target = self.created if was_new else self.updated
        target[kind] = target.get(kind, 0) + 1


def parse_document(data: bytes | str, filename: str) -> dict[str, Any]:
    """A ``.toml`` or ``.json`` inventory file as a dict."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    try:
        doc = json.loads(text) if filename.endswith(".json") else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InventoryError([f"{filename}: {exc}"]) from None
    if not isinstance(doc, dict):
        raise InventoryError([f"{filename}: the top level must be a table/object"])
    return doc


# One row of a level: its key among its siblings and its column values; and the part of
# the document under it, with where that part is (for problems).
_Row = tuple[Any, dict[str, Any]]
_Doc = tuple[Any, Mapping[str, Any], str]


class _Loader:
    """Applies one document; collects every problem before the caller commits."""

    def __init__(self, session: Session, hasher: PasswordHasher) -> None:
        self.session = session
        self.hasher = hasher
        self.problems: list[str] = []
        self.result = LoadResult()
        self.schools: dict[str, list[School]] = {}
        self.seen: dict[tuple[str, str], str] = {}

    def text(self, item: Mapping[str, Any], key: str, where: str, *, required: bool = False,
             default: str = "") -> str:
        value = item.get(key, default)
        if not isinstance(value, str) or (required and not value.strip()):
            self.problems.append(f"{where}.{key}: 必填文本 / a non-empty string is required")
            return default
        return value.strip()

    def items(self, parent: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
        value = parent.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            self.problems.append(f"{where}{key}: 应为列表 / expected a list of tables")
            return []
        return value

    def unique(self, kind: str, key: str, where: str) -> None:
        """A second entry with the same key would silently overwrite the first."""
        first = self.seen.setdefault((kind, key), where)
        if first != where:
            self.problems.append(f"{where}: {key!r} 与 {first} 重复 / duplicates {first}")

    def upsert(self, table: str, obj: Any | None, factory: type[Any], **values: Any) -> Any:
        if obj is None:
            obj = factory(**values)
            self.session.add(obj)
            self.result._count(table, True)
        else:
            changed = False
            for key, value in values.items():
                if getattr(obj, key) != value:
                    setattr(obj, key, value)
                    changed = True
            if changed:
                self.result._count(table, False)
        self.session.flush()
        return obj

    def level(self, table: str, model: type[Any], keys: tuple[Any, ...],
              rows: list[_Row], *, ids: bool = True) -> dict[Any, int]:
        """Upsert one level of the tree (every school, say); the id of each key.

        A key is the row's ``keys`` columns (its name under its parent); ``ids=False``
        when no level below needs them.  What exists is read once as plain rows and
        changed by one bulk UPDATE; what is new goes in as one executemany INSERT.  Row by
        row through the ORM's unit of work, 20,000 devices took 21 s against 0.3-0.4 s
        for a bulk insert (issue 13).  The ids come back by one more SELECT, since
        INSERT … RETURNING in the rows' order runs row by row on SQLite.
        """
        columns = model.__table__.columns
        found = {tuple(m[c.key] for c in keys): m
                 for m in self.session.execute(select(*columns)).mappings()}
        new: dict[Any, dict[str, Any]] = {}
        changes: list[dict[str, Any]] = []
        for key, values in rows:
            if key in new:  # named twice: the later entry wins, as it always did
                new[key].update(values)
            elif key in found:
                row = found[key]
                changed = {k: v for k, v in values.items() if row[k] != v}
                if changed:
                    changes.append({"id": row["id"], **changed})
                    self.result._count(table, False)
            else:
                new[key] = values
        if changes:  # ORM bulk UPDATE by primary key, then no stale object stays around
            self.session.execute(update(model), changes)
            self.session.expire_all()
        if new:
            self.session.execute(insert(model.__table__), list(new.values()))
            for _ in new:
                self.result._count(table, True)
        if not ids:
            return {}
        return {tuple(row[1:]): row[0]
                for row in self.session.execute(select(model.id, *keys))}

    def load(self, doc: Mapping[str, Any]) -> None:
        # Level by level, so that each can name its parents' ids.
        rows, cdocs = self.counties(doc)
        counties = self.level("county", County, (County.name,), rows)
        rows, sdocs = self.below(counties, cdocs, self.schools_of)
        schools = self.level("school", School, (School.county_id, School.name), rows)
        named = dict.fromkeys(schools[k] for k, _, _ in sdocs)
        for school in self.session.scalars(select(School).where(School.id.in_(named))):
            self.schools.setdefault(school.name, []).append(school)
        rows, rdocs = self.below(schools, sdocs, self.classrooms_of)
        rooms = self.level("classroom", Classroom, (Classroom.school_id, Classroom.name), rows)
        self.level("device", Device, (Device.id,), [
            row for key, rdoc, where in rdocs for row in self.devices_of(rooms[key], rdoc, where)],
            ids=False)
        self.session.flush()
        for pi, pdoc in enumerate(self.items(doc, "pairs", "")):
            self.pair(pdoc, f"pairs[{pi}]")
        for ui, udoc in enumerate(self.items(doc, "people", "")):
            self.person(udoc, f"people[{ui}]")

    def webhooks(self, item: Mapping[str, Any], where: str) -> dict[str, str | None]:
        return {k: self.text(item, k, where) or None for k in _WEBHOOK_KEYS}

    @staticmethod
    def below(ids: Mapping[Any, int], docs: list[_Doc],
              of: Callable[[int, Mapping[str, Any], str], tuple[list[_Row], list[_Doc]]],
              ) -> tuple[list[_Row], list[_Doc]]:
        """The next level's rows and documents, each under its parent's new id."""
        rows: list[_Row] = []
        below: list[_Doc] = []
        for key, doc, where in docs:
            more_rows, more_docs = of(ids[key], doc, where)
            rows += more_rows
            below += more_docs
        return rows, below

    def counties(self, doc: Mapping[str, Any]) -> tuple[list[_Row], list[_Doc]]:
        out: list[_Doc] = []
        rows: list[_Row] = []
        for ci, cdoc in enumerate(self.items(doc, "counties", "")):
            where = f"counties[{ci}]"
            name = self.text(cdoc, "name", where, required=True)
            rows.append(((name,), {"name": name, "city": self.text(cdoc, "city", where),
                                   **self.webhooks(cdoc, where)}))
            out.append(((name,), cdoc, where))
        return rows, out

    def schools_of(self, county_id: int, cdoc: Mapping[str, Any],
                   where: str) -> tuple[list[_Row], list[_Doc]]:
        out: list[_Doc] = []
        rows: list[_Row] = []
        for si, sdoc in enumerate(self.items(cdoc, "schools", f"{where}.")):
            swhere = f"{where}.schools[{si}]"
            name = self.text(sdoc, "name", swhere, required=True)
            kind = sdoc.get("kind")
            if kind not in {k.value for k in SchoolKind}:
                self.problems.append(f"{swhere}.kind: 应为 town 或 rural / must be town or rural")
                kind = SchoolKind.TOWN.value
            tz = self.text(sdoc, "timezone", swhere, default="Asia/Shanghai")
            try:
                ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError):
                self.problems.append(f"{swhere}.timezone: 未知时区 / unknown time zone {tz!r}")
            key = (county_id, name)
            rows.append((key, {"county_id": county_id, "name": name, "kind": SchoolKind(kind),
                               "address": self.text(sdoc, "address", swhere), "timezone": tz,
                               **self.webhooks(sdoc, swhere)}))
            out.append((key, sdoc, swhere))
        return rows, out

    def classrooms_of(self, school_id: int, sdoc: Mapping[str, Any],
                      where: str) -> tuple[list[_Row], list[_Doc]]:
        out: list[_Doc] = []
        rows: list[_Row] = []
        for ri, rdoc in enumerate(self.items(sdoc, "classrooms", f"{where}.")):
            rwhere = f"{where}.classrooms[{ri}]"
            name = self.text(rdoc, "name", rwhere, required=True)
            key = (school_id, name)
            rows.append((key, {"school_id": school_id, "name": name}))
            out.append((key, rdoc, rwhere))
        return rows, out

    def devices_of(self, room_id: int, rdoc: Mapping[str, Any], where: str) -> list[_Row]:
        rows: list[_Row] = []
        for di, ddoc in enumerate(self.items(rdoc, "devices", f"{where}.")):
            dwhere = f"{where}.devices[{di}]"
            device_id = self.text(ddoc, "id", dwhere, required=True)
            self.unique("device", device_id, f"{dwhere}.id")
            enabled = ddoc.get("enabled", True)
            if not isinstance(enabled, bool):
                self.problems.append(f"{dwhere}.enabled: 应为 true/false / must be a boolean")
                enabled = True
            rows.append(((device_id,), {
                "id": device_id, "classroom_id": room_id,
                "address": self.text(ddoc, "address", dwhere), "enabled": enabled,
                "note": self.text(ddoc, "note", dwhere), "expected": self.expected(ddoc, dwhere)}))
        return rows

    def expected(self, ddoc: Mapping[str, Any], where: str) -> dict[str, list[str]] | None:
        """The device's expected devices; absent: the agent keeps its own (learned or
        configured)."""
        value = ddoc.get("expected")
        if value is None:
            return None
        try:
            return check_expected(dict(value) if isinstance(value, Mapping) else value)
        except ContractError as exc:
            self.problems.append(f"{where}.expected: 预期设备有误 / {exc.message}")
            return None

    def verifies(self, password_hash: str, password: str) -> bool:
        try:
            return bool(password_hash) and self.hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def school_ref(self, ref: Any, where: str) -> School | None:
        if not isinstance(ref, str):
            self.problems.append(f"{where}: 应为学校名称 / expected a school name")
            return None
        try:
            return find_school(self.session, ref, preferred=self.schools)
        except LookupError as exc:
            self.problems.append(f"{where}: {exc}")
            return None

    def pair(self, pdoc: Mapping[str, Any], where: str) -> None:
        name = self.text(pdoc, "name", where, required=True)
        town = self.school_ref(pdoc.get("town"), f"{where}.town")
        rural_refs = pdoc.get("rural", [])
        if not isinstance(rural_refs, list) or not rural_refs:
            self.problems.append(f"{where}.rural: 至少一所乡村学校 / list one rural school or more")
            rural_refs = []
        members = [self.school_ref(r, f"{where}.rural[{i}]") for i, r in enumerate(rural_refs)]
        if town is None or None in members:
            return
        if town.kind != SchoolKind.TOWN:
            self.problems.append(f"{where}.town: {town.name} 不是城镇学校 / is not a town school")
        found = self.session.scalar(select(Pair).where(Pair.name == name))
        pair = self.upsert("pair", found, Pair, name=name, town_school_id=town.id)
        wanted = {m.id for m in members if m is not None}
        have = {m.school_id: m for m in pair.members}
        for sid in have.keys() - wanted:
            pair.members.remove(have[sid])
        pair.members.extend(PairMember(school_id=sid) for sid in sorted(wanted - have.keys()))
        self.session.flush()

    def person(self, udoc: Mapping[str, Any], where: str) -> None:
        username = self.text(udoc, "username", where, required=True)
        self.unique("person", username, f"{where}.username")
        role = udoc.get("role")
        if role not in {r.value for r in Role}:
            self.problems.append(f"{where}.role: 应为 admin/county_tech/school_tech / bad role")
            return
        county_id = None
        if "county" in udoc:
            county_name = self.text(udoc, "county", where)
            county = self.session.scalar(select(County).where(County.name == county_name))
            if county is None:
                self.problems.append(f"{where}.county: 未知区县 / unknown county {county_name!r}")
            else:
                county_id = county.id
        elif role == Role.COUNTY_TECH:
            self.problems.append(f"{where}.county: 县电教须指定区县 / county_tech needs a county")
        looks_after: dict[int, bool] = {}
        for key, appointed in (("schools", True), ("also_schools", False)):
            refs = udoc.get(key, [])
            for i, ref in enumerate(refs if isinstance(refs, list) else [refs]):
                school = self.school_ref(ref, f"{where}.{key}[{i}]")
                if school is not None:
                    looks_after.setdefault(school.id, appointed)
        found = self.session.scalar(select(Person).where(Person.username == username))
        values: dict[str, Any] = {
            "username": username, "name": self.text(udoc, "name", where, required=True),
            "role": Role(role), "county_id": county_id,
            "email": self.text(udoc, "email", where), "phone": self.text(udoc, "phone", where),
        }
        if "active" in udoc:
            values["active"] = bool(udoc["active"])
        password = self.text(udoc, "password", where)
        if password and not (found is not None and self.verifies(found.password_hash, password)):
            values["password_hash"] = self.hasher.hash(password)
        elif "password_hash" in udoc:
            values["password_hash"] = self.text(udoc, "password_hash", where)
        person = self.upsert("person", found, Person, **values)
        for link in list(person.schools):
            if link.school_id not in looks_after:
                person.schools.remove(link)
            else:
                link.appointed = looks_after.pop(link.school_id)
        person.schools.extend(PersonSchool(school_id=sid, appointed=ap)
                              for sid, ap in sorted(looks_after.items()))
        self.session.flush()


def load_inventory(session: Session, doc: Mapping[str, Any], *,
                   hasher: PasswordHasher | None = None) -> LoadResult:
    """Apply an inventory document in ``session``; the caller commits.

    On InventoryError the session has been rolled back, so nothing of the document stays.
    Plain ``password`` entries are stored as argon2 hashes made by ``hasher`` (tests pass
    a cheap one); a password that still matches its stored hash is not re-hashed.
    """
    loader = _Loader(session, hasher or PasswordHasher())
    try:
        loader.load(doc)
    except BaseException:
        session.rollback()
        raise
    if loader.problems:
        session.rollback()
        raise InventoryError(loader.problems)
    return loader.result


def load_inventory_file(session: Session, path: Path, *,
                        hasher: PasswordHasher | None = None) -> LoadResult:
    """``load_inventory`` of a ``.toml``/``.json`` file (e.g. ``DEMO_INVENTORY``)."""
    return load_inventory(session, parse_document(path.read_bytes(), path.name), hasher=hasher)


def find_school(session: Session, ref: str,
                preferred: Mapping[str, Sequence[School]] | None = None) -> School:
    """A school by ``name`` or ``county/name`` (when two counties share the name)."""
    county_name, _, name = ref.rpartition("/")
    candidates: Sequence[School] = (preferred or {}).get(name, [])
    if not candidates:
        candidates = session.scalars(select(School).where(School.name == name)).all()
    if county_name:
        candidates = [s for s in candidates if s.county.name == county_name]
    if not candidates:
        raise LookupError(f"未知学校 {ref!r} / unknown school {ref!r}")
    if len({s.id for s in candidates}) > 1:
        raise LookupError(f"学校名称 {ref!r} 重复，请写作 区县/学校 / ambiguous school {ref!r}: "
                          "write it as county/school")
    return candidates[0]


def find_classroom(session: Session, ref: str) -> Classroom:
    """A classroom by id, or by ``school/classroom`` (``county/school/classroom``)."""
    if ref.isdigit():
        room = session.get(Classroom, int(ref))
        if room is None:
            raise LookupError(f"未知教室 / unknown classroom {ref}")
        return room
    school_ref, sep, name = ref.rpartition("/")
    if not sep:
        raise LookupError(f"教室写作 学校/教室 或编号 / write the classroom as school/classroom "
                          f"or its id, not {ref!r}")
    school = find_school(session, school_ref)
    room = session.scalar(
        select(Classroom).where(Classroom.school_id == school.id, Classroom.name == name))
    if room is None:
        raise LookupError(f"未知教室 / unknown classroom {ref!r}")
    return room


# ---------------------------------------------------------------- lookups


@dataclass(frozen=True)
class DeviceContext:
    """Where a device sits: the tags of its telemetry and the words of its alerts."""

    device_id: str
    enabled: bool
    classroom_id: int
    classroom: str
    school_id: int
    school: str
    school_kind: SchoolKind
    timezone: str
    county_id: int
    county: str
    pair_ids: tuple[int, ...]
    pairs: tuple[str, ...]

    @property
    def place(self) -> str:
        """``洞头区 洞头区实验小学 同步课堂教室``: how alert texts name the classroom."""
        return f"{self.county} {self.school} {self.classroom}"


def device_context(session: Session, device_id: str) -> DeviceContext | None:
    """The classroom, school, county and pairs of a device; None for an unknown device."""
    device = session.get(Device, device_id)
    if device is None:
        return None
    room = device.classroom
    school = room.school
    pairs = session.scalars(
        select(Pair)
        .outerjoin(PairMember, PairMember.pair_id == Pair.id)
        .where((Pair.town_school_id == school.id) | (PairMember.school_id == school.id))
        .distinct()
        .order_by(Pair.id)
    ).all()
    return DeviceContext(
        device_id=device.id, enabled=device.enabled, classroom_id=room.id, classroom=room.name,
        school_id=school.id, school=school.name, school_kind=school.kind,
        timezone=school.timezone, county_id=school.county_id, county=school.county.name,
        pair_ids=tuple(p.id for p in pairs), pairs=tuple(p.name for p in pairs),
    )


class DeviceContextCache:
    """:func:`device_context` remembered per device until :meth:`clear`.

    The inventory changes rarely (an import, an edit through the API, each followed by
    the fleet's ``reload_inventory``) while every telemetry message asks where its device
    is; unknown devices are not remembered, so one added later is found without a reload.
    """

    def __init__(self) -> None:
        self._known: dict[str, DeviceContext] = {}
        self._lock = threading.Lock()
        self._generation = 0

    def known(self, device_id: str) -> DeviceContext | None:
        """The remembered place, without a database round trip (None: not remembered)."""
        with self._lock:
            return self._known.get(device_id)

    def get(self, session: Session, device_id: str) -> DeviceContext | None:
        with self._lock:
            place = self._known.get(device_id)
            generation = self._generation
        if place is not None:
            return place
        place = device_context(session, device_id)
        with self._lock:
            # A clear() while we read means the answer may predate the new inventory.
            if place is not None and generation == self._generation:
                self._known[device_id] = place
        return place

    def clear(self) -> None:
        with self._lock:
            self._known.clear()
            self._generation += 1


def technicians_for_school(session: Session, school_id: int) -> list[Person]:
    """The active people appointed to look after the school's equipment (first to call)."""
    return list(session.scalars(
        select(Person)
        .join(PersonSchool, PersonSchool.person_id == Person.id)
        .where(PersonSchool.school_id == school_id, PersonSchool.appointed.is_(True),
               Person.active.is_(True))
        .order_by(Person.id)
    ))


def county_contacts(session: Session, county_id: int) -> list[Person]:
    """The active 电教 contacts of a county (escalation target)."""
    return list(session.scalars(
        select(Person)
        .where(Person.county_id == county_id, Person.role == Role.COUNTY_TECH,
               Person.active.is_(True))
        .order_by(Person.id)
    ))


def lesson_classrooms(lesson: Lesson) -> list[Classroom]:
    """The main classroom first, then the receiving ones."""
    return [lesson.main_classroom, *(r.classroom for r in lesson.receivers)]


def checked_classrooms(lesson: Lesson) -> list[Classroom]:
    """The classrooms to check before the lesson: a recorded one only plays at the receivers."""
    if lesson.mode == LessonMode.RECORDED:
        return [r.classroom for r in lesson.receivers]
    return lesson_classrooms(lesson)
