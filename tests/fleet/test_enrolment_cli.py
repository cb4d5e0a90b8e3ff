"""`syncclass-fleet broker-init` and `device enrol-code / rotate / revoke` on a real
database and a real Mosquitto with the dynamic security plugin."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from fleet.broker import Mosquitto
from fleet.cli import main
from fleet.db.base import make_engine, session_scope
from fleet.db.models import AuditEntry, Device, EnrolCode
from fleet.enrolment import CODE_ALPHABET, code_hash
from fleet.inventory import DEMO_INVENTORY

LUXI = "dongtou-luxi-sync1"
LUXI_ROOM = "洞头区鹿西乡小学/同步课堂教室"
CODE = re.compile(rf"[{CODE_ALPHABET}]{{4}}-[{CODE_ALPHABET}]{{4}}")


@pytest.fixture(scope="module")
def inventory_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo inventory loaded once by the CLI (argon2 hashing the people is slow)."""
    directory = tmp_path_factory.mktemp("cli-inventory")
    config = directory / "fleet.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{directory / "fleet.db"}"\n')
    assert main(["load-inventory", "--config", str(config), str(DEMO_INVENTORY)]) == 0
    return directory / "fleet.db"


@pytest.fixture
def broker(tmp_path: Path, inventory_db: Path) -> Iterator[Mosquitto]:
    shutil.copyfile(inventory_db, tmp_path / "fleet.db")
    with Mosquitto(workdir=tmp_path / "mqtt", dynsec=True) as mq:
        yield mq


def _config(tmp_path: Path, broker: Mosquitto) -> str:
    config = tmp_path / "fleet.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "fleet.db"}"\n'
        f'[actions]\nkey_file = "{tmp_path / "key"}"\n'
        f'[mqtt]\nurl = "{broker.url}"\nusername = "fleet"\npassword = "fleet-pw"\n'
        f'[enrol]\nadmin_username = "admin"\nadmin_password = "{broker.admin_password}"\n'
        f'fleet_url = "https://fleet.dongtou.example.cn"\n'
    )
    return str(config)


def _rows(tmp_path: Path, model: type[AuditEntry] | type[EnrolCode]) -> list[object]:
    engine = make_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    with session_scope(sessionmaker(engine, expire_on_commit=False)) as session:
        rows: list[object] = list(session.scalars(select(model)))
    engine.dispose()
    return rows


def _connects(broker: Mosquitto, username: str, password: str) -> str:
    """The broker's CONNACK reason for these credentials."""
    answer: list[str] = []
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{username}",
                         protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)

    def on_connect(c: mqtt.Client, u: object, f: object, reason: object, p: object) -> None:
        answer.append(str(reason))
        done.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        assert done.wait(10)
    finally:
        client.disconnect()
        client.loop_stop()
    return answer[0]


def test_broker_init_creates_the_fleet_client_once(
    tmp_path: Path, broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, broker)
    assert _connects(broker, "fleet", "fleet-pw") == "Not authorized"
    assert main(["broker-init", "--config", config]) == 0
    assert main(["broker-init", "--config", config]) == 0, "a second run changes nothing"
    assert _connects(broker, "fleet", "fleet-pw") == "Success"


def test_enrol_code_is_printed_once_and_stored_hashed(
    tmp_path: Path, broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, broker)
    capsys.readouterr()
    assert main(["device", "enrol-code", "--config", config, "--classroom", LUXI_ROOM,
                 "--hours", "2"]) == 0
    out = capsys.readouterr().out
    found = CODE.search(out)
    assert found, out
    assert f"syncclass-agent enrol {found.group()} --fleet https://fleet.dongtou.example.cn" in out
    [row] = _rows(tmp_path, EnrolCode)
    assert isinstance(row, EnrolCode)
    assert row.code_hash == code_hash(found.group())
    assert found.group().replace("-", "") not in row.code_hash
    assert row.device_id is None
    assert row.expires_at - row.created_at == timedelta(hours=2)

    # rotate: a code that replaces the device, in its classroom.
    assert main(["device", "rotate", "--config", config, LUXI]) == 0
    assert "旧凭据在注册后失效" in capsys.readouterr().out
    rotated = [r for r in _rows(tmp_path, EnrolCode)
               if isinstance(r, EnrolCode) and r.device_id == LUXI]
    assert len(rotated) == 1

    # Unknown classroom or device: a clear refusal, nothing stored.
    assert main(["device", "enrol-code", "--config", config, "--classroom", "不存在/教室"]) == 1
    assert "unknown school" in capsys.readouterr().err
    assert main(["device", "rotate", "--config", config, "no-such-device"]) == 1
    assert "unknown device" in capsys.readouterr().err
    assert len(_rows(tmp_path, EnrolCode)) == 2


def test_revoke_disables_the_device_and_its_broker_client(
    tmp_path: Path, broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    from fleet.dynsec import DynsecAdmin

    config = _config(tmp_path, broker)
    DynsecAdmin(broker.admin_login).put_device("syncclass/v1", LUXI, "luxi-password-0123456789")
    assert _connects(broker, LUXI, "luxi-password-0123456789") == "Success"

    assert main(["device", "revoke", "--config", config, LUXI, "--reason", "更换主机"]) == 0
    assert "已吊销 Revoked" in capsys.readouterr().out
    assert _connects(broker, LUXI, "luxi-password-0123456789") == "Not authorized"
    audits = [a for a in _rows(tmp_path, AuditEntry) if isinstance(a, AuditEntry)]
    assert [(a.action, a.device_id, a.reason, a.actor.startswith("cli:")) for a in audits] == [
        ("revoke", LUXI, "更换主机", True)]
    engine = make_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    with session_scope(sessionmaker(engine)) as session:
        assert session.get_one(Device, LUXI).enabled is False
    engine.dispose()


def test_revoke_with_the_broker_down_changes_nothing(
    tmp_path: Path, broker: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, broker)
    broker.stop()
    assert main(["device", "revoke", "--config", config, LUXI]) == 1
    assert "nothing changed" in capsys.readouterr().err
    assert _rows(tmp_path, AuditEntry) == []
    engine = make_engine(f"sqlite:///{tmp_path / 'fleet.db'}")
    with session_scope(sessionmaker(engine)) as session:
        assert session.get_one(Device, LUXI).enabled is True
    engine.dispose()
