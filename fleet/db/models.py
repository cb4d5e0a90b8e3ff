"""The fleet's tables.

Inventory (counties, schools, pairs, classrooms, devices, people), the timetable of
synchronous lessons, device state, checks, alerts with their history, silences and
maintenance windows, the notification outbox, remote-action audit, API tokens and the
login throttle and audit.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Time,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from fleet.db.base import Base, utcnow

__all__ = [
    "ALERT_UNRESOLVED",
    "Alert",
    "AlertEvent",
    "AlertState",
    "ApiToken",
    "AuditAnswer",
    "AuditEntry",
    "CalendarDay",
    "CheckRun",
    "Classroom",
    "County",
    "Device",
    "DeviceState",
    "EnrolCode",
    "FleetSecret",
    "Lesson",
    "LessonMode",
    "LessonReceiver",
    "MaintenanceWindow",
    "Notification",
    "NotificationStatus",
    "Pair",
    "PairMember",
    "Person",
    "PersonSchool",
    "Role",
    "Schedule",
    "School",
    "SchoolKind",
    "Silence",
    "Term",
]

DEFAULT_TZ = "Asia/Shanghai"


class SchoolKind(enum.StrEnum):
    TOWN = "town"  # 城镇学校: gives the lesson
    RURAL = "rural"  # 乡村小规模学校 / 薄弱初中: receives it


class Role(enum.StrEnum):
    ADMIN = "admin"
    COUNTY_TECH = "county_tech"  # 县电教: sees and acts on their county
    SCHOOL_TECH = "school_tech"  # 学校技术员: sees and acts on their schools


class LessonMode(enum.StrEnum):
    LIVE = "live"  # 直播: both ends live, uplink from the main classroom
    RECORDED = "recorded"  # 录播: receivers play a recording; only they are checked


class AlertState(enum.StrEnum):
    # Seen but inside its up-delay: not yet an alert anyone is told about (reports skip it).
    PENDING = "pending"
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class NotificationStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # gave up after retries: shown on the page and in /metrics
    # Carried inside a digest (``digest_id``); becomes sent or failed with the digest.
    MERGED = "merged"


# ---------------------------------------------------------------- inventory


class County(Base):
    __tablename__ = "county"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)  # 洞头区
    city: Mapped[str] = mapped_column(String(64), default="")  # 温州市
    # County 电教 group robots; the alert channels post here on escalation.
    dingtalk_webhook: Mapped[str | None] = mapped_column(String(512))
    dingtalk_secret: Mapped[str | None] = mapped_column(String(128))
    wecom_webhook: Mapped[str | None] = mapped_column(String(512))
    schools: Mapped[list[School]] = relationship(back_populates="county")


class School(Base):
    __tablename__ = "school"
    id: Mapped[int] = mapped_column(primary_key=True)
    county_id: Mapped[int] = mapped_column(ForeignKey("county.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[SchoolKind] = mapped_column(Enum(SchoolKind, native_enum=False))
    address: Mapped[str] = mapped_column(String(256), default="")
    timezone: Mapped[str] = mapped_column(String(64), default=DEFAULT_TZ)
    dingtalk_webhook: Mapped[str | None] = mapped_column(String(512))
    dingtalk_secret: Mapped[str | None] = mapped_column(String(128))
    wecom_webhook: Mapped[str | None] = mapped_column(String(512))
    county: Mapped[County] = relationship(back_populates="schools")
    classrooms: Mapped[list[Classroom]] = relationship(back_populates="school")
    __table_args__ = (UniqueConstraint("county_id", "name"),)


class Pair(Base):
    """结对学校: a town school and the rural school(s) it teaches with."""

    __tablename__ = "pair"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    town_school_id: Mapped[int] = mapped_column(ForeignKey("school.id"), index=True)
    town_school: Mapped[School] = relationship()
    members: Mapped[list[PairMember]] = relationship(cascade="all, delete-orphan")


class PairMember(Base):
    __tablename__ = "pair_member"
    pair_id: Mapped[int] = mapped_column(ForeignKey("pair.id"), primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id"), primary_key=True)
    school: Mapped[School] = relationship()


class Classroom(Base):
    __tablename__ = "classroom"
    id: Mapped[int] = mapped_column(primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))  # 三(2)班 / 同步课堂教室
    school: Mapped[School] = relationship(back_populates="classrooms")
    devices: Mapped[list[Device]] = relationship(back_populates="classroom")
    __table_args__ = (UniqueConstraint("school_id", "name"),)


class Device(Base):
    """A classroom endpoint running the agent; ``id`` is its MQTT identity (username)."""

    __tablename__ = "device"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    classroom_id: Mapped[int] = mapped_column(ForeignKey("classroom.id"), index=True)
    # Where the paired classroom reaches this endpoint for the network check.
    address: Mapped[str] = mapped_column(String(256), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    note: Mapped[str] = mapped_column(String(256), default="")
    # The inventory's expected devices, role -> ids as the agent names them
    # (agent.contract.check_expected); None: the agent's own (configured or learned).
    expected: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    classroom: Mapped[Classroom] = relationship(back_populates="devices")


class Person(Base):
    __tablename__ = "person"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[Role] = mapped_column(Enum(Role, native_enum=False))
    county_id: Mapped[int | None] = mapped_column(ForeignKey("county.id"))  # county_tech
    email: Mapped[str] = mapped_column(String(256), default="")
    phone: Mapped[str] = mapped_column(String(32), default="")
    password_hash: Mapped[str] = mapped_column(String(256), default="")  # argon2
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    schools: Mapped[list[PersonSchool]] = relationship(cascade="all, delete-orphan")


class PersonSchool(Base):
    """A school a person looks after; ``appointed`` marks the school's technician."""

    __tablename__ = "person_school"
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), primary_key=True)
    school_id: Mapped[int] = mapped_column(ForeignKey("school.id"), primary_key=True)
    appointed: Mapped[bool] = mapped_column(Boolean, default=True)
    school: Mapped[School] = relationship()


# ---------------------------------------------------------------- timetable


class Term(Base):
    """A semester (学期): lessons and reports are kept per semester."""

    __tablename__ = "semester"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)  # 2026学年第二学期
    start: Mapped[date] = mapped_column(Date)
    end: Mapped[date] = mapped_column(Date)
    # Set when the semester was ended (possibly before ``end``): lessons after are cancelled.
    ended_at: Mapped[datetime | None]


class Schedule(Base):
    """One school's (or one pair's) timetable for one semester: what an import replaces.

    ``owner`` is ``school:<id>`` or ``pair:<id>``; exactly one of the ids is set.
    """

    __tablename__ = "schedule"
    id: Mapped[int] = mapped_column(primary_key=True)
    semester_id: Mapped[int] = mapped_column(ForeignKey("semester.id"), index=True)
    owner: Mapped[str] = mapped_column(String(32))
    school_id: Mapped[int | None] = mapped_column(ForeignKey("school.id"))
    pair_id: Mapped[int | None] = mapped_column(ForeignKey("pair.id"))
    filename: Mapped[str] = mapped_column(String(255), default="")  # of the latest import
    imported_at: Mapped[datetime | None]
    # Its file's rows are kept (``ScheduleRow``), so a calendar change re-expands them;
    # False for schedules last imported before rows were kept.
    rows_stored: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    semester: Mapped[Term] = relationship()
    __table_args__ = (UniqueConstraint("semester_id", "owner"),)


class ScheduleRow(Base):
    """A lesson row of a schedule's latest file (weekly, or one date): what a calendar
    day published or removed after the import is re-expanded from (调休, a closure lifted).
    """

    __tablename__ = "schedule_row"
    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedule.id"), index=True)
    weekday: Mapped[int | None] = mapped_column(Integer)  # 1 = Monday; None: one date
    day: Mapped[date | None] = mapped_column(Date)
    starts: Mapped[time] = mapped_column(Time)
    ends: Mapped[time] = mapped_column(Time)
    subject: Mapped[str] = mapped_column(String(64))
    grade: Mapped[str] = mapped_column(String(32), default="")
    teacher: Mapped[str] = mapped_column(String(64), default="")
    mode: Mapped[LessonMode] = mapped_column(Enum(LessonMode, native_enum=False))
    main_classroom_id: Mapped[int] = mapped_column(ForeignKey("classroom.id"))
    receiver_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    main_classroom: Mapped[Classroom] = relationship()


class Lesson(Base):
    """One synchronous lesson on one date (weekly patterns are expanded on import)."""

    __tablename__ = "lesson"
    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(64))  # 数学
    grade: Mapped[str] = mapped_column(String(32), default="")  # 二年级
    teacher: Mapped[str] = mapped_column(String(64), default="")
    starts_at: Mapped[datetime] = mapped_column(index=True)
    ends_at: Mapped[datetime]
    mode: Mapped[LessonMode] = mapped_column(Enum(LessonMode, native_enum=False))
    main_classroom_id: Mapped[int] = mapped_column(ForeignKey("classroom.id"), index=True)
    # The file it was last imported from (timetable:课表.xlsx) or "manual"; informative.
    source: Mapped[str] = mapped_column(String(128), default="")
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("schedule.id"), index=True)
    # A change made on the day ("cancelled", "moved", "added"; "moved_away": the old copy of
    # a moved lesson), which a later import keeps and shows as a conflict.
    edit: Mapped[str] = mapped_column(String(16), default="", server_default="")
    # Where and when the schedule put a moved lesson: how an import still finds it.
    planned_at: Mapped[datetime | None]
    planned_classroom_id: Mapped[int | None] = mapped_column(ForeignKey("classroom.id"))
    main_classroom: Mapped[Classroom] = relationship(foreign_keys=[main_classroom_id])
    receivers: Mapped[list[LessonReceiver]] = relationship(cascade="all, delete-orphan")


class LessonReceiver(Base):
    __tablename__ = "lesson_receiver"
    lesson_id: Mapped[int] = mapped_column(ForeignKey("lesson.id"), primary_key=True)
    classroom_id: Mapped[int] = mapped_column(ForeignKey("classroom.id"), primary_key=True)
    classroom: Mapped[Classroom] = relationship()


class CalendarDay(Base):
    """A date of a place's school calendar: closed (节假日/停课; alerts there are muted), or
    a make-up workday (调休) running weekday ``runs_weekday``'s lessons (1 = Monday).

    The place is ``level`` (province / county / school / classroom) and ``place_id``
    (0 for the province).
    """

    __tablename__ = "calendar_day"
    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(Date, index=True)
    name: Mapped[str] = mapped_column(String(64), default="")
    level: Mapped[str] = mapped_column(String(16), default="province")
    place_id: Mapped[int] = mapped_column(Integer, default=0)
    runs_weekday: Mapped[int | None] = mapped_column(Integer)
    __table_args__ = (UniqueConstraint("day", "level", "place_id"),)


# ---------------------------------------------------------------- device state and checks


class DeviceState(Base):
    """The latest known state of a device (the ingest keeps it in memory and flushes)."""

    __tablename__ = "device_state"
    device_id: Mapped[str] = mapped_column(ForeignKey("device.id"), primary_key=True)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    session: Mapped[int] = mapped_column(Integer, default=0)
    agent_version: Mapped[str] = mapped_column(String(32), default="")
    last_seen: Mapped[datetime | None]
    last_seq: Mapped[int] = mapped_column(Integer, default=-1)
    seq_gaps: Mapped[int] = mapped_column(Integer, default=0)
    seq_duplicates: Mapped[int] = mapped_column(Integer, default=0)
    inventory: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    telemetry: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    telemetry_at: Mapped[datetime | None]
    # The agent's ts of the current session's birth: tells a reinstalled agent (whose
    # session count started again) from a late birth of an old connection.
    birth_at: Mapped[datetime | None]
    # Fleet time the current online/offline was learnt: a Last Will carries the time its
    # connection began, so the offline point is when the fleet received it.
    status_at: Mapped[datetime | None]


class DeviceSeqMark(Base):
    """The highest seq of a device that one fleet process (``holder``: its MQTT client id)
    handled itself and made durable.  Its persistent session delivers again only what it
    had not acknowledged, so this, not the shared ``device_state.last_seq`` another
    process moves on, says which of its redeliveries it handled already (issue 7)."""

    __tablename__ = "device_seq_mark"
    holder: Mapped[str] = mapped_column(String(128), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)


class CheckRun(Base):
    """One pre-class (or manual) check of one device."""

    __tablename__ = "check_run"
    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)  # the command id
    lesson_id: Mapped[int | None] = mapped_column(ForeignKey("lesson.id"), index=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("device.id"), index=True)
    phase: Mapped[str] = mapped_column(String(16))  # first / recheck / manual
    requested_at: Mapped[datetime]
    # Indexed: the page's live updates look for answers newer than the last poll.
    answered_at: Mapped[datetime | None] = mapped_column(index=True)
    # pass / warn / fail from the agent, or no_answer when the deadline passed.
    verdict: Mapped[str | None] = mapped_column(String(16))
    findings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    probes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# ---------------------------------------------------------------- alerts


class Alert(Base):
    """One ticket per (rule, entity): fires, is acknowledged, resolves, may reopen."""

    __tablename__ = "alert"
    # Two fleet processes may both delete a pending ticket whose fault cleared; the one
    # that finds it gone has nothing left to do.
    __mapper_args__ = {"confirm_deleted_rows": False}  # noqa: RUF012
    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(256), index=True)
    rule: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))  # critical / warning / info
    state: Mapped[AlertState] = mapped_column(Enum(AlertState, native_enum=False), index=True)
    classroom_id: Mapped[int | None] = mapped_column(ForeignKey("classroom.id"), index=True)
    device_id: Mapped[str | None] = mapped_column(String(64), index=True)
    lesson_id: Mapped[int | None] = mapped_column(ForeignKey("lesson.id"))
    entity: Mapped[str] = mapped_column(String(128), default="")  # camera:usb-0000:00:14.0-1
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    summary_zh: Mapped[str] = mapped_column(Text, default="")
    summary_en: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    ack_comment: Mapped[str | None] = mapped_column(Text)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    last_notified_at: Mapped[datetime | None]
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    suppressed_by: Mapped[str | None] = mapped_column(String(128))  # why it is muted now
    # Resolved by a person while the fault was still reported: the fault's further reports
    # are absorbed (no reopening, no new message) until the device reports it clear.
    awaiting_device: Mapped[bool] = mapped_column(Boolean, default=False,
                                                  server_default=false())
    # Up/down delays: since when the fault has been seen again (pending, or returning to
    # a resolved ticket) and since when it has been seen clear (firing, about to resolve).
    pending_since: Mapped[datetime | None]
    clear_since: Mapped[datetime | None]
    # A notification waiting out the classroom's group_wait: its kind and since when.
    notice_kind: Mapped[str | None] = mapped_column(String(16))
    notice_since: Mapped[datetime | None]
    # The latest signal's particulars: the agent's message, value/threshold, check findings.
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The agent (session, seq) of the message that last changed the ticket: an older one
    # handled later by another fleet process is stale news (fleet.alerts.lifecycle).
    order_session: Mapped[int | None] = mapped_column(Integer)
    order_seq: Mapped[int | None] = mapped_column(BigInteger)  # a rebuilt spool: epoch ms
    events: Mapped[list[AlertEvent]] = relationship(
        cascade="all, delete-orphan", order_by="AlertEvent.at"
    )


class AlertEvent(Base):
    """The alert's history: fired, notified, acknowledged, escalated, resolved, reopened."""

    __tablename__ = "alert_event"
    __mapper_args__ = {"confirm_deleted_rows": False}  # noqa: RUF012  (as Alert's)
    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alert.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64), default="system")
    text: Mapped[str] = mapped_column(Text, default="")


class Silence(Base):
    """A one-off mute of alerts whose labels match, between two instants."""

    __tablename__ = "silence"
    id: Mapped[int] = mapped_column(primary_key=True)
    matchers: Mapped[dict[str, Any]] = mapped_column(JSON)  # label -> value (equality)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))
    comment: Mapped[str] = mapped_column(Text, default="")


class MaintenanceWindow(Base):
    """A recurring mute: weekdays and a local time range (nights, weekends)."""

    __tablename__ = "maintenance_window"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    matchers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    weekdays: Mapped[list[int]] = mapped_column(JSON)  # 0 = Monday
    start_time: Mapped[str] = mapped_column(String(5))  # "22:00" local
    end_time: Mapped[str] = mapped_column(String(5))  # "06:00" (may wrap midnight)
    timezone: Mapped[str] = mapped_column(String(64), default=DEFAULT_TZ)


class Notification(Base):
    """The outbox: every message to a person or robot, with retries and its fate."""

    __tablename__ = "notification"
    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alert.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))  # email / dingtalk / wecom / webhook
    target: Mapped[str] = mapped_column(String(512))  # address or webhook URL
    kind: Mapped[str] = mapped_column(String(32))  # firing / reminder / escalation / resolved
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[NotificationStatus] = mapped_column(
        Enum(NotificationStatus, native_enum=False), index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(index=True)  # live updates poll it
    # The digest that carried (or carries) this notice, when its target had no slot free.
    digest_id: Mapped[int | None] = mapped_column(ForeignKey("notification.id"), index=True)


class NotifyTarget(Base):
    """One channel target (a robot, a mailbox, a webhook) as the rate limiter sees it.

    Its row is the lock every fleet process takes before counting and taking a send slot,
    and it holds the throttle a refusal for speed imposed, shared by all processes."""

    __tablename__ = "notify_target"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of channel+target
    channel: Mapped[str] = mapped_column(String(32))
    blocked_until: Mapped[datetime | None]
    blocked_reason: Mapped[str] = mapped_column(Text, default="")


class NotifySlot(Base):
    """One request made to a target: the limiter counts these within the window."""

    __tablename__ = "notify_slot"
    __table_args__ = (Index("ix_notify_slot_target_at", "target_key", "at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    target_key: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
    notification_id: Mapped[int] = mapped_column(Integer)  # no FK: slots outlive pruned rows


# ---------------------------------------------------------------- actions and people API


class AuditEntry(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))  # reboot / restart-service / run-check
    device_id: Mapped[str | None] = mapped_column(String(64), index=True)
    command_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    # accepted / refused (by the fleet's safety rules) / ok / failed (the agent's answer)
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")
    reply: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    answered_at: Mapped[datetime | None]
    # Every cmd/result for this action, settling or not (late, replayed): append-only.
    answers: Mapped[list[AuditAnswer]] = relationship(
        order_by="AuditAnswer.id", lazy="selectin", viewonly=True
    )


class AuditAnswer(Base):
    """One agent answer (cmd/result) to an audited action, as received.

    The first answer while the action awaits one settles the entry's outcome
    (``settled``); a later one (after a timeout, or an answer to a replayed capture of the
    command) is only recorded here, so an outcome never changes once final.
    """

    __tablename__ = "audit_answer"
    id: Mapped[int] = mapped_column(primary_key=True)
    audit_id: Mapped[int] = mapped_column(ForeignKey("audit.id"), index=True)
    received_at: Mapped[datetime]
    ok: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(32), default="")
    message: Mapped[str] = mapped_column(Text, default="")
    settled: Mapped[bool] = mapped_column(Boolean)
    reply: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class EnrolCode(Base):
    """A one-time code that enrols a mini-PC into a classroom (``fleet.enrolment``).

    Only the code's SHA-256 is kept; the person who made it saw the code once.
    ``device_id`` set means the code replaces that device's machine (same id, so the
    classroom's history stays with it) instead of adding a new device.
    """

    __tablename__ = "enrol_code"
    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    classroom_id: Mapped[int] = mapped_column(ForeignKey("classroom.id"), index=True)
    device_id: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_by: Mapped[str | None] = mapped_column(String(64))  # the device it enrolled


class ApiToken(Base):
    __tablename__ = "api_token"
    token_hash: Mapped[str] = mapped_column(String(128), primary_key=True)  # sha256 hex
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class LoginThrottle(Base):
    """Failed logins of one account or one address, for back-off and lockout.

    Kept in the database, not in memory, so a restart does not forgive an attacker and
    every fleet process sharing the database counts the same failures.
    """

    __tablename__ = "login_throttle"
    key: Mapped[str] = mapped_column(String(160), primary_key=True)  # account:x / address:y
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime | None]
    blocked_until: Mapped[datetime | None]


class FleetSecret(Base):
    """A secret all fleet processes share (``fleet.db.shared_secret``), made once."""

    __tablename__ = "fleet_secret"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FleetLease(Base):
    """A lease one fleet process holds at a time (``fleet.lease``): the coordinator's.

    ``token`` goes up by one at every change of holder: the fencing token every write of
    the coordinator's ticker checks, so a holder that lost the lease writes nothing."""

    __tablename__ = "fleet_lease"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128), default="")
    token: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[datetime]
    renewed_at: Mapped[datetime | None]


class LoginAudit(Base):
    """Every login attempt and its outcome: ok / failed / throttled (append-only)."""

    __tablename__ = "login_audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    username: Mapped[str] = mapped_column(String(64), index=True)
    address: Mapped[str] = mapped_column(String(64), default="")
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")


Index("ix_alert_open", Alert.state, Alert.classroom_id)
# At most one unresolved ticket per fingerprint, whichever fleet process saw the fault
# first: the others' inserts meet it (ON CONFLICT DO NOTHING) and take it up.
ALERT_UNRESOLVED = Alert.state != AlertState.RESOLVED
Index("ux_alert_open_fingerprint", Alert.fingerprint, unique=True,
      sqlite_where=ALERT_UNRESOLVED, postgresql_where=ALERT_UNRESOLVED)
# The ticker asks these every second of tables that only grow; partial indexes keep each
# question to the handful of rows still waiting, however long the history.
Index("ix_check_run_unanswered", CheckRun.requested_at,
      sqlite_where=CheckRun.verdict.is_(None), postgresql_where=CheckRun.verdict.is_(None))
Index("ix_audit_awaiting_answer", AuditEntry.at,
      sqlite_where=AuditEntry.outcome == "accepted",
      postgresql_where=AuditEntry.outcome == "accepted")
Index("ix_alert_pending", Alert.pending_since,
      sqlite_where=Alert.pending_since.is_not(None),
      postgresql_where=Alert.pending_since.is_not(None))
Index("ix_alert_notice", Alert.notice_since,
      sqlite_where=Alert.notice_kind.is_not(None),
      postgresql_where=Alert.notice_kind.is_not(None))
