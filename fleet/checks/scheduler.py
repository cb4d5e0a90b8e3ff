"""Sends the pre-class checks and records their answers.

All state lives in the CheckRun table, so a fleet restarted mid-morning neither resends
what it already sent nor forgets what is still due.  Scheduled command ids are derived
from (lesson, device, phase): the table's unique request_id then also stops two fleet
processes that tick together from both sending.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleet.actions.service import Actions
from fleet.checks.config import CheckConfig
from fleet.checks.plan import CheckPlanner, End, load_ends
from fleet.db.base import SessionFactory, session_scope, utcnow
from fleet.db.models import CheckRun, Device, Lesson
from fleet.metrics import Sample
from fleet.sinks import NullSink, Sent

__all__ = [
    "FIRST",
    "MANUAL",
    "NO_ANSWER",
    "RECHECK",
    "CheckScheduler",
    "Unanswered",
    "spread_offset",
]

log = logging.getLogger(__name__)

FIRST, RECHECK, MANUAL = "first", "recheck", "manual"
NO_ANSWER = "no_answer"
_ID_NAMESPACE = uuid.UUID("5b0c4d1e-8a47-4b51-9a53-1c2f8e0f6a10")


def spread_offset(lesson_id: int, device_id: str, window: timedelta) -> timedelta:
    """A stable point in ``window`` for this (lesson, device): same after any restart."""
    digest = hashlib.sha256(f"{lesson_id}/{device_id}".encode()).digest()
    return window * (int.from_bytes(digest[:8], "big") / 2**64)


def _no_answer_finding(timeout_s: float) -> dict[str, Any]:
    minutes = f"{timeout_s / 60:g}"
    return {
        "level": "fail",
        "reason": NO_ANSWER,
        "message_zh": f"设备未在{minutes}分钟内回复课前检查（可能离线或断网）",
        "message_en": f"No answer to the pre-class check within {minutes} min "
        "(device offline or cut off?)",
        "entity": "",
    }


def _refused_finding(payload: dict[str, Any]) -> dict[str, Any]:
    reason, message = payload.get("reason", ""), payload.get("message", "")
    return {
        "level": "fail",
        "reason": "check_refused",
        "message_zh": f"设备拒绝执行课前检查命令（{reason}）：{message}",
        "message_en": f"The device refused the check command ({reason}): {message}",
        "entity": "",
    }


@dataclass(frozen=True)
class Unanswered:
    """A lesson's check that expired without an answer.

    ``final``: no recheck follows, so the end goes into its lesson unheard unless the
    device speaks up by itself.
    """

    request_id: str
    lesson_id: int
    device_id: str
    phase: str
    final: bool
    timeout_s: float

    @property
    def message(self) -> tuple[str, str]:
        finding = _no_answer_finding(self.timeout_s)
        return finding["message_zh"], finding["message_en"]


class CheckScheduler(NullSink):
    def __init__(
        self,
        sessions: SessionFactory,
        actions: Actions,
        config: CheckConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
        on_unanswered: Callable[[Sequence[Unanswered]], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._actions = actions
        self.config = config or CheckConfig()
        self.planner = CheckPlanner(self.config)
        self._clock = clock
        # Silence is a fault too: the alert engine hears of every lesson check that
        # expired unanswered (from this process; the UPDATE decides which process).
        self._on_unanswered = on_unanswered
        self._counts: Counter[tuple[str, str]] = Counter()

    # ------------------------------------------------------------ sending

    def tick(self) -> int:
        """Expire unanswered checks and send every check now due; return how many were
        handed to the connection.  One counts as sent once the broker acknowledged it."""
        now = self._clock()
        expired = self._expire(now)
        if expired and self._on_unanswered is not None:
            self._on_unanswered(expired)
        sent = 0
        for phase, command in self._record_due(now):
            try:
                self._actions.publish(command, on_sent=self._sent(phase))
            except Exception as exc:  # the row stays: it expires to no_answer, then rechecks
                self._counts[("send_failed", phase)] += 1
                log.warning("check %s to %s not sent: %s", command["id"],
                            command["device_id"], exc)
            else:
                sent += 1
        return sent

    def _sent(self, phase: str) -> Sent:
        def told(acked: bool) -> None:
            self._counts[("sent" if acked else "send_failed", phase)] += 1
        return told

    def _record_due(self, now: datetime) -> list[tuple[str, dict[str, Any]]]:
        """Write a CheckRun for every due check, commit, and return the signed commands.

        Written before publishing so that even an instant answer finds its row.
        """
        lead = timedelta(minutes=self.config.lead_minutes)
        due: list[tuple[str, dict[str, Any]]] = []
        try:
            with session_scope(self._sessions) as session:
                lessons = session.scalars(
                    select(Lesson)
                    .where(
                        Lesson.cancelled.is_(False),
                        Lesson.starts_at > now,
                        Lesson.starts_at <= now + lead,
                    )
                    .order_by(Lesson.starts_at, Lesson.id)
                ).all()
                runs: dict[tuple[int | None, str], list[CheckRun]] = defaultdict(list)
                for run in session.scalars(
                    select(CheckRun)
                    .where(CheckRun.lesson_id.in_([lesson.id for lesson in lessons]))
                    .order_by(CheckRun.requested_at, CheckRun.id)
                ):
                    runs[(run.lesson_id, run.device_id)].append(run)
                for ends in load_ends(session, lessons).values():
                    for end in ends:
                        for device in end.devices:
                            history = runs[(end.lesson.id, device.id)]
                            phase = self._phase_due(end.lesson, device, history, now)
                            if phase is not None:
                                command = self._add_run(session, end, ends, device, phase, now)
                                due.append((phase, command))
        except IntegrityError:
            # Another fleet process recorded some of these first; the next tick sees them.
            log.info("checks already recorded by another fleet process; retrying next tick")
            return []
        return due

    def _phase_due(
        self, lesson: Lesson, device: Device, history: Sequence[CheckRun], now: datetime
    ) -> str | None:
        cfg = self.config
        phases = {run.phase for run in history}
        if FIRST not in phases:
            start = lesson.starts_at - timedelta(minutes=cfg.lead_minutes)
            window = timedelta(minutes=cfg.spread_minutes)
            return FIRST if now >= start + spread_offset(lesson.id, device.id, window) else None
        if RECHECK in phases or history[-1].verdict not in cfg.recheck_verdicts:
            return None
        start = lesson.starts_at - timedelta(minutes=cfg.recheck_lead_minutes)
        window = timedelta(minutes=cfg.recheck_spread_minutes)
        return RECHECK if now >= start + spread_offset(lesson.id, device.id, window) else None

    def _add_run(
        self,
        session: Session,
        end: End,
        ends: Sequence[End],
        device: Device,
        phase: str,
        now: datetime,
    ) -> dict[str, Any]:
        command_id = uuid.uuid5(_ID_NAMESPACE, f"{end.lesson.id}/{device.id}/{phase}").hex
        command = self._actions.prepare(
            device.id,
            "run-check",
            self.planner.args(end, ends) | self.planner.window(session, device.id, end.lesson),
            command_id=command_id,
            ttl=timedelta(seconds=self.config.answer_timeout_s),
        )
        session.add(
            CheckRun(
                request_id=command_id,
                lesson_id=end.lesson.id,
                device_id=device.id,
                phase=phase,
                requested_at=now,
            )
        )
        return command

    def _expire(self, now: datetime) -> list[Unanswered]:
        cfg = self.config
        deadline = now - timedelta(seconds=cfg.answer_timeout_s)
        with session_scope(self._sessions) as session:
            # RETURNING: each row is reported by the one process whose UPDATE took it.
            rows = session.execute(
                update(CheckRun)
                .where(CheckRun.verdict.is_(None), CheckRun.requested_at <= deadline)
                .values(verdict=NO_ANSWER, findings=[_no_answer_finding(cfg.answer_timeout_s)])
                .returning(CheckRun.request_id, CheckRun.lesson_id, CheckRun.device_id,
                           CheckRun.phase)
            ).all()
        self._counts[("no_answer", "")] += len(rows)
        rechecked = NO_ANSWER in cfg.recheck_verdicts
        return [
            Unanswered(request_id, lesson_id, device_id, phase,
                       final=phase == RECHECK or not rechecked, timeout_s=cfg.answer_timeout_s)
            for request_id, lesson_id, device_id, phase in rows
            # A manual check has someone watching the page for its answer.
            if lesson_id is not None and phase != MANUAL
        ]

    # ------------------------------------------------------------ answers

    def on_check(self, device_id: str, payload: dict[str, Any]) -> None:
        """A check result: fills its CheckRun, even after a no_answer (late beats never)."""
        request_id = payload.get("request_id")
        if not isinstance(request_id, str):
            return  # a local check at the device, not one the fleet asked for
        with session_scope(self._sessions) as session:
            run = session.scalars(select(CheckRun).where(CheckRun.request_id == request_id)).first()
            if run is None or run.device_id != device_id:
                log.warning("check result %s from %s matches no check sent to it",
                            request_id, device_id)
                self._counts[("unmatched", "")] += 1
                return
            run.verdict = payload["verdict"]
            run.findings = payload["findings"]
            run.probes = payload["probes"]
            run.answered_at = self._clock()
        self._counts[("answered", payload["verdict"])] += 1

    def on_cmd_result(self, device_id: str, payload: dict[str, Any]) -> None:
        """A run-check the agent refused (expired, bad signature...) fails at once."""
        if payload.get("ok") is not False:
            return
        with session_scope(self._sessions) as session:
            run = session.scalars(
                select(CheckRun).where(CheckRun.request_id == payload.get("id"))
            ).first()
            if run is None or run.device_id != device_id or run.verdict is not None:
                return
            run.verdict = "fail"
            run.findings = [_refused_finding(payload)]
            run.answered_at = self._clock()
        self._counts[("answered", "refused")] += 1

    # ------------------------------------------------------------ metrics

    def samples(self) -> Iterable[Sample]:
        helps = {
            "sent": "Pre-class checks the broker acknowledged (PUBACK), by phase.",
            "send_failed": "Pre-class checks recorded but not taken or refused by the broker.",
            "answered": "Pre-class check answers, by verdict (refused: the agent refused).",
            "no_answer": "Pre-class checks that got no answer in time.",
            "unmatched": "Check results matching no check sent to that device.",
        }
        for (what, label), value in sorted(self._counts.items()):
            labels = {"verdict": label} if what == "answered" else {"phase": label} if label else {}
            yield Sample(f"syncclass_checks_{what}_total", helps[what], value, labels=labels)
