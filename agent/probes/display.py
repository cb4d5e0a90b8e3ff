"""Displays: a connected monitor or projector, so an unplugged projector shows before class.

A connector that never had anything plugged in (a spare DisplayPort) is not a problem; a
connector seen connected and now disconnected is.
"""

from __future__ import annotations

from typing import Any, ClassVar

from agent.probes.base import ProbeContext
from agent.probes.devices import PresenceProbe

__all__ = ["DisplayProbe"]


class DisplayProbe(PresenceProbe):
    name: ClassVar[str] = "displays"
    role: ClassVar[str] = "display"
    minimum: ClassVar[str] = "min_displays"

    def present(self, ctx: ProbeContext) -> dict[str, dict[str, Any]]:
        return {
            d.id: {**d.to_json(), "name": d.monitor or d.id}
            for d in ctx.hardware.displays()
            if d.connected
        }
