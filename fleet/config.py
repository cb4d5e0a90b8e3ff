"""The fleet's configuration: one TOML file whose tables are the components' own configs.

``provisioning/fleet.example.toml`` documents every key.  Every key has a default, so
the embedded defaults (SQLite, a broker on localhost) run with an empty file.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fleet.actions.config import ActionConfig
from fleet.alerts.config import AlertConfig
from fleet.api.config import ApiConfig
from fleet.checks.config import CheckConfig
from fleet.enrolment import EnrolConfig
from fleet.ingest.config import IngestConfig
from fleet.lease import LeaseConfig
from fleet.notify.config import NotifyConfig
from fleet.settings import ConfigError, load_toml, section
from fleet.tsdb import TsdbConfig

__all__ = [
    "DatabaseConfig",
    "FleetConfig",
    "HttpConfig",
    "data_dirs",
    "load_config",
    "make_data_dirs",
    "parse_config",
]


@dataclass(frozen=True)
class DatabaseConfig:
    # SQLite for a county; postgresql+psycopg2://user:pw@host/db for a province.
    url: str = "sqlite:////var/lib/syncclass/fleet.db"


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080


@dataclass(frozen=True)
class FleetConfig:
    timezone: str = "Asia/Shanghai"
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    mqtt: IngestConfig = field(default_factory=IngestConfig)
    tsdb: TsdbConfig = field(default_factory=TsdbConfig)
    checks: CheckConfig = field(default_factory=CheckConfig)
    actions: ActionConfig = field(default_factory=ActionConfig)
    alerts: AlertConfig = field(default_factory=AlertConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    enrol: EnrolConfig = field(default_factory=EnrolConfig)
    lease: LeaseConfig = field(default_factory=LeaseConfig)

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {self.timezone!r} is unknown") from None

    def coherent(self) -> FleetConfig:
        """Copy the settings two components must agree on from their single source.

        The topic prefix is the broker's (``mqtt.prefix``), and no reboot is allowed inside
        the pre-class check's lead time (``checks.lead_minutes``).
        """
        return replace(
            self,
            actions=replace(
                self.actions, prefix=self.mqtt.prefix, lead_minutes=self.checks.lead_minutes
            ),
            alerts=replace(self.alerts, timezone=self.timezone),
        )


def parse_config(data: dict[str, Any]) -> FleetConfig:
    return section(FleetConfig, data).coherent()


def load_config(path: Path | None) -> FleetConfig:
    if path is None:
        return FleetConfig().coherent()
    try:
        return parse_config(load_toml(path))
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(path), str(exc)) from None


def data_dirs(cfg: FleetConfig) -> dict[str, Path]:
    """The directories the fleet writes files into, by the config key that names them."""
    dirs = {"actions.key_file": cfg.actions.key_file.parent}
    url = cfg.database.url
    if url.startswith("sqlite:///"):
        db = url.removeprefix("sqlite:///").split("?", 1)[0]
        if db and db != ":memory:":
            dirs["database.url"] = Path(db).parent
    return dirs


def make_data_dirs(cfg: FleetConfig) -> None:
    """Create the data directories on first start (the systemd unit's StateDirectory=
    does it for the service; `migrate` run by hand comes first)."""
    for key, directory in data_dirs(cfg).items():
        try:
            directory.mkdir(mode=0o750, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(key, f"cannot create the data directory {directory}: "
                                   f"{exc.strerror} (无法创建数据目录; run as root or the "
                                   "syncclass user, or set this key to a writable path)"
                              ) from None
