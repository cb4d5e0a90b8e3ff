"""The fleet cut off from its broker must not blame the classrooms for the silence."""

from __future__ import annotations

from fleet.db.base import session_scope
from tests.e2e.world import LUXI, SHIYAN, World, wait_until


def test_fleet_losing_the_broker_does_not_declare_classrooms_silent(world: World) -> None:
    fleet = world.start_fleet()
    world.start_agent(SHIYAN)
    world.start_agent(LUXI)
    world.wait_reporting(SHIYAN, LUXI)
    world.broker.stop(kill=True)  # a crash: no Last Will is published for anyone
    wait_until("the fleet to notice the broker is gone", lambda: not fleet.mqtt.connected)

    world.clock.advance(seconds=60)  # twenty agent intervals without a word
    world.tick()
    with session_scope(fleet.sessions) as session:
        blamed = [(a.rule, a.device_id)
                  for a in fleet.alerts.query(session, rule="device_silent", include_pending=True)]
    assert blamed == []
