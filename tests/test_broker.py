from __future__ import annotations

import subprocess

from fleet.broker import Mosquitto


def test_private_broker_delivers_retained(broker: Mosquitto) -> None:
    port = str(broker.port)
    subprocess.run(["mosquitto_pub", "-p", port, "-t", "t/x", "-m", "hi", "-r", "-q", "1"],
                   check=True, timeout=10)
    out = subprocess.run(["mosquitto_sub", "-p", port, "-t", "t/x", "-C", "1", "-W", "5"],
                         check=True, capture_output=True, text=True, timeout=10)
    assert out.stdout.strip() == "hi"
    broker.restart()
    out = subprocess.run(["mosquitto_sub", "-p", port, "-t", "t/x", "-C", "1", "-W", "5"],
                         check=True, capture_output=True, text=True, timeout=10)
    assert out.stdout.strip() == "hi", "retained message lost across restart"
