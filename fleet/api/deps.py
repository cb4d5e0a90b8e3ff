"""What the API needs from the rest of the fleet, and the request dependencies.

The components are typed by small protocols naming only the methods the API calls, so
the API neither imports nor constructs them: ``fleet.app`` builds a :class:`Services`
from the real ones and hands it to :func:`fleet.api.app.create_api`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Protocol

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from fleet.api.config import ApiConfig
from fleet.api.import_jobs import ImportJobs
from fleet.db.base import SessionFactory, session_scope, utcnow
from fleet.db.models import AuditEntry, Classroom, Device, EnrolCode, Lesson
from fleet.enrolment import EnrolConfig, Enrolled, EnrolRefused
from fleet.history import TelemetryHistory
from fleet.metrics import MetricSource

__all__ = [
    "API_PREFIX",
    "DB",
    "ActionService",
    "AlertService",
    "BandwidthGate",
    "EnrolService",
    "LiveState",
    "ReadinessFn",
    "ReadinessView",
    "Services",
    "ServicesDep",
    "StateSource",
    "alert_service",
    "db_session",
    "get_services",
]


API_PREFIX = "/api/v1"


class LiveState(Protocol):
    """A device's latest state as the ingest keeps it (``DeviceState`` conforms)."""

    @property
    def online(self) -> bool: ...
    @property
    def last_seen(self) -> datetime | None: ...
    @property
    def agent_version(self) -> str: ...
    @property
    def telemetry(self) -> dict[str, Any]: ...
    @property
    def inventory(self) -> dict[str, Any]: ...
    @property
    def telemetry_at(self) -> datetime | None: ...
    @property
    def status_at(self) -> datetime | None: ...


class StateSource(Protocol):
    def get(self, device_id: str) -> LiveState | None: ...


class AlertService(Protocol):
    """``fleet.alerts.engine.AlertEngine``: raises AlertNotFound / AlertStateError."""

    def acknowledge(self, alert_id: int, actor: str, comment: str) -> None: ...
    def add_silence(
        self,
        matchers: dict[str, str],
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        comment: str,
    ) -> int: ...
    def delete_silence(self, silence_id: int) -> None: ...
    def resolve_manually(self, alert_id: int, actor: str, comment: str) -> None: ...
    def add_maintenance_window(
        self,
        name: str,
        weekdays: Sequence[int],
        start_time: str,
        end_time: str,
        matchers: Mapping[str, Any] | None = None,
        timezone: str | None = None,
    ) -> int: ...


class ActionService(Protocol):
    def request(
        self,
        actor: str,
        device_id: str,
        name: str,
        args: dict[str, Any],
        *,
        force: bool = False,
        reason: str = "",
    ) -> AuditEntry: ...


class EnrolService(Protocol):
    """``fleet.enrolment.Enrolment``: raises EnrolRefused, and DynsecError when the broker
    refuses or does not answer."""

    config: EnrolConfig

    def create_code(self, session: Session, classroom: Classroom, actor: str, *,
                    replaces: Device | None = None, ttl_hours: float | None = None
                    ) -> tuple[str, EnrolCode]: ...
    def enrol(self, session: Session, code: str, password: str, hostname: str = ""
              ) -> Enrolled: ...
    def record_failure(self, session: Session, refusal: EnrolRefused, client: str) -> None: ...
    def revoke(self, session: Session, device: Device, actor: str, reason: str = ""
               ) -> AuditEntry: ...


class BandwidthGate(Protocol):
    """``fleet.bandwidth.BandwidthAccess``: the device of a valid token within its quota;
    raises TokenRefused / QuotaExceeded."""

    def admit(self, token: str | None) -> str: ...


class ReadinessView(Protocol):
    """``fleet.checks.readiness.Readiness``: state, labels and each end's latest check."""

    def to_json(self) -> dict[str, Any]: ...


ReadinessFn = Callable[[Session, Sequence[Lesson], datetime], Mapping[int, ReadinessView]]


@dataclass
class Services:
    sessions: SessionFactory
    config: ApiConfig = field(default_factory=ApiConfig)
    clock: Callable[[], datetime] = utcnow
    states: StateSource | None = None
    alerts: AlertService | None = None
    actions: ActionService | None = None
    # Enrolment codes and broker credentials; None when [enrol] is not configured.
    enrolment: EnrolService | None = None
    # ``fleet.checks.readiness.lessons_readiness``; None shows every lesson as pending.
    readiness: ReadinessFn | None = None
    metric_sources: list[MetricSource] = field(default_factory=list)
    # Reports whether the MQTT ingest is connected, for /healthz.
    mqtt_connected: Callable[[], bool] | None = None
    # Whether this process holds the coordinator lease (fleet.lease) and runs the ticker.
    coordinator: Callable[[], bool] | None = None
    # Called after an inventory write has committed, so the fleet refreshes its caches.
    inventory_changed: Callable[[], None] | None = None
    # Admits the devices' bandwidth tests; None: the endpoint answers everyone 401.
    bandwidth: BandwidthGate | None = None
    # Large timetable imports, off the request path.
    imports: ImportJobs = field(default_factory=ImportJobs)
    # ``fleet.ingest.strangers.Strangers.list``: agents refused as unknown or disabled.
    strangers: Callable[[], Sequence[object]] | None = None
    # The fleet's own bounded telemetry history, for the device page's charts.
    history: TelemetryHistory | None = None


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def alert_service(services: Services) -> AlertService:
    if services.alerts is None:
        raise HTTPException(503, "告警服务未运行 / alert engine not running")
    return services.alerts


def db_session(services: ServicesDep) -> Iterator[Session]:
    """One unit of work per request, committed before the response is sent."""
    with session_scope(services.sessions) as session:
        yield session


DB = Annotated[Session, Depends(db_session, scope="function")]
