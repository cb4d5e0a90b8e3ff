"""A reboot during a lesson is refused and audited; one after it is executed by the
agent and audited with the agent's answer."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from fleet.actions.outcomes import ActionRefused, Outcome, RefusalCode
from fleet.db.base import session_scope
from fleet.db.models import AuditEntry
from tests.e2e.world import LUXI, MORNING, SHIYAN, LessonRow, World, wait_until


def _audit(world: World, device_id: str) -> list[AuditEntry]:
    with session_scope(world.running.sessions) as session:
        rows = list(session.scalars(
            select(AuditEntry).where(AuditEntry.device_id == device_id).order_by(AuditEntry.id)
        ))
        session.expunge_all()
        return rows


def test_reboot_refused_in_lesson_and_executed_after_it(world: World, tmp_path: Path) -> None:
    fleet = world.start_fleet()
    reboots = tmp_path / "luxi-reboots.log"  # the classroom PC's "reboot": one line each
    world.start_agent(SHIYAN)
    world.start_agent(LUXI, reboot_command=["sh", "-c", f"echo reboot >> {reboots}"])
    world.wait_reporting(SHIYAN, LUXI)
    start = MORNING - timedelta(minutes=5)  # under way: 08:55-09:35
    world.import_lessons(LessonRow(start, "洞头区实验小学", ("洞头区鹿西乡小学",)))

    with pytest.raises(ActionRefused) as refused:
        fleet.actions.request("dt-luxi-tech", LUXI, "reboot")
    assert refused.value.code is RefusalCode.IN_LESSON
    assert "08:55–09:35" in refused.value.message_zh

    world.clock.set(start + timedelta(minutes=41))  # the lesson is over
    accepted = fleet.actions.request("dt-luxi-tech", LUXI, "reboot")
    assert accepted.outcome == Outcome.ACCEPTED.value

    wait_until("the agent's answer in the audit log",
               lambda: _audit(world, LUXI)[-1].outcome != Outcome.ACCEPTED.value)
    wait_until("the reboot command to run", reboots.exists)
    # Executed once: the refused request never left the fleet.
    assert reboots.read_text().splitlines() == ["reboot"]

    first, second = _audit(world, LUXI)
    assert (first.id, first.actor, first.action) == (refused.value.audit_id, "dt-luxi-tech",
                                                      "reboot")
    assert first.outcome == Outcome.REFUSED.value
    assert first.detail.startswith("in_lesson")
    assert first.command_id is None and first.reply is None
    assert second.outcome == Outcome.OK.value
    assert (second.id, second.actor, second.action) == (accepted.id, "dt-luxi-tech", "reboot")
    assert second.command_id == accepted.command_id
    assert second.reply is not None
    assert (second.reply["id"], second.reply["ok"]) == (accepted.command_id, True)
    assert second.answered_at == world.clock()
