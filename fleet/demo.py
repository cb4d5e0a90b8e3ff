"""`syncclass-fleet demo`: the whole product on this machine, configured by nothing.

A private Mosquitto with the dynamic security plugin production uses (a client and a role
per device, created by the fleet over MQTT; new classrooms enrol with a code), the fleet
on SQLite, a local mailbox (a real SMTP server) standing in for the technicians'
inboxes, and one simulated classroom per device of the Wenzhou pilot inventory, each a
real ``syncclass-agent`` process on the simulated backend: the fleet imports nothing of
the agent but its wire contract, so the demo runs the agents as a classroom would.
The timetable has lessons a few minutes from now and the lead times are shortened, so a
newcomer sees pre-class checks pass and fail and alerts reach technicians within a couple
of minutes.  Scripted faults: 泰顺竹里 loses its camera, 文成西坑's uplink drops 8% of
packets, 乐清城南's microphone goes silent.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import socket
import subprocess
import sys
import threading
from contextlib import ExitStack, suppress
from dataclasses import replace
from datetime import date, datetime, timedelta
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiosmtpd.controller import Controller
from sqlalchemy import select

from fleet.app import Fleet
from fleet.broker import Mosquitto, free_port, wait_for_port
from fleet.config import DatabaseConfig, FleetConfig, HttpConfig
from fleet.db.base import session_scope
from fleet.db.models import AlertEvent, CheckRun
from fleet.dynsec import DynsecAdmin
from fleet.enrolment import EnrolConfig
from fleet.inventory import DEMO_INVENTORY, load_inventory_file, parse_document
from fleet.notify.config import EmailConfig
from fleet.timetable.importer import Semester, import_timetable

__all__ = ["DEMO_FAULTS", "demo_config", "demo_timetable", "run_demo"]

log = logging.getLogger(__name__)
TZ = ZoneInfo("Asia/Shanghai")
FLEET_PASSWORD = "fleet-demo-secret"

#: device id -> faults of its simulated classroom, as the agent's scenario file writes them
#: (``agent/hardware/scenario.py``; seconds after the agent starts).
DEMO_FAULTS: dict[str, list[dict[str, str | int]]] = {
    "taishun-zhuli-sync1": [{"kind": "camera_unplugged", "device": "usb-0000:00:14.0-2",
                             "at": 45}],
    "wencheng-xikeng-sync1": [{"kind": "packet_loss", "value": 8, "at": 0}],
    "yueqing-chengnan-sync1": [{"kind": "mic_silent", "at": 30, "until": 600}],
}

# The simulated backend's default classroom (agent.hardware.scenario.default_scenario),
# which a scenario file must spell out to add faults to it.
_CLASSROOM = """name = "demo-classroom"
[[camera]]
id = "usb-0000:00:14.0-1"
name = "Teacher camera"
serial = "T0001"
bus_path = "usb-0000:00:14.0-1"
[[camera]]
id = "usb-0000:00:14.0-2"
name = "Student camera"
serial = "S0001"
bus_path = "usb-0000:00:14.0-2"
[[microphone]]
id = "usb-0000:00:14.0-3"
name = "Ceiling microphone"
[[speaker]]
id = "pci-0000:00:1f.3"
name = "Classroom speaker"
[[display]]
id = "card0-HDMI-A-1"
"""

# (minutes from now, main school, receiving schools, subject, grade, teacher, mode)
_LESSONS = [
    (6, "洞头区实验小学", ["洞头区鹿西乡小学"], "数学", "二年级", "林晓红", "直播"),
    (7, "泰顺县罗阳第二小学", ["泰顺县竹里乡小学"], "音乐", "二年级", "潘晓燕", "直播"),
    (8, "文成县实验中学", ["文成县西坑初级中学"], "数学", "七年级", "刘建国", "直播"),
    (9, "乐清市城南实验小学", ["乐清市大荆镇山头小学", "乐清市龙西乡小学"], "英语", "四年级",
     "郑一鸣", "直播"),
    (60, "乐清市城南实验小学", ["乐清市大荆镇山头小学", "乐清市龙西乡小学"], "科学", "五年级",
     "郑一鸣", "录播"),
]


def demo_timetable(now: datetime) -> bytes:
    """A one-off CSV timetable (the form schools keep) with lessons minutes from now."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["类型", "日期", "开始", "结束", "学科", "年级", "教师", "主讲学校",
                     "主讲教室", "接收教室", "方式"])
    local = now.astimezone(TZ).replace(second=0, microsecond=0)
    for minutes, main, receivers, subject, grade, teacher, mode in _LESSONS:
        start = local + timedelta(minutes=minutes + 1)
        end = start + timedelta(minutes=40)
        if end.date() != start.date():  # one-off rows are within a day
            end = start.replace(hour=23, minute=59)
        writer.writerow(["单次", start.date().isoformat(), start.strftime("%H:%M"),
                         end.strftime("%H:%M"), subject, grade, teacher, main, "同步课堂教室",
                         "；".join(f"{r}/同步课堂教室" for r in receivers), mode])
    return out.getvalue().encode("utf-8-sig")


def demo_config(workdir: Path, mqtt_url: str, smtp_port: int, http_port: int,
                broker_admin_password: str, http_host: str = "127.0.0.1") -> FleetConfig:
    """Embedded defaults with lead times shortened from 30/10 minutes to 10/2: the first
    lessons are 7-10 minutes away, so their lead windows are open from the start and the
    scripted faults page at once (outside a lesson's window they would be held)."""
    base = FleetConfig()
    return FleetConfig(
        enrol=EnrolConfig(admin_username="admin", admin_password=broker_admin_password,
                          fleet_url=f"http://127.0.0.1:{http_port}"),
        database=DatabaseConfig(url=f"sqlite:///{workdir / 'fleet.db'}"),
        http=HttpConfig(host=http_host, port=http_port),
        mqtt=replace(base.mqtt, url=mqtt_url, username="fleet", password=FLEET_PASSWORD),
        checks=replace(base.checks, lead_minutes=10, spread_minutes=0.5, recheck_lead_minutes=2,
                       recheck_spread_minutes=0.5, answer_timeout_s=60,
                       bandwidth_url=f"http://127.0.0.1:{http_port}/api/v1/bandwidth"),
        actions=replace(base.actions, key_file=workdir / "fleet-ed25519.key"),
        alerts=replace(base.alerts, group_wait_s=5, escalate_after_s=180,
                       reminder_interval_s=300, base_url=f"http://127.0.0.1:{http_port}/"),
        notify=replace(base.notify, backoff_initial_s=5,
                       email=EmailConfig(host="127.0.0.1", port=smtp_port,
                                         sender="同步课堂运维 <syncclass@example.cn>")),
    ).coherent()


class _Mailbox:
    """The technicians' inboxes: a real SMTP server printing what it receives."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received = 0
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content)
        subject = str(make_header(decode_header(msg.get("Subject", ""))))
        self.received += 1
        print(f"  ✉ 邮件 mail → {', '.join(envelope.rcpt_tos)}: {subject}", flush=True)
        return "250 OK"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


def _device_password(device_id: str) -> str:
    return f"{device_id}-demo-password"  # the demo's broker, on loopback only


def _toml(value: str | int | float | list[str]) -> str:
    # A JSON string, number or list of strings is the same TOML value.
    return json.dumps(value, ensure_ascii=False)


def _agent_files(device_id: str, workdir: Path, mqtt_url: str, public_key: str,
                 http_port: int) -> Path:
    """Write one classroom's agent config (and its scenario, if it has faults): the path."""
    home = workdir / "agents" / device_id
    home.mkdir(parents=True, exist_ok=True)
    hardware = ['backend = "simulated"']
    if faults := DEMO_FAULTS.get(device_id):
        tables = "".join("[[fault]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in f.items())
                         for f in faults)
        (home / "scenario.toml").write_text(_CLASSROOM + tables, encoding="utf-8")
        hardware.append('scenario = "scenario.toml"')
    lines = [
        f"device_id = {_toml(device_id)}",
        "[mqtt]", f"url = {_toml(mqtt_url)}", f"username = {_toml(device_id)}",
        f"password = {_toml(_device_password(device_id))}", "backoff_max_s = 5.0",
        "[hardware]", *hardware,
        "[agent]", "interval = 5.0", 'state_dir = "state"',
        "[commands]", f"fleet_public_key = {_toml(public_key)}",
        'allowed_units = ["syncclass-agent"]', 'reboot_command = ["true"]',
        'restart_command = ["true"]',
        "[network]", f"bandwidth_url = {_toml(f'http://127.0.0.1:{http_port}/api/v1/bandwidth')}",
        "[network.targets]", f"fleet = {_toml(f'127.0.0.1:{http_port}')}",
    ]
    path = home / "agent.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _agent_command() -> list[str]:
    """``syncclass-agent`` of this installation (beside this Python), else by module."""
    exe = Path(sys.executable).with_name("syncclass-agent")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "agent.cli"]


def _report_progress(fleet: Fleet, stop: threading.Event) -> None:
    """Print alert history and check verdicts as they happen (the console's story)."""
    last_event, last_check = 0, 0
    while not stop.wait(2.0):
        with session_scope(fleet.sessions) as session:
            for ev in session.scalars(select(AlertEvent).where(AlertEvent.id > last_event)
                                      .order_by(AlertEvent.id)):
                last_event = ev.id
                print(f"  ⚑ 告警 alert #{ev.alert_id} {ev.kind}: {ev.text[:120]}", flush=True)
            for run in session.scalars(select(CheckRun).where(CheckRun.id > last_check,
                                                              CheckRun.verdict.is_not(None))
                                       .order_by(CheckRun.id)):
                last_check = run.id
                print(f"  ✓ 课前检查 check {run.device_id} ({run.phase}): {run.verdict}",
                      flush=True)


def run_demo(workdir: Path, http_port: int = 8080, duration_s: float | None = None,
             http_host: str = "127.0.0.1") -> None:
    """Run the demo in the foreground until Ctrl-C (or for ``duration_s``).

    ``http_host`` 0.0.0.0 serves the page to the LAN too (a phone in the classroom)."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    if http_port == 0 or not _port_free(http_host, http_port):
        http_port = free_port()
    device_ids = _demo_device_ids()
    # Whatever fails half-way, everything started so far is stopped again.
    with ExitStack() as stack:
        mailbox = _Mailbox()
        mailbox.start()
        stack.callback(mailbox.stop)
        broker = stack.enter_context(Mosquitto(workdir=workdir / "mqtt", dynsec=True))
        prefix = FleetConfig().mqtt.prefix
        admin = DynsecAdmin(broker.admin_login)
        admin.ensure_fleet_client(prefix, "fleet", FLEET_PASSWORD)
        for device_id in device_ids:  # what enrolling each classroom would have made
            admin.put_device(prefix, device_id, _device_password(device_id))
        fleet = Fleet(demo_config(workdir, broker.url, mailbox.port, http_port,
                                  broker.admin_password, http_host))
        stack.callback(fleet.close)
        # Served first: the port (a free one for --port 0) is taken before nine agents
        # open connections of their own, and the banner's address answers once shown.
        threading.Thread(target=fleet.serve, name="http", daemon=True).start()
        wait_for_port(http_port)
        now = fleet.clock()
        with session_scope(fleet.sessions) as session:
            load_inventory_file(session, DEMO_INVENTORY)
            semester = Semester(date(now.year, 1, 1), date(now.year, 12, 31), name="演示学期")
            import_timetable(session, demo_timetable(now), "demo-timetable.csv",
                             semester=semester)
        fleet.reload_inventory()
        fleet.start()
        for device_id in device_ids:
            config = _agent_files(device_id, workdir, broker.url, fleet.signer.public_key_b64,
                                  http_port)
            _start_agent(stack, config)
        stop = threading.Event()
        stack.callback(stop.set)
        threading.Thread(target=_report_progress, args=(fleet, stop), daemon=True).start()
        print(_banner(http_port, len(device_ids), workdir, _lan_url(http_host, http_port)),
              flush=True)
        with suppress(KeyboardInterrupt):
            stop.wait(duration_s)  # None: until Ctrl-C


def _start_agent(stack: ExitStack, config: Path) -> None:
    log_file = stack.enter_context((config.parent / "agent.log").open("ab"))
    proc = subprocess.Popen([*_agent_command(), "run", "--config", str(config)],
                            stdout=log_file, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)

    def stop() -> None:
        proc.terminate()  # SIGTERM: the agent says goodbye (Last Will not needed)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    stack.callback(stop)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _demo_device_ids() -> list[str]:
    doc = parse_document(DEMO_INVENTORY.read_bytes(), DEMO_INVENTORY.name)
    return sorted(
        device["id"]
        for county in doc["counties"]
        for school in county["schools"]
        for room in school["classrooms"]
        for device in room["devices"]
    )


def _lan_url(host: str, port: int) -> str | None:
    """The page's address for another device on the LAN, if it is served beyond loopback."""
    if host.startswith("127.") or host in ("localhost", "::1"):
        return None
    if host not in ("0.0.0.0", "::", ""):
        return f"http://{host}:{port}/"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            # connect() on UDP sends nothing: it only picks the interface of the default
            # route, whose address the phone on the same LAN reaches.
            sock.connect(("192.0.2.1", 9))
            address = str(sock.getsockname()[0])
        except OSError:
            return None
    return f"http://{address}:{port}/"


def _banner(http_port: int, agents: int, workdir: Path, lan_url: str | None) -> str:
    lan = f"\n  局域网 LAN:     {lan_url}  (手机 phone on this network)" if lan_url else ""
    return f"""
同步课堂设备监测 演示 / syncclass demo
  网页 web page:  http://127.0.0.1:{http_port}/{lan}
  登录 login:     admin / syncclass-demo
                  (县电教 county: dt-dianjiao, 学校技术员 school: dt-shiyan-tech)
  API:            http://127.0.0.1:{http_port}/docs
  注册新设备 enrol a device: POST /api/v1/classrooms/ID/enrol-codes (as admin), then
                  syncclass-agent enrol CODE --fleet http://127.0.0.1:{http_port} --config …
  {agents} 个模拟教室 simulated classrooms; 课表 lessons start in 7-10 minutes; 课前检查 checks
  begin within 30 s. Faults: 泰顺竹里 camera unplugged (45 s), 文成西坑 8% packet loss,
  乐清城南 microphone silent (30 s).  Data in {workdir}.  Ctrl-C to stop.
"""
