"""The operator's one-off jobs, through `syncclass-fleet` itself on a real database."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from fleet.cli import main
from fleet.db.base import make_engine, session_scope
from fleet.db.models import Device, Lesson
from fleet.inventory import DEMO_INVENTORY

EXAMPLE_TIMETABLE = Path(__file__).parents[2] / "provisioning" / "timetable.example.csv"


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "fleet.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "fleet.db"}"\n'
        f'[actions]\nkey_file = "{tmp_path / "key"}"\n'
    )
    return config


def _count(tmp_path: Path, model: type[Device] | type[Lesson]) -> int:
    engine = make_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    with session_scope(sessionmaker(engine)) as session:
        n = session.scalar(select(func.count()).select_from(model)) or 0
    engine.dispose()
    return n


def test_inventory_then_timetable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(_config(tmp_path))
    assert main(["load-inventory", "--config", config, str(DEMO_INVENTORY)]) == 0
    assert _count(tmp_path, Device) == 9
    args = ["import-timetable", "--config", config, str(EXAMPLE_TIMETABLE),
            "--start", "2026-09-01", "--end", "2027-01-20", "--holiday", "2026-10-01"]
    assert main([*args, "--dry-run"]) == 0
    assert _count(tmp_path, Lesson) == 0, "a dry run writes nothing"
    preview = capsys.readouterr().out
    assert "preview, nothing written" in preview and "新增 added" in preview
    assert main(args) == 0
    lessons = _count(tmp_path, Lesson)
    assert lessons > 0
    assert main(args) == 0, "importing the same file again"
    assert _count(tmp_path, Lesson) == lessons, "re-import replaces, never duplicates"


def test_bad_timetable_is_refused_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(_config(tmp_path))
    assert main(["load-inventory", "--config", config, str(DEMO_INVENTORY)]) == 0
    bad = tmp_path / "bad.csv"
    rows = EXAMPLE_TIMETABLE.read_text(encoding="utf-8-sig").splitlines()
    bad.write_text("\n".join([*rows[:3], rows[3].replace("乐清市城南实验小学", "不存在小学")]))
    code = main(["import-timetable", "--config", config, str(bad),
                 "--start", "2026-09-01", "--end", "2027-01-20"])
    assert code == 1
    err = capsys.readouterr().err
    assert "课表有误，未导入 / timetable refused, nothing applied" in err
    assert "第 4 行" in err
    assert _count(tmp_path, Lesson) == 0, "rows 2 and 3 were good, but nothing is applied"


def test_public_key_is_stable_and_bad_config_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(_config(tmp_path))
    assert main(["public-key", "--config", config]) == 0
    first = capsys.readouterr().out.strip()
    assert main(["public-key", "--config", config]) == 0
    assert capsys.readouterr().out.strip() == first
    broken = tmp_path / "broken.toml"
    broken.write_text("[checks]\nlead_minutes = 'soon'\n")
    assert main(["migrate", "--config", str(broken)]) == 2
    assert "checks.lead_minutes" in capsys.readouterr().err


def test_a_refusal_lists_the_first_errors_and_counts_them_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(_config(tmp_path))
    assert main(["load-inventory", "--config", config, str(DEMO_INVENTORY)]) == 0
    capsys.readouterr()
    rows = EXAMPLE_TIMETABLE.read_text(encoding="utf-8-sig").splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([rows[0], *[rows[1].replace(",08:00,", ",28:00,")] * 150]))
    args = ["import-timetable", "--config", config, str(bad),
            "--start", "2026-09-01", "--end", "2027-01-20"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "共 150 处错误" in err and "仅列出前 100 处 / only the first 100 are listed" in err
    assert err.count(": 时间无效") == 100
    assert main([*args, "--max-errors", "5"]) == 1
    assert capsys.readouterr().err.count(": 时间无效") == 5
    assert _count(tmp_path, Lesson) == 0
