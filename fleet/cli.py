"""`syncclass-fleet`: serve, demo, and the operator's one-off jobs."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from agent.settings import ConfigError
from fleet.config import FleetConfig, load_config

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["main"]


def _config(args: argparse.Namespace) -> FleetConfig:
    return load_config(args.config)


def _serve(args: argparse.Namespace) -> int:
    from fleet.app import Fleet

    fleet = Fleet(_config(args))
    fleet.start()
    try:
        fleet.serve()
    finally:
        fleet.close()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from fleet.demo import run_demo

    run_demo(args.workdir, http_port=args.port, duration_s=args.duration)
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from fleet.db.migrate import upgrade

    upgrade(_config(args).database.url)
    return 0


def _in_database(args: argparse.Namespace, job: Callable[[Session], object],
                 refused: type[ValueError], what_zh: str, what_en: str) -> int:
    """Run one all-or-nothing job on the configured database; a refusal changes nothing."""
    from sqlalchemy.orm import sessionmaker

    from fleet.db.base import make_engine, session_scope
    from fleet.db.migrate import upgrade

    url = _config(args).database.url
    upgrade(url)
    engine = make_engine(url)
    try:
        with session_scope(sessionmaker(engine)) as session:
            result = job(session)
    except refused as exc:
        print(f"{what_zh}有误，未导入 / {what_en} refused, nothing applied:\n{exc}",
              file=sys.stderr)
        return 1
    finally:
        engine.dispose()  # SQLite checkpoints its WAL when the last connection closes
    print(result)
    return 0


def _load_inventory(args: argparse.Namespace) -> int:
    from fleet.inventory import InventoryError, load_inventory_file

    return _in_database(args, lambda session: load_inventory_file(session, args.file),
                        InventoryError, "清单", "inventory")


def _import_timetable(args: argparse.Namespace) -> int:
    from fleet.timetable.errors import MAX_ERRORS, TimetableError
    from fleet.timetable.importer import Semester, import_timetable

    semester = Semester(args.start, args.end, tuple(args.holiday))

    def job(session: Session) -> object:
        # Read as a stream: a county's whole-year file never sits in memory at once.
        with args.file.open("rb") as stream:
            return import_timetable(session, stream, args.file.name, semester=semester,
                                    max_errors=args.max_errors or MAX_ERRORS)

    return _in_database(args, job, TimetableError, "课表", "timetable")


def _public_key(args: argparse.Namespace) -> int:
    from fleet.actions.signer import Signer

    print(Signer.from_file(_config(args).actions.key_file).public_key_b64)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncclass-fleet", description="同步课堂设备监测中心 / syncclass fleet service"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, text: str, func: object, config: bool = True) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=text)
        cmd.set_defaults(func=func)
        if config:
            cmd.add_argument("--config", type=Path, default=None,
                             help="fleet TOML (default: embedded defaults)")
        return cmd

    command("serve", "run the fleet service", _serve)
    demo = command("demo", "everything on this machine with simulated classrooms", _demo,
                   config=False)
    demo.add_argument("--workdir", type=Path, default=Path("var/demo"))
    demo.add_argument("--port", type=int, default=8080, help="web page port (0: any free)")
    demo.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    command("migrate", "create or upgrade the database schema", _migrate)
    inv = command("load-inventory", "load schools, pairs, devices, people", _load_inventory)
    inv.add_argument("file", type=Path)
    tt = command("import-timetable", "import a CSV or .xlsx timetable", _import_timetable)
    tt.add_argument("file", type=Path)
    tt.add_argument("--start", type=date.fromisoformat, required=True, help="semester start")
    tt.add_argument("--end", type=date.fromisoformat, required=True, help="semester end")
    tt.add_argument("--holiday", type=date.fromisoformat, action="append", default=[])
    tt.add_argument("--max-errors", type=int, default=None,
                    help="errors to list when refused (default 100; all are counted)")
    command("public-key", "print the fleet's command-signing public key for agents", _public_key)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"配置错误 / configuration error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
