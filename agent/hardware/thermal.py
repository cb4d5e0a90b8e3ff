"""The CPU's temperature, from the sensors that measure the CPU package, by name.

The maximum over every sensor lets one bogus reading decide: ACPI thermal zones
(``acpitz``) on many mini-PCs report a fixed 127 °C or a firmware guess, and NVMe drives,
Wi-Fi cards and chipsets have their own ranges.  Only the sensors below are used, each
with the label that stands for the whole package; a machine with none of them reports no
temperature rather than a wrong one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

__all__ = ["CPU_SENSORS", "cpu_temperature"]


class Reading(Protocol):
    """What psutil.sensors_temperatures() lists per chip (its ``shwtemp``)."""

    @property
    def label(self) -> str: ...

    @property
    def current(self) -> float | None: ...


#: hwmon / thermal-zone name -> label prefixes, best first ("" matches any label).
CPU_SENSORS: dict[str, tuple[str, ...]] = {
    "coretemp": ("Package id", "Core "),  # Intel; old Atoms have no package sensor
    "k10temp": ("Tdie", "Tctl"),  # AMD; Tctl carries an offset on some Ryzen parts
    "zenpower": ("Tdie", "Tctl"),
    "x86_pkg_temp": ("",),  # Intel's package thermal zone
    "cpu_thermal": ("",),  # Raspberry Pi, Amlogic
    "cpu-thermal": ("",),
    "soc_thermal": ("",),  # Rockchip RK3399/RK3588
    "soc-thermal": ("",),
}
# Outside this range a reading is a sensor's error code (127, 128, -273), not a CPU.
_PLAUSIBLE_C = (1.0, 125.0)


def _plausible(readings: Iterable[Reading], prefix: str) -> list[float]:
    low, high = _PLAUSIBLE_C
    return [r.current for r in readings
            if r.label.startswith(prefix) and r.current is not None
            and low <= r.current <= high]


def cpu_temperature(sensors: Mapping[str, Iterable[Reading]]) -> float | None:
    """The hottest CPU package in °C, or None when no known CPU sensor reads."""
    found: list[float] = []
    for chip, prefixes in CPU_SENSORS.items():
        readings = list(sensors.get(chip, ()))
        for prefix in prefixes:
            values = _plausible(readings, prefix)
            if values:
                found += values
                break
    return max(found) if found else None
