"""Memory of one fleet process holding 20,000 classrooms, and the cost of persisting them.

One device per classroom, 20 counties x 100 schools x 10 classrooms in SQLite.  Each
device's birth and one telemetry go through ``DeviceStates`` (gate + sink, as the ingest
calls them, payloads decoded from the wire bytes).  The reference holds the same decoded
payloads in a plain dict.  Each side runs in its own child process so freed memory of one
never hides growth of the other.  ``DeviceStates.flush()`` of every device is timed
against a bulk insert of the same rows with SQLAlchemy core.
"""

from __future__ import annotations

import gc
import json
import multiprocessing as mp
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import Engine, insert
from sqlalchemy.orm import sessionmaker

from agent.contract import Kind, encode, envelope
from agent.hardware import open_backend
from agent.probes.base import ProbeContext
from agent.probes.runner import ProbeRunner
from agent.thresholds import Thresholds
from fleet.db.base import Base, make_engine
from fleet.db.models import Classroom, County, Device, DeviceState, School, SchoolKind
from fleet.state import DeviceStates

__all__ = ["birth", "build_inventory", "device_ids", "run", "telemetry_sections"]

DEVICES = 20_000
_SCHOOLS_PER_COUNTY = 100
_ROOMS_PER_SCHOOL = 10


def device_ids(n: int) -> list[str]:
    per_county = _SCHOOLS_PER_COUNTY * _ROOMS_PER_SCHOOL
    return [
        f"c{i // per_county:02d}-s{i // _ROOMS_PER_SCHOOL % _SCHOOLS_PER_COUNTY:03d}"
        f"-r{i % _ROOMS_PER_SCHOOL}"
        for i in range(n)
    ]


def build_inventory(engine: Engine, n: int) -> list[str]:
    """Schema plus ``n`` classrooms with one enabled device each; returns the device ids."""
    Base.metadata.create_all(engine)
    ids = device_ids(n)
    schools = -(-n // _ROOMS_PER_SCHOOL)
    counties = -(-schools // _SCHOOLS_PER_COUNTY)
    with engine.begin() as conn:
        conn.execute(insert(County), [{"id": c + 1, "name": f"县{c:02d}"} for c in range(counties)])
        conn.execute(insert(School), [
            {"id": s + 1, "county_id": s // _SCHOOLS_PER_COUNTY + 1, "name": f"学校{s:04d}",
             "kind": SchoolKind.RURAL if s % 2 else SchoolKind.TOWN}
            for s in range(schools)
        ])
        conn.execute(insert(Classroom), [
            {"id": i + 1, "school_id": i // _ROOMS_PER_SCHOOL + 1, "name": f"教室{i % 10}"}
            for i in range(n)
        ])
        conn.execute(insert(Device), [
            {"id": d, "classroom_id": i + 1, "address": "10.0.0.1"} for i, d in enumerate(ids)
        ])
    return ids


def telemetry_sections() -> dict[str, Any]:
    """A real telemetry ``sections`` dict from the simulated classroom's probes."""
    runner = ProbeRunner(ProbeContext(open_backend("simulated"), Thresholds(),
                                      {"broker": "127.0.0.1", "peer": "10.0.0.2"}))
    return runner.collect().sections


def birth(device_id: str, seq: int, inventory: dict[str, Any]) -> dict[str, Any]:
    return {**envelope(device_id, seq), "state": "online", "agent_version": "1.0.0",
            "session": 1, "seq": seq, "inventory": inventory, "interval": 15.0}


def _wire(ids: list[str]) -> Iterator[tuple[str, bytes, bytes]]:
    hardware = open_backend("simulated")
    inventory = hardware.inventory()
    sections = telemetry_sections()
    for d in ids:
        telemetry = {**envelope(d, 1), "interval": 15.0, "sections": sections}
        yield d, encode(birth(d, 0, inventory)), encode(telemetry)


def _rss_mib() -> float:
    gc.collect()
    return float(psutil.Process().memory_info().rss) / 2**20


def _timed(step: Callable[[], object]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def _fleet_side(db: Path, ref_db: Path, ids: list[str], out: Any) -> None:
    wire = list(_wire(ids))
    engine = make_engine(f"sqlite:///{db}")
    states = DeviceStates(sessionmaker(engine, expire_on_commit=False))
    before = _rss_mib()
    for d, status, telemetry in wire:
        for kind, data in ((Kind.STATUS, status), (Kind.TELEMETRY, telemetry)):
            payload = json.loads(data)
            if states.admit(d, kind, payload).release:
                (states.on_status if kind is Kind.STATUS else states.on_telemetry)(d, payload)
    del payload
    grown = _rss_mib() - before
    flush_new = _timed(states.flush)
    for d, _, telemetry in wire:  # the next interval: every device changed again
        states.on_telemetry(d, json.loads(telemetry))
    flush_again = _timed(states.flush)
    started = time.perf_counter()
    snapshot = states.all()
    copy_s = time.perf_counter() - started
    rows = [
        {"device_id": s.device_id, "online": s.online, "session": s.session,
         "agent_version": s.agent_version, "last_seen": s.last_seen, "last_seq": s.last_seq,
         "seq_gaps": s.seq_gaps, "seq_duplicates": s.seq_duplicates,
         "inventory": s.inventory, "telemetry": s.telemetry, "telemetry_at": s.telemetry_at}
        for s in snapshot
    ]
    ref_engine = make_engine(f"sqlite:///{ref_db}")

    def bulk() -> None:
        with ref_engine.begin() as conn:
            conn.execute(insert(DeviceState), rows)

    out.send((grown, flush_new, flush_again, copy_s, _timed(bulk)))


def _reference_side(ids: list[str], out: Any) -> None:
    wire = list(_wire(ids))
    before = _rss_mib()
    held = {d: (json.loads(status), json.loads(telemetry)) for d, status, telemetry in wire}
    out.send((_rss_mib() - before, len(held)))


def _in_child(target: Callable[..., None], *args: Any) -> Any:
    ctx = mp.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(*args, send))
    proc.start()
    result = receive.recv()
    proc.join()
    return result


def run() -> None:
    print(f"fleet size: one fleet process holding {DEVICES:,} devices (SQLite)")
    with tempfile.TemporaryDirectory() as tmp:
        db, ref_db = Path(tmp) / "fleet.db", Path(tmp) / "ref.db"
        engine = make_engine(f"sqlite:///{db}")
        started = time.perf_counter()
        ids = build_inventory(engine, DEVICES)
        engine.dispose()
        print(f"  inventory rows built in {time.perf_counter() - started:.1f} s")
        shutil.copy(db, ref_db)
        grown, flush_new, flush_again, copy_s, bulk = _in_child(_fleet_side, db, ref_db, ids)
        ref_grown, _ = _in_child(_reference_side, ids)
    print(f"  {'':<44}{'total':>10}{'per device':>14}")
    print(f"  {'DeviceStates (birth + telemetry each)':<44}{grown:>6.1f} MiB"
          f"{grown * 2**10 / DEVICES:>10.1f} KiB")
    print(f"  {'reference: same decoded payloads in a dict':<44}{ref_grown:>6.1f} MiB"
          f"{ref_grown * 2**10 / DEVICES:>10.1f} KiB")
    print(f"  ratio DeviceStates/reference RSS growth: {grown / ref_grown:.2f}x")
    print(f"  {'DeviceStates.flush(), 20,000 new rows':<44}{flush_new:>8.2f} s")
    print(f"  {'DeviceStates.flush(), 20,000 changed rows':<44}{flush_again:>8.2f} s")
    print(f"  {'DeviceStates.all(): snapshot of every state':<44}{copy_s:>8.2f} s")
    print(f"  {'reference: SQLAlchemy core bulk insert':<44}{bulk:>8.2f} s")
    print(f"  ratio flush/bulk insert: new {flush_new / bulk:.1f}x, "
          f"changed {flush_again / bulk:.1f}x")
