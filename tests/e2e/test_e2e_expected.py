"""The inventory's expected devices reach the agents that take them (issue 9).

Real agents on the simulated classroom, a real Mosquitto with production's dynsec set-up,
the wired fleet: an expected camera the classroom lacks is sent in ``set-expected`` after
the agent's birth or after an inventory change, the agent reports it missing, and the
fleet raises ``camera_missing`` for it.  An agent whose birth does not list the capability
(an older agent would refuse the command as unknown) never gets the command.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import select

from agent.app import Agent
from agent.contract import CAP_EXPECTED
from fleet.actions.outcomes import Outcome
from fleet.db.base import session_scope
from fleet.db.models import Alert, AuditEntry
from fleet.expected import ACTOR
from fleet.inventory import DEMO_INVENTORY, load_inventory, parse_document
from tests.e2e.world import LUXI, SHIYAN, STUDENT_CAMERA, World, wait_until
from tests.fleet.pilot import FAST_HASHER

# A Logitech C920 as the Linux backend names it; the simulated classroom has none.
ABSENT = "046d:082d:8A2B3C4D"
EXPECTED = {"cameras": [STUDENT_CAMERA, ABSENT]}


class OlderAgent(Agent):
    """An agent from before set-expected: its birth lists no CAP_EXPECTED (and no
    baseline).  It records every command that reaches it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received: list[bytes] = []
        self._received_lock = threading.Lock()

    def _birth(self) -> dict[str, Any]:
        birth = super()._birth()
        agent = birth["inventory"]["agent"]
        agent["capabilities"] = [c for c in agent["capabilities"] if c != CAP_EXPECTED]
        del agent["expected"]
        return birth

    def _receive_command(self, data: bytes) -> None:
        with self._received_lock:
            self.received.append(data)
        super()._receive_command(data)


def _load_expected(world: World, expected: dict[str, dict[str, list[str]]]) -> None:
    """The demo inventory, loaded again with ``expected`` on the devices it names."""
    doc = parse_document(DEMO_INVENTORY.read_bytes(), DEMO_INVENTORY.name)
    for county in doc["counties"]:
        for school in county["schools"]:
            for room in school["classrooms"]:
                for device in room["devices"]:
                    if device["id"] in expected:
                        device["expected"] = expected[device["id"]]
    with session_scope(world.running.sessions) as session:
        load_inventory(session, doc, hasher=FAST_HASHER)


def _set_expected(world: World, device_id: str) -> list[AuditEntry]:
    with session_scope(world.running.sessions) as session:
        rows = list(session.scalars(select(AuditEntry).where(
            AuditEntry.device_id == device_id, AuditEntry.action == "set-expected")))
        session.expunge_all()
        return rows


def _missing_alert(world: World, device_id: str, dev_id: str) -> Alert | None:
    """The device's camera_missing ticket (one per kind, fleet.alerts.rules) about
    ``dev_id``: its details are the agent's finding, which names the missing camera."""
    found = [a for a in world.alerts("camera_missing", device_id)
             if a.details.get("entity") == f"camera:{dev_id}"]
    return found[0] if found else None


def _answered(world: World, device_id: str) -> AuditEntry | None:
    rows = _set_expected(world, device_id)
    return rows[0] if rows and rows[0].outcome != Outcome.ACCEPTED.value else None


def test_after_the_birth_the_expected_camera_is_sent_and_reported_missing(
        world: World, tmp_path: Path) -> None:
    world.start_fleet()
    _load_expected(world, {LUXI: EXPECTED, SHIYAN: EXPECTED})
    world.start_agent(LUXI)
    world.start_agent(SHIYAN, agent_type=OlderAgent)
    world.wait_reporting(LUXI, SHIYAN)

    entry = wait_until("the agent's answer to set-expected", lambda: _answered(world, LUXI))
    assert (entry.actor, entry.outcome, entry.args) == (ACTOR, Outcome.OK.value, EXPECTED)
    alert = wait_until("camera_missing for the absent camera",
                       lambda: _missing_alert(world, LUXI, ABSENT), between=world.tick)
    assert (alert.device_id, alert.entity, alert.details["reason"]) == (
        LUXI, "camera", "camera_missing")
    assert ABSENT in alert.summary_zh and ABSENT in alert.summary_en
    assert _missing_alert(world, LUXI, STUDENT_CAMERA) is None, "that one is there"

    # The older agent: several collections later it has got no command at all, and its
    # own (learned) baseline raises nothing.
    for _ in range(3):
        world.wait_fresh_telemetry(SHIYAN)
    world.tick()
    older = world.agents[SHIYAN].agent
    assert isinstance(older, OlderAgent)
    assert older.received == [] and _set_expected(world, SHIYAN) == []
    assert world.alerts("camera_missing", SHIYAN) == []


def test_an_inventory_change_is_sent_to_the_running_agent_once(world: World) -> None:
    fleet = world.start_fleet()
    world.start_agent(LUXI)
    world.wait_reporting(LUXI)
    world.wait_fresh_telemetry(LUXI)
    assert _set_expected(world, LUXI) == [], "the inventory names no expected devices yet"

    _load_expected(world, {LUXI: EXPECTED})
    fleet.reload_inventory()
    entry = wait_until("the agent's answer to set-expected", lambda: _answered(world, LUXI))
    assert entry.outcome == Outcome.OK.value
    wait_until("camera_missing for the absent camera",
               lambda: _missing_alert(world, LUXI, ABSENT), between=world.tick)

    fleet.reload_inventory()  # nothing changed for this device: nothing sent again
    world.wait_fresh_telemetry(LUXI)
    assert len(_set_expected(world, LUXI)) == 1

    # A restart: the agent's birth reports the list it kept, so nothing is sent again,
    # and the camera is still missing.
    first = world.agents.pop(LUXI)
    session = first.agent.link.session
    first.agent.stop()
    first.thread.join(timeout=10)
    world.start_agent(LUXI)
    wait_until("the new birth", lambda: (state := fleet.states.get(LUXI)) is not None
               and state.online and state.session > session)
    reported = fleet.states.get(LUXI)
    assert reported is not None
    assert reported.inventory["agent"]["expected"]["cameras"] == sorted(EXPECTED["cameras"])
    cameras = world.wait_fresh_telemetry(LUXI).telemetry["sections"]["cameras"]["devices"]
    assert {d["id"]: d["present"] for d in cameras if d["expected"]} == {
        STUDENT_CAMERA: True, ABSENT: False}
    assert len(_set_expected(world, LUXI)) == 1
