"""What the ingest hands validated messages to.

The ingest validates and dispatches; each consumer (device state, time series, alert
rules, check scheduler, remote actions) implements the methods it cares about.  Only the
app's wiring knows the concrete sinks, so the ingest never imports a layer above it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agent.contract import Kind

__all__ = ["Admission", "Durable", "Gate", "MessageSink", "NullSink", "Publisher", "Sent"]


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


@dataclass(frozen=True)
class Admission:
    """A gate's verdict on one message.

    ``release`` is what to hand the sinks now, in order: usually the message itself,
    nothing when it is held back, or several when it confirms messages held before it.
    ``withheld`` names why the message itself was not released ("duplicate" or a
    suspicion such as "seq-jump"), with ``detail`` for the log line.
    """

    release: tuple[tuple[Kind, dict[str, Any]], ...]
    withheld: str = ""
    detail: str = ""


class Gate(Protocol):
    """Sees every validated message before any sink (``fleet.state.DeviceStates``)."""

    def admit(self, device_id: str, kind: Kind, payload: dict[str, Any]) -> Admission: ...


class Durable(Protocol):
    """A sink that keeps what it is given in memory and writes it later (device state,
    time series).  The ingest acknowledges a message to the broker only once every such
    sink has written it, so a process killed before that gets it again from its session.
    """

    def cut(self) -> Callable[[], None]:
        """Called on the dispatch thread between two messages: what makes everything
        given so far durable.  That runs on another thread and raises if it cannot."""
        ...


# Told True once the broker has acknowledged a published message, False if it refused it.
Sent = Callable[[bool], None]


class Publisher(Protocol):
    """Sends a command to a device (the fleet's command connection implements it)."""

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                on_sent: Sent | None = None) -> None: ...
