"""What the device and classroom pages show beyond the device list: the peripherals
against the expected baseline, the latest checks with every finding, and the charted
history of network, bandwidth and temperature (with a Grafana link when configured)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from agent.contract import EXPECTED_ROLES
from fleet.api.auth import CurrentScope
from fleet.api.deps import API_PREFIX, DB, ServicesDep
from fleet.api.routes.common import DeviceIdPath
from fleet.db.models import CheckRun, Device, DeviceState
from fleet.history import SPANS, Series, Span
from fleet.influxql import HistoryUnavailable, read_influxql

__all__ = ["router"]

router = APIRouter(prefix=f"{API_PREFIX}/devices", tags=["devices"])


class PeripheralOut(BaseModel):
    role: str  # cameras / microphones / speakers
    id: str
    name: str
    expected: bool  # in the baseline (the inventory's, else the agent's own)
    checked: bool  # the baseline names this role (else nothing of it is expected or missed)
    present: bool  # in the latest telemetry
    ok: bool | None
    message: str


class PeripheralsOut(BaseModel):
    # "inventory": the fleet's expected devices; "agent": the agent's own baseline;
    # "": none known (every present device is listed, none is missed).
    baseline: str
    items: list[PeripheralOut]


def _listed(section: Any) -> list[dict[str, Any]]:
    items = section.get("devices") if isinstance(section, dict) else None
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def peripherals(expected: dict[str, Any] | None, inventory: dict[str, Any],
                telemetry: dict[str, Any]) -> PeripheralsOut:
    agent = inventory.get("agent") if isinstance(inventory, dict) else None
    reported = agent.get("expected") if isinstance(agent, dict) else None
    baseline, wanted = "", {}
    if expected:
        baseline, wanted = "inventory", expected
    elif isinstance(reported, dict) and reported:
        baseline, wanted = "agent", reported
    sections = telemetry.get("sections", telemetry) if isinstance(telemetry, dict) else {}
    items: list[PeripheralOut] = []
    for role in EXPECTED_ROLES:
        seen = {str(i.get("id")): i for i in _listed(sections.get(role))}
        ids = wanted.get(role)
        ids = [str(i) for i in ids] if isinstance(ids, list) else []
        for dev_id in [*ids, *(i for i in seen if i not in ids)]:
            item = seen.get(dev_id, {})
            ok = item.get("ok")
            items.append(PeripheralOut(
                role=role, id=dev_id, name=str(item.get("name") or ""),
                expected=dev_id in ids, checked=role in wanted, present=dev_id in seen,
                ok=ok if isinstance(ok, bool) else None,
                message=str(item.get("message") or item.get("reason") or "")))
    return PeripheralsOut(baseline=baseline, items=items)


@router.get("/{device_id}/peripherals")
def get_peripherals(device_id: DeviceIdPath, session: DB, scope: CurrentScope,
                    services: ServicesDep) -> PeripheralsOut:
    device = scope.get(session, Device, device_id, "device")
    live = services.states.get(device_id) if services.states is not None else None
    state = live if live is not None else session.get(DeviceState, device_id)
    inventory = dict(state.inventory or {}) if state is not None else {}
    telemetry = dict(state.telemetry or {}) if state is not None else {}
    return peripherals(device.expected, inventory, telemetry)


class CheckOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    lesson_id: int | None
    phase: str
    requested_at: datetime
    answered_at: datetime | None
    verdict: str | None
    findings: list[dict[str, Any]]


@router.get("/{device_id}/checks")
def list_checks(device_id: DeviceIdPath, session: DB, scope: CurrentScope,
                limit: Annotated[int, Query(ge=1, le=100)] = 5) -> list[CheckOut]:
    """The device's latest checks (pre-class and manual), newest first."""
    scope.get(session, Device, device_id, "device")
    query = (select(CheckRun).where(CheckRun.device_id == device_id)
             .order_by(CheckRun.requested_at.desc(), CheckRun.id.desc()).limit(limit))
    return [CheckOut.model_validate(c) for c in session.scalars(query)]


class SeriesOut(BaseModel):
    field: str
    target: str
    points: list[tuple[int, float]]  # (epoch ms, mean over the bucket)


class HistoryOut(BaseModel):
    span: str
    now: datetime  # the fleet's clock: the window ends here, whatever the phone's says
    bucket_s: int
    # "tsdb": the time-series store; "fleet": the fleet's own bounded history.
    source: str
    # Why the time-series store was not used although configured ("" if it was).
    note: str
    series: list[SeriesOut]
    grafana_url: str  # the dashboard for the device's school, "" if none configured


def _out(series: list[Series]) -> list[SeriesOut]:
    return [SeriesOut(field=s.field, target=s.target, points=s.points) for s in series]


@router.get("/{device_id}/history")
def get_history(device_id: DeviceIdPath, session: DB, scope: CurrentScope,
                services: ServicesDep, span: Span = "day") -> HistoryOut:
    device = scope.get(session, Device, device_id, "device")
    now = services.clock()
    cfg = services.config
    source, note, series = "fleet", "", []
    if cfg.history.influxql_url:
        try:
            series, source = read_influxql(cfg.history, device_id, span, now), "tsdb"
        except HistoryUnavailable as exc:
            note = f"时序数据库无应答，显示本服务保存的记录 / time-series store unavailable ({exc})"
    if source == "fleet" and services.history is not None:
        series = services.history.read(device_id, span, now)
    grafana = ""
    if cfg.grafana_url:
        school = device.classroom.school
        grafana = (cfg.grafana_url.rstrip("/") + "/d/syncclass-overview?" + urlencode(
            {"var-county": school.county.name, "var-school": school.name}))
    return HistoryOut(span=span, now=now, bucket_s=int(SPANS[span].bucket.total_seconds()),
                      source=source, note=note, series=_out(series), grafana_url=grafana)
