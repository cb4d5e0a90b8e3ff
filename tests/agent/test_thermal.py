"""The CPU temperature comes from named package sensors, never from acpitz or a drive."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from agent.hardware.thermal import cpu_temperature

MACHINES: dict[str, Any] = json.loads(
    (Path(__file__).parent / "fixtures" / "sensors.json").read_text())
MACHINES.pop("_comment")


class Shwtemp(NamedTuple):
    """psutil's per-sensor record (psutil._ntuples.shwtemp in 7.x, _common before)."""

    label: str
    current: float | None
    high: float | None
    critical: float | None


@pytest.mark.parametrize("machine", sorted(MACHINES))
def test_cpu_temperature_of_classroom_pcs(machine: str) -> None:
    spec = MACHINES[machine]
    sensors = {chip: [Shwtemp(*row) for row in rows] for chip, rows in spec["sensors"].items()}
    assert cpu_temperature(sensors) == spec["expect"]


def test_the_fixture_covers_a_bogus_sensor_above_every_real_one() -> None:
    """The case of the issue: the plain maximum would have been 127 °C."""
    nuc = MACHINES["intel-nuc-with-acpitz-127"]["sensors"]
    assert max(row[1] for rows in nuc.values() for row in rows) == 127.0
