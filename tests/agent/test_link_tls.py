"""Production-like broker: TLS, a user per device and the provisioning ACL."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.broker import Mosquitto, TlsFiles, device_acl, free_port, make_test_ca, wait_for_port
from fleet.dynsec import AdminLogin, DynsecAdmin
from tests.agent.agentkit import PREFIX, Subscriber, make_config, running_agent
from tests.waiting import wait_until

PROVISIONING = Path(__file__).resolve().parents[2] / "provisioning" / "mosquitto"
USERS = {"room-a": "pw-a", "room-b": "pw-b", "fleet": "pw-fleet"}


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def secure_broker(tmp_path: Path, tls_files: TlsFiles) -> Iterator[Mosquitto]:
    acl = (PROVISIONING / "acl").read_text()
    with Mosquitto(workdir=tmp_path / "mq", users=USERS, acl=acl, tls=tls_files) as mq:
        yield mq


def test_provisioning_acl_matches_the_test_brokers() -> None:
    def rules(text: str) -> list[str]:
        return [line for line in text.splitlines() if line and not line.startswith("#")]

    assert rules((PROVISIONING / "acl").read_text()) == rules(device_acl(PREFIX))


def test_agent_over_tls_with_its_own_user(secure_broker: Mosquitto, tmp_path: Path,
                                          tls_files: TlsFiles) -> None:
    fleet = Subscriber(secure_broker.tls_port, [f"{PREFIX}/dev/+/#"], username="fleet",
                       password="pw-fleet", ca_file=tls_files.ca_file)
    cfg = make_config(tmp_path, secure_broker.tls_url, device_id="room-a", mqtt={
        "username": "room-a", "password": "pw-a", "ca_file": str(tls_files.ca_file)})
    with running_agent(cfg):
        fleet.wait_for(lambda m: m[0] == f"{PREFIX}/dev/room-a/telemetry")
        fleet.wait_for(lambda m: m[0].endswith("room-a/status") and m[1]["state"] == "online")
    fleet.close()


def test_acl_stops_a_device_publishing_as_another(secure_broker: Mosquitto, tmp_path: Path,
                                                  tls_files: TlsFiles) -> None:
    fleet = Subscriber(secure_broker.tls_port, [f"{PREFIX}/dev/room-b/#"], username="fleet",
                       password="pw-fleet", ca_file=tls_files.ca_file)
    # room-a's credentials in an agent that claims to be room-b.
    cfg = make_config(tmp_path, secure_broker.tls_url, device_id="room-b", mqtt={
        "username": "room-a", "password": "pw-a", "ca_file": str(tls_files.ca_file)})
    with running_agent(cfg) as agent:
        assert wait_until(lambda: agent.link.rejected >= 2, 10), \
            f"the broker rejected {agent.link.rejected} publishes, expected 2"
    # MQTT 5: the broker says so (under 3.1.1 it would ack and drop silently).
    assert "Not authorized" in agent.link.last_rejection
    # Nothing of it reached the fleet: a marker published after the rejections is the first
    # (and only) message on room-b's topics.
    fleet.publish(f"{PREFIX}/dev/room-b/telemetry", {"marker": True})
    fleet.wait_for(lambda m: m[1].get("marker") is True)
    assert [m[1] for m in fleet.messages] == [{"marker": True}]
    fleet.close()


def test_tls_refuses_an_unknown_ca(secure_broker: Mosquitto, tmp_path: Path) -> None:
    other = make_test_ca(tmp_path / "other-ca")
    cfg = make_config(tmp_path, secure_broker.tls_url, device_id="room-a", mqtt={
        "username": "room-a", "password": "pw-a", "ca_file": str(other.ca_file)})
    from agent.link import Link
    from agent.spool import Spool

    spool = Spool(tmp_path / "s.sqlite")
    link = Link("room-a", cfg.mqtt, spool, on_command=lambda data: None)
    link.start()
    try:
        assert wait_until(lambda: link.attempts >= 2, 10), \
            f"{link.attempts} connection attempts: {link.last_error!r}"
        assert "CERTIFICATE_VERIFY_FAILED" in link.last_error
        assert link.connects == 0
    finally:
        link.stop()
        spool.close()


def test_production_mosquitto_conf_starts(tmp_path: Path, tls_files: TlsFiles) -> None:
    """provisioning/mosquitto/mosquitto.conf, with paths and ports moved to a temp dir, set
    up as its comment says: dynsec init, then the fleet creates a device's client."""
    tls_port, plain_port = free_port(), free_port()
    text = (PROVISIONING / "mosquitto.conf").read_text()
    for old, new in {
        "/etc/mosquitto/certs/ca.crt": str(tls_files.ca_file),
        "/etc/mosquitto/certs/server.crt": str(tls_files.cert_file),
        "/etc/mosquitto/certs/server.key": str(tls_files.key_file),
        "/var/lib/mosquitto/": f"{tmp_path}/",
        "listener 8883": f"listener {tls_port} 127.0.0.1",
        "listener 1883 127.0.0.1": f"listener {plain_port} 127.0.0.1",
        "log_dest syslog": f"log_dest file {tmp_path / 'log'}",
    }.items():
        assert old in text
        text = text.replace(old, new)
    conf = tmp_path / "mosquitto.conf"
    conf.write_text("user root\n" + text)
    subprocess.run(["mosquitto_ctrl", "dynsec", "init", str(tmp_path / "dynamic-security.json"),
                    "admin", "admin-pw"], check=True, capture_output=True)
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        wait_for_port(plain_port)
        wait_for_port(tls_port)
        admin = DynsecAdmin(AdminLogin(f"mqtt://127.0.0.1:{plain_port}", "admin", "admin-pw"))
        admin.put_device(PREFIX, "room-a", "pw-a-long-enough")
        # The plugin saved it: the client survives a broker restart.
        saved = json.loads((tmp_path / "dynamic-security.json").read_text())
        assert "room-a" in [c["username"] for c in saved["clients"]]
        sub = Subscriber(tls_port, [], username="room-a", password="pw-a-long-enough",
                         ca_file=tls_files.ca_file)
        sub.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert b"Error" not in err, err
