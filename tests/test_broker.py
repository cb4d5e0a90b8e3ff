from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from fleet.broker import Mosquitto, wait_for_port
from tests.waiting import wait_until


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


def test_broker_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    # A demo or test killed with SIGKILL leaves no broker behind on its port.
    script = (
        "import sys, time\n"
        "from fleet.broker import Mosquitto\n"
        f"mq = Mosquitto(workdir=__import__('pathlib').Path({str(tmp_path)!r})).start()\n"
        "print(mq.port, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    port = int(parent.stdout.readline())
    wait_for_port(port)
    parent.kill()
    parent.wait(timeout=10)
    assert wait_until(lambda: not _listening(port), timeout=10), "broker outlived its parent"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
