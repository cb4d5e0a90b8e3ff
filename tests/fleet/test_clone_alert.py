"""Two PCs from one disk image, both running as one device: on a real Mosquitto they take
the client id from each other in a loop, and the fleet raises ``device_cloned`` naming
both machines, from the births the real agents sent."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from agent.contract import Kind, decode, encode
from agent.identity import read_identity
from fleet.alerts import AlertEngine
from fleet.alerts.clones import CloneWatch
from fleet.broker import Mosquitto
from fleet.db.base import session_scope
from fleet.db.models import Alert
from tests.agent.agentkit import PREFIX, Subscriber, make_config, running_agent
from tests.agent.test_identity import MACHINE_ID, machine
from tests.fleet.alert_helpers import START, World, build_world


def _alerts(world: World) -> list[Alert]:
    with session_scope(world.sessions) as s:
        rows = [a for a in AlertEngine.query(s) if a.rule == "device_cloned"]
        s.expunge_all()
        return rows


def test_a_takeover_loop_between_two_machines_is_an_alert_naming_both(
        broker: Mosquitto, tmp_path: Path) -> None:
    (tmp_path / "fleet").mkdir()
    world = build_world(tmp_path / "fleet")
    roots = [machine(tmp_path / name, MACHINE_ID, {"enp1s0": mac})
             for name, mac in (("a", "00:1e:06:45:aa:01"), ("b", "00:1e:06:45:bb:02"))]
    digests = {read_identity(root).digest() for root in roots}
    sub = Subscriber(broker.port, [f"{PREFIX}/dev/rural-1/status"])
    # The same config and state on both: what copying the disk gives.  (Each refuses to
    # start through the CLI now; an image of an older agent did not.)
    configs = [make_config(tmp_path / name, broker.url, "rural-1",
                           agent={"identity_root": str(root)})
               for name, root in zip("ab", roots, strict=True)]
    with running_agent(configs[0]), running_agent(configs[1]):
        births = sub.wait_for(lambda m: m[1].get("state") == "online", timeout=30, count=4)
    sub.close()
    seen = [b[1]["machine"] for b in births]
    assert set(seen) == digests, "each birth says which machine it came from"
    for _, body, _ in births:  # what the ingest hands on: the wire contract's decoding
        world.clock.advance(2)
        world.engine.on_status("rural-1", decode("rural-1", Kind.STATUS, encode(body)))
    world.tick_after(600)
    (alert,) = _alerts(world)
    assert alert.severity == "critical"
    for digest in digests:
        assert digest[:8] in alert.summary_zh and digest[:8] in alert.summary_en
    assert "重新注册" in alert.summary_zh and "enrol the extra PC" in alert.summary_en


def test_one_machine_replacing_another_is_no_clone() -> None:
    watch = CloneWatch(window_s=600)

    def birth(machine_hash: str, minutes: float) -> bool:
        found = watch.birth("room-1", {"state": "online", "machine": machine_hash,
                                       "session": 1}, START + timedelta(minutes=minutes))
        return found is not None and found.active

    assert not birth("aaaa", 0) and not birth("aaaa", 1)
    assert not birth("bbbb", 2), "a mini-PC exchanged: the new one only"
    assert not birth("bbbb", 3)
    assert birth("aaaa", 4), "the old one is back: two machines at once"
    assert not birth("bbbb", 30), "the loop ended (re-enrolled) longer than the window ago"
    assert watch.birth("room-1", {"state": "online", "session": 1}, START) is None, \
        "an agent too old to say its machine is never judged"
