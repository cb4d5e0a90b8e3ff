"""Enrolment, revocation and replacement on a real Mosquitto with the dynamic security
plugin: codes made through the real API (uvicorn), real ``syncclass-agent enrol`` and
``run`` processes on the simulated classroom, the real fleet ingesting what they send.

The broker starts with nothing but the plugin's admin: the fleet's own client and every
device's client are created through ``$CONTROL/dynamic-security/v1``, never a password
file or a reload.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import uvicorn
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from agent.config import load_config
from agent.contract import DEFAULT_PREFIX, parse_ts
from fleet.app import Fleet
from fleet.broker import Mosquitto, free_port, wait_for_port
from fleet.db.base import session_scope, utcnow
from fleet.db.models import Classroom, Device, School
from fleet.dynsec import DynsecAdmin
from fleet.enrolment import EnrolConfig
from tests.clock import ManualClock
from tests.e2e.world import FLEET_PASSWORD, LUXI, e2e_config, wait_until
from tests.fleet.smtp import SmtpServer

AGENT = str(Path(sys.executable).with_name("syncclass-agent"))
PASSWORD = "syncclass-demo"  # the demo people's password
COUNTY_TECH = "dt-dianjiao"  # 洞头区 电教: enrols classrooms of 洞头区 only
SCHOOL_TECH = "dt-luxi-tech"  # a school technician reads, never enrols
LUXI_SCHOOL = "洞头区鹿西乡小学"


class AgentProcess:
    """``syncclass-agent run`` in its own process; its log is kept for the assertions."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.proc = subprocess.Popen(
            [AGENT, "-v", "run", "--config", str(config), "--simulate"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def said(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)


@dataclass
class Site:
    """A county's fleet behind a dynsec broker, its API on a real port, and mini-PCs."""

    workdir: Path
    broker: Mosquitto
    fleet: Fleet
    clock: ManualClock
    url: str
    agents: list[AgentProcess] = field(default_factory=list)
    _tokens: dict[str, str] = field(default_factory=dict)

    def api(self, method: str, path: str, user: str = COUNTY_TECH,
            body: dict[str, Any] | None = None) -> httpx.Response:
        if user not in self._tokens:
            login = httpx.post(f"{self.url}/api/v1/auth/login",
                               json={"username": user, "password": PASSWORD}, timeout=30)
            assert login.status_code == 200, login.text
            self._tokens[user] = login.json()["access_token"]
        return httpx.request(method, f"{self.url}{path}", json=body, timeout=30,
                             headers={"Authorization": f"Bearer {self._tokens[user]}"})

    def classroom_id(self, school: str = LUXI_SCHOOL) -> int:
        with session_scope(self.fleet.sessions) as session:
            return session.scalars(select(Classroom.id).join(School)
                                   .where(School.name == school)).one()

    def new_code(self, classroom_id: int, **body: Any) -> str:
        reply = self.api("POST", f"/api/v1/classrooms/{classroom_id}/enrol-codes", body=body)
        assert reply.status_code == 201, reply.text
        code: str = reply.json()["code"]
        return code

    def machine(self, name: str) -> tuple[Path, Path]:
        """A mini-PC's config file and state directory (neither exists yet)."""
        return self.workdir / name / "etc" / "agent.toml", self.workdir / name / "state"

    def enrol(self, code: str, name: str) -> subprocess.CompletedProcess[str]:
        config, state = self.machine(name)
        return subprocess.run(
            [AGENT, "enrol", code, "--fleet", self.url, "--config", str(config),
             "--state-dir", str(state)],
            capture_output=True, text=True, timeout=60, check=False,
        )

    def enrolled(self, code: str, name: str) -> tuple[str, AgentProcess]:
        """Enrol the mini-PC ``name`` with ``code`` and start its agent."""
        done = self.enrol(code, name)
        assert done.returncode == 0, done.stderr
        config, _ = self.machine(name)
        agent = AgentProcess(config)
        self.agents.append(agent)
        return load_config(config).device_id, agent

    def wait_telemetry(self, device_id: str, after_session: int = 0) -> None:
        def reporting() -> bool:
            state = self.fleet.states.get(device_id)
            return bool(state and state.online and state.telemetry
                        and state.session > after_session)

        wait_until(f"telemetry from {device_id}", reporting, timeout=30)

    def close(self) -> None:
        for agent in self.agents:
            agent.stop()


@pytest.fixture
def site(tmp_path: Path, pilot_db: Path, smtp_server: SmtpServer) -> Iterator[Site]:
    (tmp_path / "fleet.db").write_bytes(pilot_db.read_bytes())
    with Mosquitto(workdir=tmp_path / "mqtt", dynsec=True) as broker:
        DynsecAdmin(broker.admin_login).ensure_fleet_client(DEFAULT_PREFIX, "fleet",
                                                            FLEET_PASSWORD)
        config = replace(e2e_config(tmp_path, broker.url, smtp_server.port),
                         enrol=EnrolConfig(admin_username="admin",
                                           admin_password=broker.admin_password,
                                           code_ttl_hours=24, max_failures_per_hour=5))
        # Real time (the agents are processes on the real clock), stopped so that a test
        # can let a code expire by moving it.
        clock = ManualClock(utcnow())
        fleet = Fleet(config, clock=clock)
        fleet.start()
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(fleet.api, host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_for_port(port)
        assert fleet.mqtt.wait_ready(10), "the fleet did not subscribe with its dynsec client"
        site = Site(tmp_path, broker, fleet, clock, f"http://127.0.0.1:{port}")
        try:
            yield site
        finally:
            site.close()
            server.should_exit = True
            thread.join(10)
            fleet.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_code_from_the_api_enrols_an_agent_that_reports(site: Site) -> None:
    room = site.classroom_id()
    started = time.monotonic()
    code = site.new_code(room)
    device_id, agent = site.enrolled(code, "luxi-new")
    site.wait_telemetry(device_id)
    print(f"\ncode to first telemetry: {time.monotonic() - started:.2f} s "
          "(API code, enrol process, agent start, broker, fleet ingest)")

    config_path, state_dir = site.machine("luxi-new")
    assert _mode(config_path) == 0o600
    assert _mode(state_dir) == 0o700
    config = load_config(config_path)
    assert config.mqtt.username == device_id
    assert config.mqtt.url == site.broker.url
    assert config.commands.fleet_public_key == site.fleet.signer.public_key_b64
    assert len(config.mqtt.password or "") >= 32  # made on the mini-PC, never typed
    devices = site.api("GET", f"/api/v1/devices?classroom_id={room}").json()
    assert sorted(d["id"] for d in devices) == sorted([LUXI, device_id])
    assert not agent.said("refused")

    # The fleet's command key arrived with the enrolment: a signed command is carried out.
    action = site.api("POST", f"/api/v1/devices/{device_id}/actions/run-check", body={})
    assert action.status_code == 202, action.text
    audit_id = action.json()["id"]
    answered = wait_until("the agent's answer to run-check", lambda: (
        site.api("GET", f"/api/v1/audit/{audit_id}").json()["outcome"] in ("ok", "failed")))
    assert answered
    assert site.api("GET", f"/api/v1/audit/{audit_id}").json()["reply"]["ok"] is True


def test_a_used_code_and_an_expired_code_are_refused(site: Site) -> None:
    room = site.classroom_id()
    code = site.new_code(room)
    assert site.enrol(code, "first").returncode == 0

    again = site.enrol(code.lower().replace("-", ""), "second")  # however it is typed
    assert again.returncode == 1
    assert "注册码已使用过" in again.stderr and "has been used" in again.stderr
    assert not site.machine("second")[0].exists()

    late = site.new_code(room, ttl_hours=1)
    site.clock.advance(hours=1, seconds=1)
    expired = site.enrol(late, "third")
    assert expired.returncode == 1
    assert "expired" in expired.stderr
    assert not site.machine("third")[0].exists()
    with session_scope(site.fleet.sessions) as session:
        in_room = session.scalars(select(Device.id).where(Device.classroom_id == room)).all()
    assert len(in_room) == 2  # the pilot's device and the first enrolment, nothing else

    # A school technician reads only; another county's classroom is not there for him.
    refused = site.api("POST", f"/api/v1/classrooms/{room}/enrol-codes", user=SCHOOL_TECH,
                       body={})
    assert refused.status_code == 403
    other_county = site.classroom_id("乐清市城南实验小学")
    assert site.api("POST", f"/api/v1/classrooms/{other_county}/enrol-codes",
                    body={}).status_code == 404


def test_guessing_codes_is_throttled(site: Site) -> None:
    code = site.new_code(site.classroom_id())
    guesses = ["2345-6789", "ABCD-EFGH", "WXYZ-2345", "not a code", "HJKM-NPQR"]
    answers = [httpx.post(f"{site.url}/api/v1/enrol", timeout=30,
                          json={"code": guess, "password": "x" * 43}).status_code
               for guess in guesses]
    assert answers == [403, 403, 403, 400, 403]

    throttled = site.enrol(code, "during-the-attack")  # even the right code, for now
    assert throttled.returncode == 1
    assert "429" in throttled.stderr and "too many wrong codes" in throttled.stderr
    audit = site.api("GET", "/api/v1/audit", user="admin").json()
    refused = [(e["actor"], e["detail"]) for e in audit if e["outcome"] == "refused"]
    assert sorted(refused) == sorted(
        [("enrol:127.0.0.1", "unknown-code")] * 4 + [("enrol:127.0.0.1", "bad-code")])

    site.clock.advance(hours=1, seconds=1)  # the wrong guesses leave the window
    assert site.enrol(code, "after-the-attack").returncode == 0


def test_revoke_drops_the_connection_and_refuses_the_next(site: Site) -> None:
    device_id, agent = site.enrolled(site.new_code(site.classroom_id()), "to-revoke")
    site.wait_telemetry(device_id)

    reply = site.api("POST", f"/api/v1/devices/{device_id}/revoke",
                     body={"reason": "主机被盗 stolen"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["action"] == "revoke"

    wait_until("the broker dropping the agent",
               lambda: agent.said("lost the connection") and agent.said("Administrative action"))
    wait_until("the agent's next connect refused", lambda: agent.said("refused user"))
    assert agent.said("Not authorized")
    device = site.api("GET", f"/api/v1/devices/{device_id}").json()
    assert device["enabled"] is False
    audit = site.api("GET", f"/api/v1/audit?device_id={device_id}").json()
    revoked = [e for e in audit if e["action"] == "revoke"]
    assert [(e["actor"], e["reason"]) for e in revoked] == [(COUNTY_TECH, "主机被盗 stolen")]


def test_a_device_cannot_publish_under_another_id(site: Site) -> None:
    device_id, _ = site.enrolled(site.new_code(site.classroom_id()), "nosy")
    site.wait_telemetry(device_id)
    config = load_config(site.machine("nosy")[0])

    answers: dict[str, str] = {}
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{device_id}-probe",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(config.mqtt.username, config.mqtt.password)
    client.on_publish = lambda c, u, mid, reason, props: answers.__setitem__(str(mid), str(reason))
    client.on_subscribe = lambda c, u, mid, reasons, props: answers.__setitem__(
        "sub", ",".join(str(r) for r in reasons))
    client.connect("127.0.0.1", site.broker.port)
    client.loop_start()
    try:
        before = site.fleet.states.get(LUXI)
        foreign = client.publish(f"{DEFAULT_PREFIX}/dev/{LUXI}/telemetry",
                                 json.dumps({"device_id": LUXI}), qos=1)
        own = client.publish(f"{DEFAULT_PREFIX}/dev/{device_id}/event", b"{}", qos=1)
        client.subscribe(f"{DEFAULT_PREFIX}/dev/{LUXI}/cmd", qos=1)
        wait_until("the broker's answers", lambda: len(answers) == 3)
    finally:
        client.disconnect()
        client.loop_stop()
    assert answers[str(foreign.mid)] == "Not authorized"
    assert answers[str(own.mid)] == "Success"
    assert answers["sub"] == "Not authorized"
    assert site.fleet.states.get(LUXI) is before  # nothing arrived as 鹿西


def test_a_replacement_keeps_the_classroom_history(site: Site) -> None:
    room = site.classroom_id()
    device_id, old = site.enrolled(site.new_code(room), "old-pc")
    site.wait_telemetry(device_id)
    check = site.api("POST", f"/api/v1/devices/{device_id}/actions/run-check", body={})
    assert check.status_code == 202, check.text
    wait_until("the old machine's check answered", lambda: site.api(
        "GET", f"/api/v1/audit/{check.json()['id']}").json()["outcome"] == "ok")
    old_session = site.fleet.states.get(device_id).session  # type: ignore[union-attr]

    # The mini-PC dies; the technician asks for a code that replaces it.
    rotate = site.api("POST", f"/api/v1/devices/{device_id}/rotate")
    assert rotate.status_code == 201, rotate.text
    assert rotate.json()["replaces"] == device_id
    replaced_at = utcnow()
    new_id, new = site.enrolled(rotate.json()["code"], "new-pc")
    assert new_id == device_id

    # The old machine's password is gone: the broker dropped it and refuses it now.
    wait_until("the old machine refused", lambda: old.said("refused user"))

    def new_machine_reporting() -> bool:
        state = site.fleet.states.get(device_id)
        # The agent's own stamp: these agents run on real time, the fleet on a stopped
        # clock (its telemetry_at is when the message arrived by that clock).
        return bool(state and state.online and state.session > old_session
                    and "ts" in state.telemetry and parse_ts(state.telemetry["ts"]) > replaced_at)

    wait_until("telemetry of the new machine", new_machine_reporting, timeout=30)
    assert not new.said("refused")

    devices = site.api("GET", f"/api/v1/devices?classroom_id={room}").json()
    assert sorted(d["id"] for d in devices) == sorted([LUXI, device_id])
    history = site.api("GET", f"/api/v1/audit?device_id={device_id}").json()
    kinds = [(e["action"], e["outcome"]) for e in reversed(history)]
    assert kinds == [("enrol", "ok"), ("run-check", "ok"), ("enrol", "ok")]
    assert [e["args"]["replaced"] for e in reversed(history) if e["action"] == "enrol"] == [
        False, True]
    # The new machine answers the fleet's commands under the same id.
    again = site.api("POST", f"/api/v1/devices/{device_id}/actions/run-check", body={})
    assert again.status_code == 202, again.text
    wait_until("the new machine's check answered", lambda: site.api(
        "GET", f"/api/v1/audit/{again.json()['id']}").json()["outcome"] == "ok")
