"""The real agent in a process of its own whose clock runs ``--skew-h`` hours off.

A process, not a thread, so that a test can do to it what happens to a classroom PC:
SIGSTOP (a hung agent behind a live connection), SIGCONT, and SIGKILL (the broker then
publishes its Last Will).  Run as ``python -m tests.e2e.skewed_agent CONFIG_JSON
--skew-h 8 [--unplug-at S]``, CONFIG_JSON being the agent's configuration as a TOML
document would hold it.
"""

from __future__ import annotations

import argparse
import json
import signal
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from agent.app import Agent
from agent.compat import UTC
from agent.config import parse_config
from agent.hardware.scenario import Fault, default_scenario
from agent.hardware.simulated import SimulatedHardware
from tests.e2e.world import STUDENT_CAMERA


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("--skew-h", type=float, required=True)
    parser.add_argument("--unplug-at", type=float, default=None,
                        help="seconds after start the student camera is unplugged")
    args = parser.parse_args()
    skew = timedelta(hours=args.skew_h)

    def clock() -> datetime:
        return datetime.now(UTC) + skew

    scenario = default_scenario()
    if args.unplug_at is not None:
        scenario = replace(scenario, fault=[Fault("camera_unplugged", STUDENT_CAMERA,
                                                  at=args.unplug_at)])
    config = parse_config(json.loads(args.config.read_text()))
    agent = Agent(config, SimulatedHardware(scenario, clock=clock, poll_s=0.1), clock=clock)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    agent.run()


if __name__ == "__main__":
    main()
