"""Enrolment codes: a classroom's mini-PC joins the fleet with one short code.

An admin or county technician makes a one-time code for a classroom (as Teams Rooms and
Zoom Rooms do with device codes).  On the mini-PC ``syncclass-agent enrol CODE`` sends it
with a broker password the agent made itself; the fleet creates the device in that
classroom and its broker client (``fleet.dynsec``), and answers with everything the agent
needs: its id, the broker's URL and CA, and the fleet's command key.

- Codes are 8 characters from an alphabet without look-alikes (no 0/O, 1/I/L), shown as
  ``ABCD-EFGH``; 31^8, about 2^39.6, of them.  Only their SHA-256 is stored, they expire, and
  claiming one is a single conditional UPDATE, so two machines racing with the same code
  cannot both win.
- A code may name a device it *replaces*: the new machine takes the same device id with
  new credentials (the old machine's connection is dropped by the broker).  Everything
  the fleet knows is keyed by the device id (device state, checks, alerts, audit), so the
  classroom's history simply continues; a new id would have to inherit every one of those
  rows.  The new machine numbers its connections above the old one's (``session_floor``),
  so the fleet takes its birth for the device's newest connection and restarts the
  sequence tracking.  Rotating a device's credentials is the same code: the fleet never sends a
  password over MQTT, the agent makes the new one when it re-enrols.
- Revoking disables the broker client (the plugin kicks the live connection and refuses
  the next) and the device, and writes an audit entry.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from fleet.db.base import utcnow
from fleet.db.models import AuditEntry, Classroom, Device, DeviceState, EnrolCode

__all__ = [
    "CODE_ALPHABET",
    "BrokerAdmin",
    "EnrolConfig",
    "EnrolRefused",
    "Enrolled",
    "Enrolment",
    "code_hash",
    "format_code",
    "new_code",
    "normalize_code",
]

CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # 31 symbols: no 0/O, 1/I/L
CODE_LENGTH = 8
# A replacing machine numbers its connections above the old machine's last known one;
# the margin covers reconnects of the old machine since the state was last flushed.
SESSION_MARGIN = 100
# The audit outcome of a refused enrolment; they count against max_failures_per_hour.
FAILED = "refused"
# The agent's own broker password: long enough that guessing it is hopeless.
PASSWORD_MIN, PASSWORD_MAX = 24, 128


@dataclass(frozen=True)
class EnrolConfig:
    """The ``[enrol]`` table: enrolment is on when the broker admin login is set."""

    # The dynamic security plugin's admin client (mosquitto_ctrl dynsec init), used on the
    # broker of ``[mqtt] url``.  Not the fleet's own MQTT user: that one only reads.
    admin_username: str = ""
    admin_password: str = ""
    # The broker URL agents dial (mqtts://broker.county.example:8883); "" = [mqtt] url.
    broker_url: str = ""
    # The CA agents verify the broker with, handed to them at enrolment; None = the
    # system's CAs (or plain mqtt://).
    ca_file: Path | None = None
    code_ttl_hours: float = 72.0
    # The fleet's URL as mini-PCs reach it, for the command the CLI prints with a code;
    # "" = http://[http] host:port.
    fleet_url: str = ""
    # Wrong codes tried in the last hour, fleet-wide, before the enrol endpoint refuses
    # every attempt for a while: guessing one of 2^39.6 codes then takes centuries, at the
    # price of a technician waiting while someone is guessing.
    max_failures_per_hour: int = 60

    def __post_init__(self) -> None:
        if self.code_ttl_hours <= 0:
            raise ValueError("enrol.code_ttl_hours must be > 0")
        if self.max_failures_per_hour < 1:
            raise ValueError("enrol.max_failures_per_hour must be >= 1")
        if self.broker_url and not self.broker_url.startswith(("mqtt://", "mqtts://")):
            raise ValueError(f"enrol.broker_url {self.broker_url!r} must be mqtt:// or mqtts://")

    @property
    def enabled(self) -> bool:
        return bool(self.admin_username)


class BrokerAdmin(Protocol):
    """``fleet.dynsec.DynsecAdmin``: the broker side of enrolment and revocation."""

    def put_device(self, prefix: str, device_id: str, password: str) -> None: ...
    def disable_device(self, device_id: str) -> None: ...


class EnrolRefused(ValueError):
    def __init__(self, code: str, message_zh: str, message_en: str, status: int = 403) -> None:
        super().__init__(f"{message_zh} / {message_en}")
        self.code, self.status = code, status
        self.message_zh, self.message_en = message_zh, message_en


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def format_code(code: str) -> str:
    half = CODE_LENGTH // 2
    return f"{code[:half]}-{code[half:]}"


def normalize_code(text: str) -> str:
    """What a person typed: any case, with or without the dash and spaces."""
    code = "".join(text.split()).replace("-", "").upper()
    if len(code) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in code):
        raise EnrolRefused("bad-code", f"注册码应为{CODE_LENGTH}位字母数字（如 ABCD-EFGH）",
                           f"an enrolment code has {CODE_LENGTH} letters and digits "
                           "(like ABCD-EFGH)", status=400)
    return code


def code_hash(code: str) -> str:
    return hashlib.sha256(normalize_code(code).encode()).hexdigest()


@dataclass(frozen=True)
class Enrolled:
    """The enrol endpoint's answer: what the agent writes into its config."""

    device_id: str
    classroom_id: int
    classroom: str
    school: str
    replaced: bool
    mqtt_url: str
    mqtt_username: str
    mqtt_prefix: str
    ca_pem: str | None
    fleet_public_key: str
    # The replacing machine's connections count from here (agent.spool.continue_sessions).
    session_floor: int = 0


class Enrolment:
    def __init__(self, broker: BrokerAdmin, config: EnrolConfig, *, prefix: str,
                 mqtt_url: str, fleet_public_key: str,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.broker = broker
        self.config = config
        self.prefix = prefix
        self.mqtt_url = config.broker_url or mqtt_url
        self.fleet_public_key = fleet_public_key
        self.clock = clock

    def create_code(self, session: Session, classroom: Classroom, actor: str, *,
                    replaces: Device | None = None, ttl_hours: float | None = None
                    ) -> tuple[str, EnrolCode]:
        """A new code for ``classroom`` (shown once, as ``ABCD-EFGH``) and its row."""
        if replaces is not None and replaces.classroom_id != classroom.id:
            raise EnrolRefused("wrong-classroom", f"设备 {replaces.id} 不在该教室",
                               f"device {replaces.id} is not in this classroom", status=409)
        hours = self.config.code_ttl_hours if ttl_hours is None else ttl_hours
        if not 0 < hours <= 24 * 30:
            raise EnrolRefused("bad-ttl", "有效期应在 30 天以内",
                               "a code is valid for up to 30 days", status=422)
        now = self.clock()
        code = new_code()
        row = EnrolCode(code_hash=code_hash(code), classroom_id=classroom.id,
                        device_id=replaces.id if replaces is not None else None,
                        created_by=actor, created_at=now,
                        expires_at=now + timedelta(hours=hours))
        session.add(row)
        session.flush()
        return format_code(code), row

    def enrol(self, session: Session, code: str, password: str, hostname: str = ""
              ) -> Enrolled:
        """Claim ``code``, create or re-credential the device; the caller commits.

        A broker failure raises before the caller commits, so the code stays unused.
        """
        if not (PASSWORD_MIN <= len(password) <= PASSWORD_MAX and password.isascii()
                and password.isprintable()):
            raise EnrolRefused("bad-password", "代理生成的密码不合要求",
                               f"the agent's password must be {PASSWORD_MIN}-{PASSWORD_MAX} "
                               "printable ASCII characters", status=400)
        digest = code_hash(code)
        now = self.clock()
        self._check_failures(session, now)
        claimed = session.execute(
            update(EnrolCode)
            .where(EnrolCode.code_hash == digest, EnrolCode.used_at.is_(None),
                   EnrolCode.expires_at > now)
            .values(used_at=now)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise self._why_refused(session, digest, now)
        row = session.scalars(select(EnrolCode).where(EnrolCode.code_hash == digest)).one()
        classroom = session.get_one(Classroom, row.classroom_id)
        device = session.get(Device, row.device_id) if row.device_id else None
        if row.device_id and (device is None or device.classroom_id != classroom.id):
            raise EnrolRefused("device-moved", "被替换的设备已删除或移到别的教室",
                               f"device {row.device_id} was deleted or moved: make a new code",
                               status=409)
        floor = 0
        if device is not None:
            known = session.get(DeviceState, device.id)
            floor = (known.session if known is not None else 0) + SESSION_MARGIN
        else:
            device = Device(id=self._new_device_id(session, classroom), classroom_id=classroom.id,
                            note=f"enrolled from {hostname}"[:256] if hostname else "")
            session.add(device)
        device.enabled = True
        row.used_by = device.id
        session.add(AuditEntry(
            at=now, actor=f"enrol:{row.created_by}"[:64], action="enrol", device_id=device.id,
            args={"classroom_id": classroom.id, "replaced": row.device_id is not None,
                  "hostname": hostname[:128], "code_id": row.id},
            outcome="ok", detail=f"enrolled into {classroom.school.name} {classroom.name}",
        ))
        session.flush()
        self.broker.put_device(self.prefix, device.id, password)
        ca_pem = self.config.ca_file.read_text() if self.config.ca_file else None
        return Enrolled(
            device_id=device.id, classroom_id=classroom.id, classroom=classroom.name,
            school=classroom.school.name, replaced=row.device_id is not None,
            mqtt_url=self.mqtt_url, mqtt_username=device.id, mqtt_prefix=self.prefix,
            ca_pem=ca_pem, fleet_public_key=self.fleet_public_key, session_floor=floor,
        )

    def revoke(self, session: Session, device: Device, actor: str, reason: str = ""
               ) -> AuditEntry:
        """Disable the device and its broker client (its connection drops at once)."""
        device.enabled = False
        entry = AuditEntry(at=self.clock(), actor=actor[:64], action="revoke",
                           device_id=device.id, reason=reason, outcome="ok",
                           detail="broker client disabled, device disabled")
        session.add(entry)
        session.flush()
        self.broker.disable_device(device.id)
        return entry

    def record_failure(self, session: Session, refusal: EnrolRefused, client: str) -> None:
        """Audit a refused enrolment (in its own transaction: the attempt's rolled back)."""
        session.add(AuditEntry(at=self.clock(), actor=f"enrol:{client}"[:64], action="enrol",
                               outcome=FAILED, detail=refusal.code))

    def _check_failures(self, session: Session, now: datetime) -> None:
        since = now - timedelta(hours=1)
        failures = session.scalar(
            select(func.count()).select_from(AuditEntry).where(
                AuditEntry.action == "enrol", AuditEntry.outcome == FAILED,
                AuditEntry.at > since)) or 0
        if failures >= self.config.max_failures_per_hour:
            raise EnrolRefused("too-many-attempts", "错误注册码尝试过多，请稍后再试",
                               "too many wrong codes were tried: try again later", status=429)

    @staticmethod
    def _why_refused(session: Session, digest: str, now: datetime) -> EnrolRefused:
        row = session.scalars(
            select(EnrolCode).where(EnrolCode.code_hash == digest)).one_or_none()
        if row is None:
            return EnrolRefused("unknown-code", "注册码无效", "unknown enrolment code")
        if row.used_at is not None:
            return EnrolRefused("code-used", "注册码已使用过，请重新生成",
                                "this code has been used already: make a new one")
        return EnrolRefused("code-expired", "注册码已过期，请重新生成",
                            "this code has expired: make a new one")

    @staticmethod
    def _new_device_id(session: Session, classroom: Classroom) -> str:
        # Ids are MQTT usernames and topic levels: ASCII, while classroom names are not.
        while True:
            device_id = f"room{classroom.id}-{secrets.token_hex(3)}"
            if session.get(Device, device_id) is None:
                return device_id
