"""``load-inventory`` of a province: 20,000 classrooms with a device each, in SQLite.

The same document (20 counties x 100 schools x 10 classrooms, as ``fleet_size``) is loaded
into a fresh database, then loaded again unchanged (a re-import), and the reference is a
SQLAlchemy core bulk insert of the same rows into another fresh database, in the same run.
Three repetitions; min and median of each ratio.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import sessionmaker

from bench.fleet_size import DEVICES, device_ids
from fleet.db.base import Base, make_engine, session_scope
from fleet.db.models import Classroom, County, Device, School, SchoolKind
from fleet.inventory import load_inventory

__all__ = ["run"]

REPEATS = 3


def _document(ids: list[str]) -> dict[str, Any]:
    counties: dict[str, dict[str, dict[str, str]]] = {}
    for device in ids:
        county, school, room = device.split("-")
        counties.setdefault(county, {}).setdefault(school, {})[room] = device
    return {"counties": [
        {"name": f"县{c}", "schools": [
            {"name": f"{c}学校{s}", "kind": "rural", "classrooms": [
                {"name": f"教室{r}", "devices": [{"id": d}]} for r, d in rooms.items()]}
            for s, rooms in schools.items()]}
        for c, schools in counties.items()]}


def _bulk(path: Path, doc: dict[str, Any]) -> float:
    engine = make_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    counties: list[dict[str, Any]] = []
    schools: list[dict[str, Any]] = []
    rooms: list[dict[str, Any]] = []
    devices: list[dict[str, Any]] = []
    for cdoc in doc["counties"]:
        counties.append({"id": len(counties) + 1, "name": cdoc["name"]})
        for sdoc in cdoc["schools"]:
            schools.append({"id": len(schools) + 1, "county_id": len(counties),
                            "name": sdoc["name"], "kind": SchoolKind.RURAL})
            for rdoc in sdoc["classrooms"]:
                rooms.append({"id": len(rooms) + 1, "school_id": len(schools),
                              "name": rdoc["name"]})
                devices.extend({"id": d["id"], "classroom_id": len(rooms)}
                               for d in rdoc["devices"])
    started = time.perf_counter()
    with engine.begin() as conn:
        for table, rows in ((County, counties), (School, schools), (Classroom, rooms),
                            (Device, devices)):
            conn.execute(insert(table), rows)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


def _load(path: Path, doc: dict[str, Any]) -> tuple[float, float]:
    engine = make_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    sessions = sessionmaker(engine)
    times = []
    for _ in range(2):  # a first load, then the same document again
        started = time.perf_counter()
        with session_scope(sessions) as session:
            load_inventory(session, doc)
        times.append(time.perf_counter() - started)
    engine.dispose()
    return times[0], times[1]


def run() -> None:
    doc = _document(device_ids(DEVICES))
    print(f"load-inventory: {DEVICES:,} devices in one document, {REPEATS} repetitions "
          "(min/median)")
    first_r, again_r, bulks, firsts = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(REPEATS):
            bulk = _bulk(Path(tmp) / f"bulk{i}.db", doc)
            first, again = _load(Path(tmp) / f"load{i}.db", doc)
            bulks.append(bulk)
            firsts.append(first)
            first_r.append(first / bulk)
            again_r.append(again / bulk)
    print(f"  reference: core bulk insert of the same rows  {min(bulks):6.2f}/"
          f"{statistics.median(bulks):6.2f} s")
    print(f"  load_inventory, fresh database                {min(firsts):6.2f}/"
          f"{statistics.median(firsts):6.2f} s")
    print(f"  ratio to the bulk insert: fresh {min(first_r):.1f}/{statistics.median(first_r):.1f}x,"
          f" unchanged re-import {min(again_r):.1f}/{statistics.median(again_r):.1f}x")
