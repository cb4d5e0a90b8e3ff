"""The ingest over TLS with a password, as production runs it, and with bad credentials."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.contract import DEFAULT_PREFIX, Kind
from fleet.broker import Mosquitto, device_acl, make_test_ca
from fleet.db.base import SessionFactory
from fleet.ingest import IngestConfig, MqttIngest, create_ingest
from tests.fleet.ingest_helpers import Recorder, inventory_db, telemetry, wait_until


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    tls = make_test_ca(tmp_path / "ca")
    with Mosquitto(workdir=tmp_path / "mqtt", users={"fleet": "s3cret", "dev-a": "pw-a"},
                   acl=device_acl(DEFAULT_PREFIX), tls=tls) as mq:
        yield mq


def ingest_for(url: str, ca: Path, password: str, sessions: SessionFactory,
               sink: Recorder) -> MqttIngest:
    config = IngestConfig(url=url, username="fleet", password=password, ca_file=ca,
                          reconnect_min_s=0.05, reconnect_max_s=0.2)
    ingest = create_ingest(config, sessions, [sink])
    ingest.start()
    return ingest


def test_tls_with_password_receives_device_telemetry(
    secure_broker: Mosquitto, tmp_path: Path
) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from agent.contract import encode, topic

    assert secure_broker.tls is not None
    sessions, sink = inventory_db(tmp_path), Recorder()
    ingest = ingest_for(secure_broker.tls_url, secure_broker.tls.ca_file, "s3cret", sessions,
                        sink)
    assert ingest.wait_ready(10)
    dev = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="dev-a",
                      protocol=mqtt.MQTTv5)
    dev.username_pw_set("dev-a", "pw-a")
    dev.tls_set(ca_certs=str(secure_broker.tls.ca_file))
    dev.connect("127.0.0.1", secure_broker.tls_port)
    dev.loop_start()
    dev.publish(topic(DEFAULT_PREFIX, "dev-a", Kind.TELEMETRY),
                encode(telemetry("dev-a", 1)), qos=1).wait_for_publish(5)
    assert wait_until(lambda: len(sink.of("telemetry")) == 1)
    dev.disconnect()
    dev.loop_stop()
    ingest.close()


def test_wrong_password_keeps_retrying_without_crashing(
    secure_broker: Mosquitto, tmp_path: Path
) -> None:
    assert secure_broker.tls is not None
    ingest = ingest_for(secure_broker.tls_url, secure_broker.tls.ca_file, "wrong",
                        inventory_db(tmp_path), Recorder())
    # Refused CONNACKs are counted, and the client keeps trying (with backoff).
    assert wait_until(lambda: ingest.connect_failures >= 2, timeout=10)
    assert not ingest.connected
    assert ingest.connects == 0
    samples = {s.name: s.value for s in ingest.samples()}
    assert samples["syncclass_ingest_connected"] == 0
    ingest.close()
