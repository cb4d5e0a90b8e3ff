"""Hardware backends: ``linux`` (the real machine) and ``simulated`` (a scenario).

``open_backend`` is the one entry point; the Linux backend's imports (pyudev, psutil) load
only when it is chosen.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from pathlib import Path

from agent.contract import utcnow
from agent.hardware.base import Hardware, HardwareError

__all__ = [
    "BACKENDS",
    "Hardware",
    "HardwareError",
    "open_backend",
]

BACKENDS = ("linux", "simulated")


def open_backend(
    kind: str,
    *,
    scenario: Path | None = None,
    sysfs_root: Path = Path("/sys"),
    clock: Callable[[], datetime] = utcnow,
    extra_cameras: Mapping[str, str] | None = None,
    extra_microphones: Mapping[str, str] | None = None,
    onboard_audio: Collection[str] = (),
    pulse_server: str = "",
) -> Hardware:
    """The backend named ``kind``.

    simulated: ``scenario`` file (None: a healthy default classroom), ``clock`` for its
    fault times.  linux: ``sysfs_root``, and devices udev cannot see, id -> spec:
    ``extra_cameras`` (RTSP URL, /dev node, ``lavfi:...``), ``extra_microphones`` (ALSA PCM);
    ``onboard_audio``: the onboard PCMs (``card:device``) that count as devices;
    ``pulse_server``: where ``pulse:`` microphones record ("": $PULSE_SERVER or the
    logged-in user's session socket).

    Raises ValueError for an unknown kind and ConfigError for a bad scenario file.
    """
    if kind == "simulated":
        # Imported here, as linux is: a classroom PC never loads the simulation.
        from agent.hardware.scenario import load_scenario
        from agent.hardware.simulated import SimulatedHardware

        return SimulatedHardware(load_scenario(scenario) if scenario else None, clock=clock)
    if kind == "linux":
        from agent.hardware.linux import LinuxHardware

        return LinuxHardware(sysfs_root=sysfs_root, extra_cameras=extra_cameras or {},
                             extra_microphones=extra_microphones or {},
                             onboard_audio=onboard_audio, pulse_server=pulse_server)
    raise ValueError(f"unknown hardware backend {kind!r} (known: {', '.join(BACKENDS)})")
