"""Fleet fixtures: each lives in its own module next to what it starts or loads."""

from __future__ import annotations

from tests.fleet.influx2_front import influx_front
from tests.fleet.ingest_helpers import ingests_closed
from tests.fleet.notify_helpers import clock, sessions
from tests.fleet.pg import postgres
from tests.fleet.pilot import pilot, pilot_template
from tests.fleet.smtp import smtp_server
from tests.fleet.tsdb_server import victoria
from tests.fleet.webhook_receiver import webhook_receiver

__all__ = [
    "clock",
    "influx_front",
    "ingests_closed",
    "pilot",
    "pilot_template",
    "postgres",
    "sessions",
    "smtp_server",
    "victoria",
    "webhook_receiver",
]
