"""`syncclass-fleet`: serve, demo, and the operator's one-off jobs."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from fleet.config import FleetConfig
    from fleet.db.models import Device, EnrolCode
    from fleet.enrolment import Enrolment

__all__ = ["main"]


def _config(args: argparse.Namespace) -> FleetConfig:
    from fleet.config import load_config, make_data_dirs

    cfg = load_config(args.config)
    make_data_dirs(cfg)
    return cfg


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

    run_demo(args.workdir, http_port=args.port, duration_s=args.duration, http_host=args.host)
    return 0


def _migrate(args: argparse.Namespace) -> int:
    url = _config(args).database.url  # a bad config fails before alembic logs anything
    from fleet.db.migrate import upgrade

    upgrade(url)
    return 0


def _in_database(args: argparse.Namespace, job: Callable[[Session], object],
                 refused: type[ValueError], what_zh: str, what_en: str) -> int:
    """Run one all-or-nothing job on the configured database; a refusal changes nothing."""
    url = _config(args).database.url
    from sqlalchemy.orm import sessionmaker

    from fleet.db.base import make_engine, session_scope
    from fleet.db.migrate import upgrade

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
    from fleet.timetable.preview import describe

    semester = Semester(args.start, args.end, tuple(args.holiday), args.semester)

    def job(session: Session) -> object:
        # Read as a stream: a county's whole-year file never sits in memory at once.
        with args.file.open("rb") as stream:
            result = import_timetable(session, stream, args.file.name, semester=semester,
                                      school=args.school, pair=args.pair,
                                      dry_run=args.dry_run,
                                      max_errors=args.max_errors or MAX_ERRORS)
        if args.dry_run:
            session.rollback()
        return describe(result)

    return _in_database(args, job, TimetableError, "课表", "timetable")


def _public_key(args: argparse.Namespace) -> int:
    from fleet.actions.signer import Signer

    print(Signer.from_file(_config(args).actions.key_file).public_key_b64)
    return 0


def _enrolment(config: FleetConfig) -> Enrolment:
    from fleet.actions.signer import Signer
    from fleet.app import enrolment_service
    from fleet.settings import ConfigError

    service = enrolment_service(config, Signer.from_file(config.actions.key_file))
    if service is None:
        raise ConfigError("enrol.admin_username", "设备注册需配置代理管理员 / set the broker's "
                          "dynamic security admin to enrol and revoke devices")
    return service


def _device_job(args: argparse.Namespace, job: Callable[[Session, Enrolment], str]) -> int:
    """One enrolment job on the database and the broker; a refusal changes neither."""
    from fleet.dynsec import DynsecError
    from fleet.enrolment import EnrolRefused

    service = _enrolment(_config(args))
    try:
        return _in_database(args, lambda session: job(session, service), EnrolRefused,
                            "设备注册", "enrolment")
    except DynsecError as exc:
        print(f"{exc}\n未做任何更改 / nothing changed", file=sys.stderr)
        return 1


def _device(session: Session, device_id: str) -> Device:
    from fleet.db.models import Device
    from fleet.enrolment import EnrolRefused

    device = session.get(Device, device_id)
    if device is None:
        raise EnrolRefused("unknown-device", f"未知设备 {device_id}",
                           f"unknown device {device_id}", status=404)
    return device


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _code_text(config: FleetConfig, code: str, row: EnrolCode) -> str:
    fleet_url = config.enrol.fleet_url or f"http://{config.http.host}:{config.http.port}"
    local = row.expires_at.astimezone(ZoneInfo(config.timezone)).strftime("%Y-%m-%d %H:%M")
    return (f"注册码 Enrolment code: {code}\n有效期至 Valid until: {local} (one use)\n"
            f"在教室主机上 On the classroom mini-PC:\n"
            f"  sudo syncclass-agent enrol {code} --fleet {fleet_url}")


def _enrol_code(args: argparse.Namespace) -> int:
    from fleet.enrolment import EnrolRefused
    from fleet.inventory import find_classroom

    config = _config(args)

    def job(session: Session, service: Enrolment) -> str:
        try:
            classroom = find_classroom(session, args.classroom)
        except LookupError as exc:
            raise EnrolRefused("unknown-classroom", str(exc), str(exc), status=404) from None
        replaces = _device(session, args.replace) if args.replace else None
        code, row = service.create_code(session, classroom, _actor(), replaces=replaces,
                                        ttl_hours=args.hours)
        return _code_text(config, code, row)

    return _device_job(args, job)


def _rotate(args: argparse.Namespace) -> int:
    config = _config(args)

    def job(session: Session, service: Enrolment) -> str:
        device = _device(session, args.device)
        code, row = service.create_code(session, device.classroom, _actor(), replaces=device,
                                        ttl_hours=args.hours)
        return (f"{_code_text(config, code, row)}\n"
                f"旧凭据在注册后失效 / the old credentials stop working once it is used")

    return _device_job(args, job)


def _revoke(args: argparse.Namespace) -> int:
    def job(session: Session, service: Enrolment) -> str:
        entry = service.revoke(session, _device(session, args.device), _actor(), args.reason)
        return (f"已吊销 Revoked: {entry.device_id} — 连接已断开、设备已停用 / connection "
                f"dropped, device disabled (audit #{entry.id})")

    return _device_job(args, job)


def _broker_init(args: argparse.Namespace) -> int:
    from fleet.dynsec import AdminLogin, DynsecAdmin, DynsecError
    from fleet.settings import ConfigError

    config = _config(args)
    if not config.enrol.enabled or not config.mqtt.username:
        raise ConfigError("enrol.admin_username", "broker-init needs [enrol] admin_username/"
                          "admin_password and [mqtt] username/password")
    admin = DynsecAdmin(AdminLogin(config.mqtt.url, config.enrol.admin_username,
                                   config.enrol.admin_password, config.mqtt.ca_file))
    try:
        admin.ensure_fleet_client(config.mqtt.prefix, config.mqtt.username,
                                  config.mqtt.password)
    except DynsecError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"代理已就绪 Broker ready: client {config.mqtt.username!r} may read every device")
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
    demo.add_argument("--host", default="127.0.0.1",
                      help="web page address; 0.0.0.0 for a phone on the LAN")
    demo.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    command("migrate", "create or upgrade the database schema", _migrate)
    inv = command("load-inventory", "load schools, pairs, devices, people", _load_inventory)
    inv.add_argument("file", type=Path)
    tt = command("import-timetable", "import a CSV or .xlsx timetable", _import_timetable)
    tt.add_argument("file", type=Path)
    tt.add_argument("--start", type=date.fromisoformat, required=True, help="semester start")
    tt.add_argument("--end", type=date.fromisoformat, required=True, help="semester end")
    tt.add_argument("--holiday", type=date.fromisoformat, action="append", default=[])
    tt.add_argument("--semester", default="", help="semester name (default: its dates)")
    tt.add_argument("--school", default="",
                    help="whose schedule (school or county/school); default: each main school")
    tt.add_argument("--pair", default="", help="or a pair's schedule")
    tt.add_argument("--dry-run", action="store_true",
                    help="print what would change (by date and classroom), write nothing")
    tt.add_argument("--max-errors", type=int, default=None,
                    help="errors to list when refused (default 100; all are counted)")
    command("public-key", "print the fleet's command-signing public key for agents", _public_key)
    command("broker-init", "create the fleet's client and role in the broker's dynamic "
            "security plugin", _broker_init)
    device = sub.add_parser("device", help="enrol, rotate and revoke classroom devices")
    device_sub = device.add_subparsers(dest="device_command", required=True)

    def device_command(name: str, text: str, func: object) -> argparse.ArgumentParser:
        cmd = device_sub.add_parser(name, help=text)
        cmd.set_defaults(func=func)
        cmd.add_argument("--config", type=Path, default=None,
                         help="fleet TOML (default: embedded defaults)")
        return cmd

    code = device_command("enrol-code", "a one-time code that enrols a mini-PC", _enrol_code)
    code.add_argument("--classroom", required=True,
                      help="classroom id, or school/classroom (county/school/classroom)")
    code.add_argument("--replace", metavar="DEVICE", help="the device the new machine replaces")
    code.add_argument("--hours", type=float, default=None, help="validity (default [enrol])")
    rotate = device_command("rotate", "a code that re-enrols DEVICE with new credentials",
                            _rotate)
    rotate.add_argument("device")
    rotate.add_argument("--hours", type=float, default=None, help="validity (default [enrol])")
    revoke = device_command("revoke", "disable DEVICE and drop its broker connection", _revoke)
    revoke.add_argument("device")
    revoke.add_argument("--reason", default="")
    from fleet.grafana.cli import add_grafana_commands

    add_grafana_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # The agent runs on 3.10 (Ubuntu 22.04), so this entry point can be installed there too;
    # fleet modules use 3.11 features, and this module imports nothing but the standard
    # library before here.
    if sys.version_info < (3, 11):  # noqa: UP036
        print("syncclass-fleet 需要 Python 3.11 或更高 / needs Python 3.11 or later "
              f"(this is {sys.version.split()[0]}; the agent alone runs on 3.10)",
              file=sys.stderr)
        return 2
    from fleet.settings import ConfigError

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
