"""One forged message from a classroom's own credentials must not blind the fleet to it:
neither a seq far ahead of the agent's nor a stamp from the year 3000."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from agent.contract import Kind, envelope
from agent.hardware.scenario import Fault
from tests.e2e.test_e2e_ingest import RawClient
from tests.e2e.world import (
    LUXI,
    MORNING,
    STUDENT_CAMERA,
    World,
    device_password,
    sample_value,
    wait_until,
)

OK = ReasonCode(PacketTypes.PUBACK, "Success")


def _forged_telemetry(seq: int, when: datetime) -> bytes:
    """Valid against the contract, and claiming every camera is fine."""
    return json.dumps(envelope(LUXI, seq, when) | {"interval": 1, "sections": {
        "cameras": {"ok": True, "devices": [
            {"id": STUDENT_CAMERA, "name": "Student camera", "ok": True, "present": True,
             "fps": 30}]}}}).encode()


def _student_camera_present(world: World) -> bool:
    """What the fleet's stored state (and so the API) says of 鹿西's student camera."""
    state = world.running.states.get(LUXI)
    assert state is not None
    [camera] = [d for d in state.telemetry["sections"]["cameras"]["devices"]
                if d["id"] == STUDENT_CAMERA]
    return bool(camera.get("present", True))


def test_a_forged_seq_jump_does_not_hide_a_real_camera_unplug(world: World) -> None:
    fleet = world.start_fleet()
    luxi = world.start_agent(LUXI)
    world.wait_reporting(LUXI)
    intruder = RawClient(world.broker, LUXI, device_password(LUXI), "e2e-luxi-intruder")
    try:
        assert intruder.publish(LUXI, Kind.TELEMETRY, _forged_telemetry(1_000_000, MORNING)) == OK
    finally:
        intruder.close()
    wait_until("the jump counted as suspicious",
               lambda: sample_value(fleet.mqtt.samples(), "syncclass_ingest_suspicious_total",
                                    reason="seq-jump") == 1)
    luxi.apply(Fault("camera_unplugged", device=STUDENT_CAMERA))
    alert = wait_until("the camera alert to fire",
                       lambda: next(iter(world.alerts(rule="camera_missing")), None),
                       between=world.tick)
    assert alert.device_id == LUXI
    state = world.wait_fresh_telemetry(LUXI)
    assert not _student_camera_present(world)
    assert state.last_seq < 1_000_000 and state.seq_duplicates == 0
    assert fleet.mqtt.dispatcher.duplicates == 0


def test_a_stamp_from_the_year_3000_does_not_freeze_the_device_state(world: World) -> None:
    fleet = world.start_fleet()
    luxi = world.start_agent(LUXI)
    world.wait_reporting(LUXI)
    seq = world.running.states.get(LUXI)
    assert seq is not None
    intruder = RawClient(world.broker, LUXI, device_password(LUXI), "e2e-luxi-intruder")
    try:
        far = datetime(3000, 1, 1, tzinfo=UTC)
        assert intruder.publish(LUXI, Kind.TELEMETRY,
                                _forged_telemetry(seq.last_seq + 1, far)) == OK
    finally:
        intruder.close()
    wait_until("the stamp counted as suspicious",
               lambda: sample_value(fleet.mqtt.samples(), "syncclass_ingest_suspicious_total",
                                    reason="ts-ahead") == 1)
    luxi.apply(Fault("camera_unplugged", device=STUDENT_CAMERA))
    wait_until("the camera alert to fire",
               lambda: world.alerts(rule="camera_missing"), between=world.tick)
    # The state follows the agent's messages after the forgery: the camera is gone there
    # too, stamped with the fleet's own present.
    state = world.wait_fresh_telemetry(LUXI)
    assert not _student_camera_present(world)
    assert state.telemetry_at == world.clock()
    world.running.states.flush()
    restarted = type(world.running.states)(world.running.sessions)
    stored = restarted.get(LUXI)
    assert stored is not None and stored.telemetry_at == state.telemetry_at
