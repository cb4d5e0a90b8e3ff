"""The probe registry: one line per probe (section name, enabled by default, factory).

Like node_exporter's collectors, a probe is added by one ``register`` call below, and the
config's ``[probes]`` table can switch any of them on or off by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agent.probes.avgear import AvGearProbe
from agent.probes.bandwidth import BandwidthProbe
from agent.probes.base import Probe
from agent.probes.camera import CameraProbe
from agent.probes.display import DisplayProbe
from agent.probes.microphone import MicrophoneProbe
from agent.probes.network import NetworkProbe
from agent.probes.speaker import SpeakerProbe
from agent.probes.system import SystemProbe

__all__ = ["PROBES", "ProbeSpec", "build", "register"]


@dataclass(frozen=True)
class ProbeSpec:
    name: str
    enabled: bool
    factory: Callable[[], Probe]


PROBES: dict[str, ProbeSpec] = {}


def register(name: str, enabled: bool, factory: Callable[[], Probe]) -> None:
    if name in PROBES:
        raise ValueError(f"probe {name!r} registered twice")
    PROBES[name] = ProbeSpec(name, enabled, factory)


register("system", True, SystemProbe)
register("cameras", True, CameraProbe)
register("microphones", True, MicrophoneProbe)
register("speakers", True, SpeakerProbe)
register("displays", True, DisplayProbe)
register("network", True, NetworkProbe)
register("bandwidth", True, BandwidthProbe)
register("avgear", True, AvGearProbe)


def build(enabled: Mapping[str, bool] | None = None) -> dict[str, Probe]:
    """Fresh probe instances: the defaults, overridden by ``enabled`` (name -> on/off).

    An unknown name raises ValueError naming it and the known ones.
    """
    wanted = dict(enabled or {})
    unknown = sorted(set(wanted) - set(PROBES))
    if unknown:
        raise ValueError(f"unknown probe(s) {', '.join(unknown)} (known: {', '.join(PROBES)})")
    return {
        name: spec.factory()
        for name, spec in PROBES.items()
        if wanted.get(name, spec.enabled)
    }
