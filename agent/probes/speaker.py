"""Speakers: an ALSA playback device is there (the far classroom must be heard)."""

from __future__ import annotations

from typing import ClassVar

from agent.hardware.base import AudioDevice
from agent.probes.base import ProbeContext
from agent.probes.devices import PresenceProbe

__all__ = ["SpeakerProbe"]


class SpeakerProbe(PresenceProbe[AudioDevice]):
    name: ClassVar[str] = "speakers"
    role: ClassVar[str] = "speaker"
    minimum: ClassVar[str] = "min_speakers"

    def present(self, ctx: ProbeContext) -> list[AudioDevice]:
        return ctx.hardware.speakers()
