"""MQTT ingest: connection, validation and dispatch to the message sinks."""

from __future__ import annotations

from fleet.ingest.config import IngestConfig
from fleet.ingest.connection import backoff_delay
from fleet.ingest.dispatch import Dispatcher, Gate
from fleet.ingest.mqtt import MqttIngest, create_ingest
from fleet.ingest.validate import Accepted, Validator, load_enabled_devices

__all__ = [
    "Accepted",
    "Dispatcher",
    "Gate",
    "IngestConfig",
    "MqttIngest",
    "Validator",
    "backoff_delay",
    "create_ingest",
    "load_enabled_devices",
]
