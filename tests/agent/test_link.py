"""The MQTT link against a real Mosquitto: Last Will, broker restarts, refused logins."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

from agent.app import Agent
from agent.contract import Kind
from agent.link import Backoff, Link
from agent.spool import Spool
from fleet.broker import Mosquitto
from tests.agent.agentkit import PREFIX, Message, Subscriber, make_config, running_agent
from tests.waiting import wait_until


def _status(state: str) -> object:
    def pred(m: Message) -> bool:
        return m[0].endswith("/status") and m[1].get("state") == state
    return pred


def test_backoff_is_exponential_with_full_jitter_and_resets() -> None:
    backoff = Backoff(base=1.0, cap=8.0, rng=random.Random(7))
    delays = [backoff.next() for _ in range(200)]
    ceilings = [min(8.0, 2.0**n) for n in range(200)]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays[10:]) > 4.0, "late delays use the whole capped range"
    assert len({round(d, 3) for d in delays}) > 150, "jittered, not synchronised"
    backoff.reset()
    assert backoff.next() <= 1.0


def test_last_will_of_a_killed_agent_carries_its_session(broker: Mosquitto,
                                                         tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f"""
device_id = "room-kill"
[mqtt]
url = "{broker.url}"
[hardware]
backend = "simulated"
[agent]
interval = 1
state_dir = "state"
""")
    sub = Subscriber(broker.port, [f"{PREFIX}/dev/room-kill/status"])
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    sessions = []
    for _ in range(2):  # the session number grows with every connect, across restarts
        sub.messages.clear()
        proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config",
                                 str(config)], env=env, stderr=subprocess.DEVNULL)
        try:
            (_, birth, _), = sub.wait_for(_status("online"))
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            proc.kill()
            proc.wait()
        (_, will, _), = sub.wait_for(_status("offline"))
        assert will["session"] == birth["session"]
        assert will["device_id"] == "room-kill"
        sessions.append(birth["session"])
    assert sessions[1] > sessions[0]
    sub.close()
    late = Subscriber(broker.port, [f"{PREFIX}/dev/room-kill/status"])
    (_, retained, was_retained), = late.wait_for(lambda m: True)
    assert was_retained and (retained["state"], retained["session"]) == ("offline", sessions[1])
    late.close()


def test_broker_restart_loses_no_message(broker: Mosquitto, tmp_path: Path) -> None:
    cfg = make_config(tmp_path, broker.url)
    # The fleet's view: a persistent session, so the broker queues for it while it is away.
    sub = Subscriber(broker.port, [f"{PREFIX}/dev/room-1/telemetry"], client_id="fleet-test",
                     persistent=True)
    with running_agent(cfg) as agent:
        sub.wait_for(lambda m: True, count=2)
        broker.stop()
        spooled_before = agent.spool.last_seq
        assert wait_until(lambda: agent.spool.last_seq >= spooled_before + 2, 10), \
            f"telemetry did not pile up on disk: last seq {agent.spool.last_seq}"
        assert not agent.link.connected
        broker.start()
        assert agent.link.wait_connected(10)
        last = agent.spool.last_seq
        sub.wait_for(lambda m: m[1]["seq"] >= last, timeout=15)
    sub.close()
    seqs = sorted({m[1]["seq"] for m in sub.messages})
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), f"gap in {seqs}"
    assert agent.link.connects >= 2


def test_wrong_password_stops_hammering(tmp_path: Path) -> None:
    with Mosquitto(workdir=tmp_path / "mq", users={"room-1": "right"}) as mq:
        cfg = make_config(tmp_path, mq.url, mqtt={"username": "room-1", "password": "wrong",
                                                  "auth_retry_s": 300})
        spool = Spool(tmp_path / "spool.sqlite")
        link = Link("room-1", cfg.mqtt, spool, on_command=lambda data: None)
        link.start()
        try:
            assert wait_until(lambda: bool(link.next_delay), 10), \
                f"the link never scheduled a retry: {link.last_error!r}"
            assert "refused" in link.last_error and "Not authorized" in link.last_error
            assert link.next_delay >= 150, "bad credentials wait long, not the short backoff"
            assert (link.attempts, link.connects) == (1, 0)
        finally:
            link.stop()
        assert not link.alive, "stop interrupts the long wait"
        spool.close()


def test_unreachable_broker_backs_off_and_spools(broker: Mosquitto, tmp_path: Path) -> None:
    sub = Subscriber(broker.port, [f"{PREFIX}/dev/room-1/telemetry"], client_id="fleet-test",
                     persistent=True)
    broker.stop()
    agent = Agent(make_config(tmp_path, broker.url))
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        assert wait_until(lambda: agent.link.attempts >= 3 and agent.spool.last_seq >= 2, 10), \
            f"{agent.link.attempts} attempts, last seq {agent.spool.last_seq}"
        assert "cannot reach" in agent.link.last_error
        assert 0 < agent.link.next_delay <= 0.5, "short backoff (test config caps it at 0.5 s)"
        broker.start()
        got = sub.wait_for(lambda m: m[1]["seq"] <= 2, count=2, timeout=15)
    finally:
        agent.stop()
        thread.join(10)
        sub.close()
    assert [m[1]["seq"] for m in got] == [1, 2], "spooled while offline, sent in order"


def test_a_full_spool_drains_in_order_through_a_small_window(broker: Mosquitto,
                                                             tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    for _ in range(60):
        spool.append(Kind.EVENT, lambda seq: {"seq": seq})
    cfg = make_config(tmp_path, broker.url, mqtt={"max_inflight": 5})
    sub = Subscriber(broker.port, [f"{PREFIX}/dev/room-1/event"])
    link = Link("room-1", cfg.mqtt, spool, on_command=lambda data: None)
    link.start()
    try:
        got = sub.wait_for(lambda m: True, count=60)
        assert link.flush(10), "every record acknowledged and deleted"
    finally:
        link.stop()
    assert [m[1]["seq"] for m in got] == list(range(1, 61))
    assert (len(spool), link.acked, link.rejected) == (0, 60, 0)
    spool.close()


def test_the_agent_does_not_load_the_fleet_stack() -> None:
    code = ("import sys, agent.cli, agent.app; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'fleet', 'fastapi', 'sqlalchemy', 'numpy', 'pydantic', 'influxdb_client'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_an_idle_link_keeps_its_session(broker: Mosquitto, tmp_path: Path) -> None:
    """The network thread sleeps until the socket, a record or the keepalive needs it: with
    nothing to send for longer than the broker's 1.5 x keepalive, its PINGREQs alone must
    keep the session (else the broker drops it and publishes the Will)."""
    spool = Spool(tmp_path / "spool.sqlite")
    cfg = make_config(tmp_path, broker.url, mqtt={"keepalive": 5})
    sub = Subscriber(broker.port, [f"{PREFIX}/dev/room-1/#"])
    link = Link("room-1", cfg.mqtt, spool, on_command=lambda data: None)
    link.start()
    try:
        assert wait_until(lambda: link.connects == 1, 10)
        # Well past the broker's 1.5 x keepalive: Mosquitto 2.0.11 let a silent client stay
        # 9.5 s, but dropped it within 13.5 s.
        threading.Event().wait(1.5 * cfg.mqtt.keepalive + 6)
        spool.append(Kind.EVENT, lambda seq: {"seq": seq})
        link.wake()
        (event,) = sub.wait_for(lambda m: m[0].endswith("/event"))
        assert event[1]["seq"] == 1
        assert link.connects == 1, "the broker never dropped the idle session"
        # A retained "offline" of an earlier test may greet the subscriber; a Will is live.
        assert not [m for m in sub.messages if _status("offline")(m) and not m[2]], \
            "no Will was published"
    finally:
        link.stop()
        sub.close()
    spool.close()


def test_a_new_record_wakes_the_sleeping_link(broker: Mosquitto, tmp_path: Path) -> None:
    """With a 60 s keepalive the idle thread sleeps 15 s at a time; wake() must end that
    sleep, or the record would wait for it (past this test's deadline)."""
    spool = Spool(tmp_path / "spool.sqlite")
    cfg = make_config(tmp_path, broker.url, mqtt={"keepalive": 60})
    sub = Subscriber(broker.port, [f"{PREFIX}/dev/room-1/event"])
    link = Link("room-1", cfg.mqtt, spool, on_command=lambda data: None)
    link.start()
    try:
        assert wait_until(lambda: link.connects == 1, 10)
        threading.Event().wait(0.5)  # the thread is back asleep after its connect
        spool.append(Kind.EVENT, lambda seq: {"seq": seq})
        link.wake()
        (event,) = sub.wait_for(lambda m: True, timeout=10)
        assert event[1]["seq"] == 1
    finally:
        link.stop()
        sub.close()
    spool.close()
