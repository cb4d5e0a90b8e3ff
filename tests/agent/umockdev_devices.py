"""Run under ``umockdev-wrapper``: one boot of the agent's device probes on a testbed.

Loads the given ``.umockdev`` fixtures, surveys cameras, microphones and speakers with the
real LinuxHardware (pyudev's libudev under umockdev's preload) and the device baseline in
``--state``, and prints one JSON object: probe name -> {"devices": [...], "findings":
{entity: reason}}, and under "udev" the video4linux and sound devices udev lists.
Calling it again with the same ``--state`` is a reboot.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pyudev

from agent.app import probe_context
from agent.config import AgentConfig, HardwareConfig, RuntimeConfig
from agent.hardware.linux import LinuxHardware
from agent.probes.camera import CameraProbe
from agent.probes.devices import PresenceProbe
from agent.probes.microphone import MicrophoneProbe
from agent.probes.speaker import SpeakerProbe
from tests.agent.umockdev_hotplug import Testbed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--onboard", action="append", default=[])
    parser.add_argument("fixtures", type=Path, nargs="*")
    args = parser.parse_args()
    bed = Testbed()
    for fixture in args.fixtures:
        bed.load(fixture)
    config = AgentConfig("room-101", hardware=HardwareConfig(onboard_audio=args.onboard),
                         # Presence only: sampling would open a camera umockdev cannot feed.
                         agent=RuntimeConfig(state_dir=args.state, sample_every_s=0))
    hardware = LinuxHardware(onboard_audio=args.onboard)
    ctx = probe_context(config, hardware)
    probes: list[PresenceProbe[Any]] = [CameraProbe(), MicrophoneProbe(), SpeakerProbe()]
    # What udev itself lists, so a test can tell "left out" from "never loaded".
    out: dict[str, Any] = {"udev": sorted(
        d.sys_name for subsystem in ("video4linux", "sound")
        for d in pyudev.Context().list_devices(subsystem=subsystem))}
    for probe in probes:
        report = probe.collect(ctx)
        out[probe.name] = {"devices": report.section["devices"],
                           "findings": {f.entity: f.reason for f in report.findings}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
