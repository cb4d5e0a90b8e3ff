"""Speakers: an ALSA playback device is there (the far classroom must be heard)."""

from __future__ import annotations

from typing import Any, ClassVar

from agent.probes.base import ProbeContext
from agent.probes.devices import PresenceProbe

__all__ = ["SpeakerProbe"]


class SpeakerProbe(PresenceProbe):
    name: ClassVar[str] = "speakers"
    role: ClassVar[str] = "speaker"
    minimum: ClassVar[str] = "min_speakers"

    def present(self, ctx: ProbeContext) -> dict[str, dict[str, Any]]:
        return {s.id: s.to_json() for s in ctx.hardware.speakers()}
