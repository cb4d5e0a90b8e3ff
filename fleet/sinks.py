"""What the ingest hands validated messages to.

The ingest validates and dispatches; each consumer (device state, time series, alert
rules, check scheduler, remote actions) implements the methods it cares about.  Only the
app's wiring knows the concrete sinks, so the ingest never imports a layer above it.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["MessageSink", "NullSink", "Publisher"]


class MessageSink(Protocol):
    """Receives payloads already validated against ``agent.contract`` for a known device."""

    def on_status(self, device_id: str, payload: dict[str, Any]) -> None: ...
    def on_telemetry(self, device_id: str, payload: dict[str, Any]) -> None: ...
    def on_event(self, device_id: str, payload: dict[str, Any]) -> None: ...
    def on_check(self, device_id: str, payload: dict[str, Any]) -> None: ...
    def on_cmd_result(self, device_id: str, payload: dict[str, Any]) -> None: ...


class NullSink:
    """A base for sinks that care about a few kinds only."""

    def on_status(self, device_id: str, payload: dict[str, Any]) -> None:
        pass

    def on_telemetry(self, device_id: str, payload: dict[str, Any]) -> None:
        pass

    def on_event(self, device_id: str, payload: dict[str, Any]) -> None:
        pass

    def on_check(self, device_id: str, payload: dict[str, Any]) -> None:
        pass

    def on_cmd_result(self, device_id: str, payload: dict[str, Any]) -> None:
        pass


class Publisher(Protocol):
    """Sends a command to a device (the ingest's MQTT connection implements it)."""

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None: ...
