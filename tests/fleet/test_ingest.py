"""The MQTT ingest against a real Mosquitto: what gets through, what is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.contract import DEFAULT_PREFIX, MAX_PAYLOAD_BYTES, Kind, encode, envelope
from fleet.broker import Mosquitto
from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import Classroom, County, Device, School, SchoolKind
from fleet.ingest import MqttIngest
from fleet.ingest.validate import Validator, load_enabled_devices
from fleet.state import DeviceStates
from tests.e2e.world import sample_value
from tests.fleet.db import fresh_db
from tests.fleet.ingest_helpers import (
    DeviceClient,
    Recorder,
    inventory_db,
    make_ingest,
    status,
    telemetry,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("ingests_closed")


@pytest.fixture
def sessions(tmp_path: Path) -> SessionFactory:
    return inventory_db(tmp_path)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def ingest(broker: Mosquitto, sessions: SessionFactory, recorder: Recorder) -> MqttIngest:
    return make_ingest(broker, sessions, [recorder])


def test_every_kind_from_a_known_device_reaches_the_sinks(
    broker: Mosquitto, ingest: MqttIngest, recorder: Recorder
) -> None:
    dev = DeviceClient(broker, "dev-a")
    dev.send(Kind.STATUS, status("dev-a", "online", 1, 0))
    dev.send(Kind.TELEMETRY, telemetry("dev-a", 1))
    dev.send(Kind.EVENT, envelope("dev-a", 2) | {"type": "device_removed", "entity": "camera:c0"})
    dev.send(Kind.CHECK, envelope("dev-a", 3) | {"verdict": "pass", "probes": {},
                                                 "findings": [], "request_id": None})
    dev.send(Kind.CMD_RESULT, envelope("dev-a", 4) | {"id": "c1", "ok": True})
    assert wait_until(lambda: len(recorder.messages) == 5)
    assert [(k, d) for k, d, _ in recorder.messages] == [
        ("status", "dev-a"), ("telemetry", "dev-a"), ("event", "dev-a"), ("check", "dev-a"),
        ("cmd/result", "dev-a")]
    assert recorder.of("telemetry")[0]["sections"]["system"]["cpu_pct"] == 12.5
    assert dict(ingest.dispatcher.validator.refused) == {}
    dev.close()


def test_bad_messages_are_refused_counted_and_the_next_good_one_passes(
    broker: Mosquitto, ingest: MqttIngest, recorder: Recorder
) -> None:
    attacker = DeviceClient(broker, "dev-b")
    tel = f"{DEFAULT_PREFIX}/dev/dev-b/telemetry"
    attacker.send_raw(tel, b"{not json")
    attacker.send_raw(tel, json.dumps(telemetry("dev-b", 1) | {"schema": 99}).encode())
    # Spoofed: dev-b's connection claims to be dev-a inside the payload.
    attacker.send_raw(tel, encode(telemetry("dev-a", 1)))
    attacker.send_raw(f"{DEFAULT_PREFIX}/dev/ghost/telemetry", encode(telemetry("ghost", 1)))
    attacker.send_raw(f"{DEFAULT_PREFIX}/dev/dev-off/telemetry", encode(telemetry("dev-off", 1)))
    attacker.send_raw(tel, b"{" + b" " * MAX_PAYLOAD_BYTES + b"}")
    attacker.send_raw(tel, encode(envelope("dev-b", 1) | {"interval": 15}))  # no sections
    attacker.send_raw(f"{DEFAULT_PREFIX}/dev/bad id!/telemetry", b"{}")
    attacker.send(Kind.TELEMETRY, telemetry("dev-b", 2))
    assert wait_until(lambda: len(recorder.of("telemetry")) == 1)
    assert recorder.messages[0][1] == "dev-b"
    assert recorder.of("telemetry")[0]["seq"] == 2
    assert dict(ingest.dispatcher.validator.refused) == {
        "bad-json": 1, "bad-schema": 1, "device-mismatch": 1, "unknown-device": 2,
        "too-large": 1, "missing-field": 1, "bad-device-id": 1}
    samples = {(s.name, tuple(s.labels.items())): s.value for s in ingest.samples()}
    assert samples[("syncclass_ingest_refused_total", (("reason", "unknown-device"),))] == 2
    assert samples[("syncclass_ingest_received_total", ())] == 9
    attacker.close()


def test_a_failing_sink_does_not_starve_the_others(
    broker: Mosquitto, sessions: SessionFactory, recorder: Recorder
) -> None:
    class Broken(Recorder):
        def on_telemetry(self, device_id: str, payload: dict[str, Any]) -> None:
            raise RuntimeError("disk full")

    ingest = make_ingest(broker, sessions, [Broken(), recorder])
    dev = DeviceClient(broker, "dev-a")
    dev.send(Kind.TELEMETRY, telemetry("dev-a", 1))
    dev.send(Kind.TELEMETRY, telemetry("dev-a", 2))
    assert wait_until(lambda: len(recorder.of("telemetry")) == 2)
    assert ingest.dispatcher.sink_errors == {"Broken": 2}
    dev.close()


def test_reload_devices_admits_a_device_added_later(
    broker: Mosquitto, sessions: SessionFactory, ingest: MqttIngest, recorder: Recorder
) -> None:
    from fleet.db.base import session_scope
    from fleet.db.models import Device

    dev = DeviceClient(broker, "dev-off")
    dev.send(Kind.TELEMETRY, telemetry("dev-off", 1))
    assert wait_until(lambda: ingest.dispatcher.validator.refused["unknown-device"] == 1)
    with session_scope(sessions) as s:
        device = s.get(Device, "dev-off")
        assert device is not None
        device.enabled = True
    ingest.reload_devices()
    dev.send(Kind.TELEMETRY, telemetry("dev-off", 2))
    assert wait_until(lambda: len(recorder.of("telemetry")) == 1)
    dev.close()


def test_retained_status_and_last_will_drive_online_offline(
    broker: Mosquitto, sessions: SessionFactory
) -> None:
    # The device connected before the fleet: only the retained birth tells the fleet.
    dev = DeviceClient(broker, "dev-a", will=status("dev-a", "offline", 7, 0))
    dev.send(Kind.STATUS, status("dev-a", "online", 7, 10, interval=15,
                                 inventory={"cameras": [{"id": "cam0"}]}), retain=True)
    states = DeviceStates(sessions)
    # Shared subscriptions never carry retained messages: status is subscribed normally.
    make_ingest(broker, sessions, [states], gate=states, share_group="fleet")
    assert wait_until(lambda: (s := states.get("dev-a")) is not None and s.online)
    snap = states.get("dev-a")
    assert snap is not None
    assert snap.session == 7
    assert snap.inventory == {"cameras": [{"id": "cam0"}]}
    dev.kill()
    assert wait_until(lambda: (s := states.get("dev-a")) is not None and not s.online)


def test_late_offline_of_an_older_session_is_ignored(
    broker: Mosquitto, sessions: SessionFactory
) -> None:
    states = DeviceStates(sessions)
    make_ingest(broker, sessions, [states], gate=states)
    dev = DeviceClient(broker, "dev-b")
    dev.send(Kind.STATUS, status("dev-b", "online", 2, 20), retain=True)
    # The Last Will of connection 1, delivered late (e.g. through a bridge).
    dev.send(Kind.STATUS, status("dev-b", "offline", 1, 5), retain=True)
    dev.send(Kind.TELEMETRY, telemetry("dev-b", 21))
    assert wait_until(lambda: (s := states.get("dev-b")) is not None and s.last_seq == 21)
    snap = states.get("dev-b")
    assert snap is not None
    assert (snap.online, snap.session) == (True, 2)
    assert states.stale_status_ignored == 1
    dev.close()


def test_seq_gap_counted_and_duplicate_dropped(
    broker: Mosquitto, sessions: SessionFactory, recorder: Recorder
) -> None:
    states = DeviceStates(sessions)
    ingest = make_ingest(broker, sessions, [states, recorder], gate=states)
    dev = DeviceClient(broker, "dev-a")
    for seq in (1, 2, 5, 5, 3):
        dev.send(Kind.TELEMETRY, telemetry("dev-a", seq))
    assert wait_until(lambda: ingest.dispatcher.duplicates == 1 and len(recorder.messages) == 4)
    assert [p["seq"] for p in recorder.of("telemetry")] == [1, 2, 5, 3]
    snap = states.get("dev-a")
    assert snap is not None
    assert (snap.last_seq, snap.seq_gaps, snap.seq_duplicates) == (5, 1, 1)  # 4 still missing
    dev.close()


def test_two_instances_of_one_share_group_split_the_telemetry(
    broker: Mosquitto, sessions: SessionFactory
) -> None:
    first, second = Recorder(), Recorder()
    # Each process has its own instance name: one client id is one broker session.
    make_ingest(broker, sessions, [first], share_group="g", instance="a")
    make_ingest(broker, sessions, [second], share_group="g", instance="b")
    dev = DeviceClient(broker, "dev-a")
    dev.send(Kind.STATUS, status("dev-a", "online", 1, 0))
    for seq in range(1, 41):
        dev.send(Kind.TELEMETRY, telemetry("dev-a", seq))
    assert wait_until(lambda: len(first.of("telemetry")) + len(second.of("telemetry")) == 40)
    seqs_one = {p["seq"] for p in first.of("telemetry")}
    seqs_two = {p["seq"] for p in second.of("telemetry")}
    assert seqs_one.isdisjoint(seqs_two)
    assert seqs_one | seqs_two == set(range(1, 41))
    assert seqs_one and seqs_two  # the broker really split them
    # Status is not shared: both instances know the device is online.
    assert len(first.of("status")) == len(second.of("status")) == 1
    dev.close()


def test_commands_are_published_and_subscriptions_survive_a_broker_restart(
    broker: Mosquitto, sessions: SessionFactory, ingest: MqttIngest, recorder: Recorder
) -> None:
    dev = DeviceClient(broker, "dev-a")
    got = dev.subscribe(Kind.CMD)
    ingest.publish(dev.topic(Kind.CMD), b'{"name":"reboot"}')
    assert wait_until(lambda: got == [b'{"name":"reboot"}'])
    dev.close()

    broker.restart()
    assert wait_until(lambda: ingest.connects >= 2 and ingest.connected, timeout=10)
    dev = DeviceClient(broker, "dev-a")
    dev.send(Kind.TELEMETRY, telemetry("dev-a", 1))
    assert wait_until(lambda: len(recorder.of("telemetry")) == 1)
    dev.close()


def test_a_slow_sink_holds_the_broker_back_and_nothing_is_dropped(
    broker: Mosquitto, sessions: SessionFactory
) -> None:
    import threading

    busy, release = threading.Event(), threading.Event()

    class Slow(Recorder):
        def on_telemetry(self, device_id: str, payload: dict[str, Any]) -> None:
            busy.set()
            release.wait(10)
            super().on_telemetry(device_id, payload)

    slow = Slow()
    # Three delivered and not acknowledged at most: the broker keeps the rest queued.
    ingest = make_ingest(broker, sessions, [slow], queue_size=6, receive_maximum=3,
                         ack_interval_s=0.1)
    dev = DeviceClient(broker, "dev-a")
    dev.send(Kind.TELEMETRY, telemetry("dev-a", 1))
    assert busy.wait(5)
    for seq in range(2, 11):
        dev.send(Kind.TELEMETRY, telemetry("dev-a", seq))
    assert wait_until(lambda: ingest.dispatcher.received == 3)
    assert ingest.connected  # the network thread was never blocked by the sink
    assert ingest.dispatcher.received == 3, "the broker kept to the Receive Maximum"
    release.set()
    assert wait_until(lambda: len(slow.messages) == 10)
    assert [p["seq"] for _, _, p in slow.messages] == list(range(1, 11))
    dev.close()


@pytest.mark.parametrize("share_group", ["", "g"])
def test_a_fixed_client_id_keeps_the_session_across_a_fleet_restart(
    broker: Mosquitto, sessions: SessionFactory, share_group: str
) -> None:
    first = Recorder()
    ingest = make_ingest(broker, sessions, [first], client_id="fleet-1", share_group=share_group)
    ingest.close()
    dev = DeviceClient(broker, "dev-a")
    dev.send(Kind.TELEMETRY, telemetry("dev-a", 1))  # while the fleet restarts
    again = Recorder()
    ingest = make_ingest(broker, sessions, [again], client_id="fleet-1", share_group=share_group)
    assert wait_until(lambda: len(again.of("telemetry")) == 1)
    dev.close()


def test_inventory_changes_behind_the_ingest_are_picked_up(tmp_path: Path) -> None:
    # Devices enrolled or disabled through the API or another fleet process are heard
    # (or refused) within refresh_s, without a reload call; a database that is away
    # leaves the last known inventory in force.
    sessions = fresh_db(tmp_path)
    with session_scope(sessions) as s:
        county = County(name="洞头区")
        school = School(county=county, name="鹿西乡小学", kind=SchoolKind.RURAL)
        s.add(Classroom(school=school, name="同步课堂教室"))
    now = [0.0]
    validator = Validator(DEFAULT_PREFIX, lambda: load_enabled_devices(sessions),
                          monotonic=lambda: now[0], refresh_s=30)
    topic = f"{DEFAULT_PREFIX}/dev/luxi-1/telemetry"
    assert validator.check(topic, encode(telemetry("luxi-1", 1))) is None
    with session_scope(sessions) as s:
        s.add(Device(id="luxi-1", classroom_id=1))
    now[0] = 29.0
    assert validator.check(topic, encode(telemetry("luxi-1", 2))) is None, "too early"
    now[0] = 30.0
    assert validator.check(topic, encode(telemetry("luxi-1", 3))) is not None
    sessions.kw["bind"].dispose()
    (tmp_path / "fleet.db").rename(tmp_path / "gone.db")
    (tmp_path / "fleet.db").mkdir()  # the database is now unreachable
    now[0] = 61.0
    assert validator.check(topic, encode(telemetry("luxi-1", 4))) is not None
    assert validator.refused["unknown-device"] == 2


def test_a_wave_of_commands_is_acknowledged_while_telemetry_waits(
    broker: Mosquitto, sessions: SessionFactory
) -> None:
    # The ingest is stuck on a message with a backlog behind it, as on a Monday at 08:00
    # when every classroom reports and checks go out: commands have their own connection,
    # so the broker acknowledges them all while the telemetry still waits.
    import threading
    import time

    busy, release = threading.Event(), threading.Event()

    class Stuck(Recorder):
        def on_telemetry(self, device_id: str, payload: dict[str, Any]) -> None:
            busy.set()
            release.wait(60)

    ingest = make_ingest(broker, sessions, [Stuck()], receive_maximum=50, queue_size=100)
    dev = DeviceClient(broker, "dev-a")
    for seq in range(1, 201):
        dev.send(Kind.TELEMETRY, telemetry("dev-a", seq))
    assert busy.wait(5)
    wave, answers = 4_000, list[bool]()
    started = time.monotonic()
    for n in range(wave):
        ingest.publish(f"{DEFAULT_PREFIX}/dev/room-{n}/cmd", b'{"name":"run-check"}',
                       on_sent=answers.append)
    assert wait_until(lambda: len(answers) == wave, timeout=60)
    took = time.monotonic() - started
    assert all(answers)
    assert ingest.dispatcher.received < 200, "the telemetry backlog was still waiting"
    assert sample_value(ingest.samples(), "syncclass_commands_acked_total") >= wave
    print(f"\n{wave} commands acknowledged by the broker in {took:.2f} s behind a backlog "
          f"({ingest.commands.granted} in flight at a time)")
    release.set()
    dev.close()


def test_closing_with_a_backlog_is_prompt_and_the_session_keeps_the_rest(
    broker: Mosquitto, sessions: SessionFactory
) -> None:
    # Stopping (systemd's SIGTERM) does not wait for a backlog to drain: what was handled
    # is acknowledged, the rest is delivered again to the same session's next start.
    import time

    class Slow(Recorder):
        def on_telemetry(self, device_id: str, payload: dict[str, Any]) -> None:
            time.sleep(0.05)
            super().on_telemetry(device_id, payload)

    slow = Slow()
    ingest = make_ingest(broker, sessions, [slow], instance="one")
    dev = DeviceClient(broker, "dev-a")
    for seq in range(1, 301):
        dev.send(Kind.TELEMETRY, telemetry("dev-a", seq))
    assert wait_until(lambda: len(slow.of("telemetry")) >= 20)
    ingest.close()
    before = {p["seq"] for p in slow.of("telemetry")}
    assert len(before) < 300, "closing waited for the whole backlog"
    after = Recorder()
    make_ingest(broker, sessions, [after], instance="one")
    assert wait_until(lambda: before | {p["seq"] for p in after.of("telemetry")}
                      == set(range(1, 301)), timeout=20)
    dev.close()
