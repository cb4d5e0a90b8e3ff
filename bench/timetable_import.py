"""Timetable imports: the CLI on a ~10 MB generated file, and the API staying responsive.

CLI: one command measures child processes on the same generated inventory and file:
``syncclass-fleet import-timetable`` itself; the same command on a three-line file (what
the process costs before any rows); a reference that only reads the file with
``csv.reader``; and one that bulk-inserts the same lessons with SQLAlchemy Core (no
parsing, no checks).  Time and peak RSS are reported as ratios to the references, which
is what to compare between runs and machines.

API: the fleet's API in a child process (uvicorn), a 1 MiB file uploaded as an admin,
good and then with every row bad, while ``/healthz`` is polled: its latency during the
import next to its latency idle, the upload's answer time and size, the server's RSS.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import httpx
import psutil

from fleet.broker import free_port, wait_for_port

__all__ = ["SEMESTER", "run", "write_inventory", "write_timetable"]

TARGET_BYTES = 10 * 1024 * 1024
PAIRS = 250  # town/rural school pairs, one classroom each
SEMESTER = (date(2026, 9, 1), date(2027, 1, 31))
PERIODS = ("08:00", "08:50", "09:50", "10:40", "13:30", "14:20", "15:10", "16:00")
HEAD = ("序号,类型,星期,日期,开始,结束,学科,年级,教师,主讲学校,主讲教室,接收教室,方式,备注")
SUBJECTS = ("语文", "数学", "英语", "科学", "音乐", "美术", "体育", "道德与法治")


def _town(i: int) -> str:
    return f"基准县第{i}实验小学"


def _rural(i: int) -> str:
    return f"基准县第{i}乡村小学"


ADMIN = ("admin", "bench-import")


def write_inventory(path: Path) -> None:
    lines = ['[[people]]\nusername = "admin"\nname = "管理员"\nrole = "admin"\n'
             f'password = "{ADMIN[1]}"\n',
             '[[counties]]\nname = "基准县"\ncity = "基准市"\n']
    for i in range(PAIRS):
        for name, kind in ((_town(i), "town"), (_rural(i), "rural")):
            lines.append(f'[[counties.schools]]\nname = "{name}"\nkind = "{kind}"\n'
                         f'[[counties.schools.classrooms]]\nname = "同步课堂教室"\n')
    path.write_text("\n".join(lines), encoding="utf-8")


def write_timetable(path: Path, target_bytes: int = TARGET_BYTES) -> int:
    """One-off lessons, no two in one classroom at once; returns the number of rows."""
    days = (SEMESTER[1] - SEMESTER[0]).days + 1
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEAD.split(","))
        while out.tell() < target_bytes:
            pair, slot = rows % PAIRS, rows // PAIRS
            day = SEMESTER[0] + timedelta(days=slot // len(PERIODS) % days)
            start = PERIODS[slot % len(PERIODS)]
            minutes = int(start[:2]) * 60 + int(start[3:]) + 40
            end = f"{minutes // 60:02d}:{minutes % 60:02d}"
            writer.writerow([rows + 1, "单次", "", day.isoformat(), start, end,
                             SUBJECTS[rows % len(SUBJECTS)], "五年级", "基准教师",
                             _town(pair), "同步课堂教室", _rural(pair), "直播",
                             "生成的基准课表"])
            rows += 1
    return rows


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float  # user + system, so a busy machine does not blur the comparison
    rss_mib: float  # peak, sampled every 20 ms
    code: int


def _peak(cmd: list[str]) -> Run:
    started = time.monotonic()
    proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak, cpu = 0, 0.0
    while proc.poll() is None:
        try:
            peak = max(peak, proc.memory_info().rss)
            times = proc.cpu_times()
            cpu = times.user + times.system
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        assert proc.stderr is not None
        sys.stderr.write(proc.stderr.read().decode(errors="replace")[-2000:])
    return Run(elapsed, cpu, peak / 2**20, proc.returncode)


_READ_ONLY = """
import csv, sys
with open(sys.argv[1], encoding="utf-8", newline="") as f:
    for _ in csv.reader(f):
        pass
"""

_BULK_INSERT = """
import csv, sys
from datetime import datetime, timedelta, timezone
from sqlalchemy import insert, select
from sqlalchemy.orm import sessionmaker
from fleet.db.base import make_engine, session_scope
from fleet.db.models import Classroom, Lesson, LessonMode, LessonReceiver, School
tz = timezone(timedelta(hours=8))
engine = make_engine("sqlite:///" + sys.argv[2])
with session_scope(sessionmaker(engine)) as s:
    rooms = {n: c for n, c in s.execute(
        select(School.name, Classroom.id).join(Classroom, Classroom.school_id == School.id))}
    with open(sys.argv[1], encoding="utf-8", newline="") as f:
        rows = csv.reader(f)
        next(rows)
        batch = []
        def flush():
            ids = s.scalars(insert(Lesson).returning(Lesson.id),
                            [b[0] for b in batch]).all()
            s.execute(insert(LessonReceiver), [
                {"lesson_id": i, "classroom_id": b[1]} for i, b in zip(ids, batch)])
            batch.clear()
        for r in rows:
            day = datetime.fromisoformat(r[3])
            h, m = map(int, r[4].split(":"))
            eh, em = map(int, r[5].split(":"))
            starts = day.replace(hour=h, minute=m, tzinfo=tz)
            batch.append(({"source": "timetable:bulk", "main_classroom_id": rooms[r[9]],
                           "starts_at": starts, "ends_at": starts.replace(hour=eh, minute=em),
                           "subject": r[6], "grade": r[7], "teacher": r[8],
                           "mode": LessonMode.LIVE, "cancelled": False}, rooms[r[11]]))
            if len(batch) == 1000:
                flush()
        flush()
engine.dispose()
"""


def _database(workdir: Path, name: str, inventory: Path) -> Path:
    config = workdir / f"{name}.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{workdir / name}.db"\n'
                      f'[actions]\nkey_file = "{workdir / "key"}"\n')
    exe = str(Path(sys.executable).with_name("syncclass-fleet"))
    subprocess.run([exe, "load-inventory", "--config", str(config), str(inventory)],
                   check=True, stdout=subprocess.DEVNULL)
    return config


_SERVE = """
import sys, uvicorn
from sqlalchemy.orm import sessionmaker
from fleet.api import Services, create_api
from fleet.db.base import make_engine
app = create_api(Services(sessions=sessionmaker(make_engine(sys.argv[1]))))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def _healthz_ms(client: httpx.Client) -> float:
    started = time.perf_counter()
    client.get("/healthz").raise_for_status()
    return (time.perf_counter() - started) * 1000


def _api_upload(client: httpx.Client, token: str, data: bytes, name: str,
                server: psutil.Process) -> dict[str, float]:
    """Upload, then poll /healthz (and the job) until the import is over."""
    headers = {"Authorization": f"Bearer {token}"}
    start, end = SEMESTER
    started = time.perf_counter()
    reply = client.post("/api/v1/timetable/import", headers=headers, files={"file": (name, data)},
                        data={"semester_start": start.isoformat(),
                              "semester_end": end.isoformat()})
    answered = time.perf_counter() - started
    body = reply.content
    latencies: list[float] = []
    peak = server.memory_info().rss
    state = reply.json().get("state", "inline")
    while state in ("queued", "running"):
        latencies.append(_healthz_ms(client))
        peak = max(peak, server.memory_info().rss)
        job = client.get(reply.headers["location"], headers=headers)
        state = job.json()["state"]
        body = job.content
        time.sleep(0.02)
    finished = time.perf_counter() - started
    latencies.sort()
    return {"status": reply.status_code, "answer_s": answered, "done_s": finished,
            "state": state, "body_bytes": len(body),
            "healthz_median_ms": latencies[len(latencies) // 2] if latencies else 0.0,
            "healthz_max_ms": latencies[-1] if latencies else 0.0, "polls": len(latencies),
            "rss_mib": peak / 2**20}


def _api(workdir: Path, inventory: Path) -> None:
    _database(workdir, "api", inventory)
    port = free_port()
    proc = psutil.Popen([sys.executable, "-c", _SERVE, f"sqlite:///{workdir / 'api'}.db",
                         str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout=60)
        good = workdir / "one-mib.csv"
        write_timetable(good, 1024 * 1024)
        bad = good.read_text(encoding="utf-8").replace(",直播,", ",直播课,")  # every row
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            token = client.post("/api/v1/auth/login", json={
                "username": ADMIN[0], "password": ADMIN[1]}).json()["access_token"]
            idle = sorted(_healthz_ms(client) for _ in range(50))
            print(f"API (uvicorn, SQLite): /healthz idle median {idle[25]:.1f} ms, "
                  f"max {idle[-1]:.1f} ms")
            for label, data in (("1 MiB, good", good.read_bytes()),
                                ("1 MiB, every row bad", bad.encode())):
                r = _api_upload(client, token, data, "one-mib.csv", proc)
                print(f"  {label:22s} HTTP {r['status']} in {r['answer_s'] * 1000:.0f} ms, "
                      f"{r['state']} after {r['done_s']:.1f} s, answer {r['body_bytes']} B; "
                      f"/healthz during: median {r['healthz_median_ms']:.1f} ms, "
                      f"max {r['healthz_max_ms']:.1f} ms ({r['polls']} polls); "
                      f"server RSS {r['rss_mib']:.0f} MiB")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run() -> None:
    exe = str(Path(sys.executable).with_name("syncclass-fleet"))
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        workdir = Path(tmp)
        inventory = workdir / "inventory.toml"
        write_inventory(inventory)
        timetable = workdir / "timetable.csv"
        rows = write_timetable(timetable)
        size_mib = timetable.stat().st_size / 2**20
        fleet_config = _database(workdir, "fleet", inventory)
        _database(workdir, "bulk", inventory)
        start, end = SEMESTER
        cli = _peak([exe, "import-timetable", "--config", str(fleet_config), str(timetable),
                     "--start", start.isoformat(), "--end", end.isoformat()])
        tiny = workdir / "tiny.csv"
        write_timetable(tiny, 200)  # the header and one row
        _database(workdir, "tiny", inventory)
        small = _peak([exe, "import-timetable", "--config", str(workdir / "tiny.toml"),
                       str(tiny), "--start", start.isoformat(), "--end", end.isoformat()])
        read = _peak([sys.executable, "-c", _READ_ONLY, str(timetable)])
        bulk = _peak([sys.executable, "-c", _BULK_INSERT, str(timetable),
                      str(workdir / "bulk.db")])
        print(f"timetable import: {size_mib:.1f} MiB, {rows} rows, {PAIRS * 2} classrooms "
              "(SQLite)")
        for label, r in (("cli import-timetable", cli), ("cli, a one-row file", small),
                         ("csv.reader only", read), ("bulk insert (Core)", bulk)):
            print(f"  {label:22s} wall {r.wall_s:6.1f} s  cpu {r.cpu_s:6.1f} s  "
                  f"peak RSS {r.rss_mib:6.1f} MiB  exit {r.code}")
        for label, ref in (("read", read), ("bulk", bulk)):
            print(f"  ratio import/{label}:   wall {cli.wall_s / ref.wall_s:5.1f}x  "
                  f"cpu {cli.cpu_s / ref.cpu_s:5.1f}x  RSS {cli.rss_mib / ref.rss_mib:5.1f}x")
        rows_rss = cli.rss_mib - small.rss_mib
        print(f"  the rows' own RSS (import - one-row import): {rows_rss:.0f} MiB, "
              f"{rows_rss / size_mib:.1f}x the file")
        _api(workdir, inventory)
