"""Displays: a connected monitor or projector, so an unplugged projector shows before class.

A connector that never had anything plugged in (a spare DisplayPort) is not a problem; a
connector seen connected and now disconnected is.
"""

from __future__ import annotations

from typing import Any, ClassVar

from agent.hardware.base import Display
from agent.probes.base import ProbeContext
from agent.probes.devices import PresenceProbe

__all__ = ["DisplayProbe"]


class DisplayProbe(PresenceProbe[Display]):
    name: ClassVar[str] = "displays"
    role: ClassVar[str] = "display"
    minimum: ClassVar[str] = "min_displays"
    # A projector switched off overnight is not missing at boot: displays are expected
    # from what this run of the agent has seen, as before.
    persistent: ClassVar[bool] = False

    def present(self, ctx: ProbeContext) -> list[Display]:
        return [d for d in ctx.hardware.displays() if d.connected]

    def describe(self, device: Display) -> dict[str, Any]:
        return {**device.to_json(), "name": device.monitor or device.id}
