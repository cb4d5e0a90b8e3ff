"""Remote actions requested by people: vetted, signed, sent, audited, answered.

Every request becomes one audit row, refused or not, before anything is sent, and the
agent's ``cmd/result`` completes it.  The audit is append-only: an outcome, once final,
never changes; every answer is a row of its own (``AuditAnswer``), so a late answer or
the agent's refusal of a replayed capture of the command stands beside the original
outcome instead of overwriting it.  The scheduler's own run-checks use ``prepare`` and
``publish`` directly: their record is the CheckRun, not the audit log.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from agent.contract import Kind, encode, topic
from fleet.actions.args import validate_args
from fleet.actions.config import ActionConfig
from fleet.actions.outcomes import ActionRefused, Outcome, RefusalCode
from fleet.actions.ratelimit import first_exceeded
from fleet.actions.safety import busy_lesson, busy_refusal, refused_within
from fleet.actions.signer import Signer, build_command
from fleet.bandwidth import BandwidthAccess
from fleet.db.base import SessionFactory, session_scope, utcnow
from fleet.db.models import AuditAnswer, AuditEntry, CheckRun, Device, Lesson
from fleet.metrics import Sample
from fleet.sinks import NullSink, Publisher, Sent

__all__ = ["ActionRefused", "Actions", "Outcome", "RefusalCode", "RunCheckArgs"]

log = logging.getLogger(__name__)

#: Fills a manual run-check's args for a device (the checks planner: its lesson's peer
#: and bandwidth), so "re-run the check" from the API checks what the lesson needs.
RunCheckArgs = Callable[[Session, Device, datetime], dict[str, Any]]


class Actions(NullSink):
    def __init__(
        self,
        sessions: SessionFactory,
        publisher: Publisher,
        signer: Signer,
        config: ActionConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
        *,
        run_check_args: RunCheckArgs | None = None,
        bandwidth: BandwidthAccess | None = None,
    ) -> None:
        self._sessions = sessions
        self._publisher = publisher
        self._signer = signer
        self.config = config or ActionConfig()
        self._clock = clock
        self._run_check_args = run_check_args
        self._bandwidth = bandwidth
        # Serialises vetting and recording so two requests of one process cannot both
        # squeeze under a rate limit.
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    # ------------------------------------------------------------ commands

    def prepare(
        self,
        device_id: str,
        name: str,
        args: dict[str, Any],
        *,
        command_id: str | None = None,
        ttl: timedelta | None = None,
    ) -> dict[str, Any]:
        """A signed command, not yet sent; a run-check's ``bandwidth_url`` gets the
        device's token for the fleet's endpoint (not in ``args``: the audit keeps no token).
        """
        ttl = ttl or timedelta(seconds=self.config.command_ttl_s)
        now = self._clock()
        if name == "run-check" and self._bandwidth is not None and args.get("bandwidth_url"):
            url = self._bandwidth.presign(args["bandwidth_url"], device_id, now + ttl)
            args = {**args, "bandwidth_url": url}
        command = build_command(device_id, name, args, ttl, now, command_id=command_id)
        return self._signer.sign(command)

    def publish(self, command: dict[str, Any], on_sent: Sent | None = None) -> None:
        """Hand a signed command to the publisher; ``on_sent`` hears the broker's PUBACK."""
        self._publisher.publish(
            topic(self.config.prefix, command["device_id"], Kind.CMD), encode(command), qos=1,
            on_sent=on_sent,
        )

    # ------------------------------------------------------------ requests

    def request(
        self,
        actor: str,
        device_id: str,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        force: bool = False,
        reason: str = "",
        system: bool = False,
    ) -> AuditEntry:
        """Vet, audit and send one action; raise ActionRefused (already audited) if refused.

        The returned entry is detached, outcome ``accepted`` (or ``failed`` when the
        broker connection refused the publish).  A ``system`` action (the fleet's own,
        such as sending the inventory's expected devices after every birth) is not rate
        limited: births, not a person's clicks, bound how many there are.
        """
        if not actor:
            raise ValueError("an action needs an actor")
        args = {} if args is None else args
        reason = reason.strip()
        with self._lock, session_scope(self._sessions) as session:
            now = self._clock()
            entry = AuditEntry(
                at=now,
                actor=actor[:64],
                action=str(name)[:32],
                device_id=str(device_id)[:64],
                args=args if isinstance(args, dict) else {"invalid": repr(args)[:200]},
                forced=force,
                reason=reason,
                outcome=Outcome.ACCEPTED.value,
                answers=[],  # none yet; set so the detached entry never lazy-loads them
            )
            command: dict[str, Any] | None = None
            refused: ActionRefused | None = None
            try:
                device = self._vet(session, actor, device_id, name, args, force, reason, now,
                                   limited=not system)
                command = self._record(session, entry, device, name, args, now)
            except ActionRefused as refusal:
                entry.outcome = Outcome.REFUSED.value
                entry.detail = refusal.detail
                refused = refusal
            # Added only now: vetting counts the audit rows, and must not count this one.
            session.add(entry)
            session.flush()
            session.expunge(entry)
        if refused is not None:
            refused.audit_id = entry.id
            self._counts[("refused", refused.code.value)] += 1
            log.info("action refused: %s %s on %s: %s", actor, name, device_id, refused.code)
            raise refused
        assert command is not None
        self._counts[("accepted", name)] += 1
        try:
            self.publish(command)
        except Exception as exc:  # the connection's error type is the publisher's business
            log.warning("action %s on %s not sent: %s", name, device_id, exc)
            self._close(entry, Outcome.FAILED, f"未能发送 / not sent: {exc}")
        return entry

    def _vet(
        self,
        session: Session,
        actor: str,
        device_id: str,
        name: str,
        args: Any,
        force: bool,
        reason: str,
        now: datetime,
        *,
        limited: bool = True,
    ) -> Device:
        validate_args(name, args, self.config.allowed_units)
        device = session.get(Device, device_id)
        if device is None:
            raise ActionRefused(
                RefusalCode.UNKNOWN_DEVICE, f"没有设备 {device_id!r}", f"no device {device_id!r}"
            )
        if not device.enabled:
            raise ActionRefused(
                RefusalCode.DEVICE_DISABLED,
                f"设备 {device_id} 已停用",
                f"device {device_id} is disabled",
            )
        lead = refused_within(name, timedelta(minutes=self.config.lead_minutes))
        if lead is not None:  # disruptive: fleet.actions.safety
            if force and not reason:
                raise ActionRefused(
                    RefusalCode.REASON_REQUIRED, "强制执行必须填写原因", "forcing needs a reason"
                )
            lesson = busy_lesson(session, device.classroom_id, now, lead)
            if lesson is not None and not force:
                raise busy_refusal(lesson, now, lead, device.classroom.school.timezone)
        exceeded = first_exceeded(
            session, self.config.limits, actor=actor, device_id=device_id, action=name, now=now
        ) if limited else None
        if exceeded is not None:
            limit = exceeded.limit
            who_zh, who_en = ("该设备", "this device") if limit.scope == "device" else ("你", "you")
            raise ActionRefused(
                RefusalCode.RATE_LIMITED,
                f"操作过于频繁：{who_zh}{limit.window_s:.0f}秒内最多{limit.count}次，"
                f"请{exceeded.retry_after_s:.0f}秒后再试",
                f"too many actions: at most {limit.count} per {limit.window_s:.0f} s for "
                f"{who_en}; retry in {exceeded.retry_after_s:.0f} s",
                retry_after_s=exceeded.retry_after_s,
            )
        return device

    def _record(
        self,
        session: Session,
        entry: AuditEntry,
        device: Device,
        name: str,
        args: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        """Sign the command and write what must exist before its answer can arrive."""
        if name == "run-check":
            if not args and self._run_check_args is not None:
                args = self._run_check_args(session, device, now)
            lesson_id = args.get("lesson_id")
            if lesson_id is not None and session.get(Lesson, lesson_id) is None:
                raise ActionRefused(
                    RefusalCode.BAD_ARGS, f"没有课程 {lesson_id}", f"no lesson {lesson_id}"
                )
        command = self.prepare(device.id, name, args)
        entry.command_id = command["id"]
        entry.args = args
        if name == "run-check":
            session.add(
                CheckRun(
                    request_id=command["id"],
                    lesson_id=args.get("lesson_id"),
                    device_id=device.id,
                    phase="manual",
                    requested_at=now,
                )
            )
        return command

    def _close(self, entry: AuditEntry, outcome: Outcome, detail: str) -> None:
        with session_scope(self._sessions) as session:
            session.execute(
                update(AuditEntry)
                .where(AuditEntry.id == entry.id, AuditEntry.outcome == Outcome.ACCEPTED.value)
                .values(outcome=outcome.value, detail=detail)
            )
        entry.outcome, entry.detail = outcome.value, detail

    # ------------------------------------------------------------ answers

    def on_cmd_result(self, device_id: str, payload: dict[str, Any]) -> None:
        """Record the answer; it settles the outcome only if the action still awaits one."""
        command_id = payload.get("id")
        ok = payload.get("ok") is True
        outcome = Outcome.OK if ok else Outcome.FAILED
        reason, message = str(payload.get("reason", "")), str(payload.get("message", ""))
        now = self._clock()
        with session_scope(self._sessions) as session:
            entry = session.scalars(
                select(AuditEntry).where(AuditEntry.command_id == command_id)
            ).first()
            if entry is None:
                return  # the scheduler's run-checks are not audited
            if entry.device_id != device_id:
                log.warning("cmd/result for %s came from %s: ignored", command_id, device_id)
                return
            # Conditional, so a timeout written by another process at the same moment and
            # this answer cannot both settle the entry.
            settled = session.execute(
                update(AuditEntry)
                .where(AuditEntry.id == entry.id, AuditEntry.outcome == Outcome.ACCEPTED.value)
                .values(
                    outcome=outcome.value,
                    reply=payload,
                    answered_at=now,
                    detail="" if ok else f"{reason}: {message}",
                )
                .execution_options(synchronize_session=False)
            )
            first = int(getattr(settled, "rowcount", 0) or 0) == 1
            session.add(AuditAnswer(audit_id=entry.id, received_at=now, ok=ok,
                                    reason=reason[:32], message=message, settled=first,
                                    reply=payload))
        if first:
            self._counts[("answered", outcome.value)] += 1
        else:
            self._counts[("late", reason or outcome.value)] += 1
            log.warning("answer to %s on %s after its outcome was final (%s %s): recorded, "
                        "outcome kept", command_id, device_id, outcome.value, reason)

    def tick(self) -> int:
        """Mark accepted actions that got no answer in time as ``timeout``; return how many."""
        now = self._clock()
        deadline = now - timedelta(seconds=self.config.answer_timeout_s)
        with session_scope(self._sessions) as session:
            result = session.execute(
                update(AuditEntry)
                .where(AuditEntry.outcome == Outcome.ACCEPTED.value, AuditEntry.at <= deadline)
                .values(
                    outcome=Outcome.TIMEOUT.value,
                    detail=f"设备未在{self.config.answer_timeout_s:.0f}秒内回复 / "
                    f"no answer within {self.config.answer_timeout_s:.0f} s",
                )
            )
            count = int(getattr(result, "rowcount", 0) or 0)
        self._counts[("answered", Outcome.TIMEOUT.value)] += count
        return count

    # ------------------------------------------------------------ metrics

    def samples(self) -> Iterable[Sample]:
        for (stage, what), value in sorted(self._counts.items()):
            if stage == "accepted":
                yield Sample("syncclass_actions_accepted_total", "Actions signed and sent.",
                             value, labels={"action": what})
            elif stage == "refused":
                yield Sample("syncclass_actions_refused_total", "Actions refused by the fleet.",
                             value, labels={"code": what})
            elif stage == "late":
                yield Sample("syncclass_actions_late_answers_total",
                             "Answers after an action's outcome was final (late, or a "
                             "replayed command refused): recorded, outcome kept.",
                             value, labels={"reason": what})
            else:
                yield Sample("syncclass_actions_answered_total",
                             "Action outcomes: agent answers and timeouts.",
                             value, labels={"outcome": what})
