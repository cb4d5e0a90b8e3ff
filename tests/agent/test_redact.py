"""An RTSP camera's password stays in the agent's config: never in what the agent sends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.cli import main
from agent.redact import redact, redact_json
from fleet.broker import Mosquitto
from tests.agent.agentkit import PREFIX, Subscriber, make_config, public_key, running_agent, sign

SECRET = "s3cr/et:Pw"  # unescaped "/" and ":" as people paste them
KEY = Ed25519PrivateKey.generate()


@pytest.mark.parametrize(("text", "shown"), [
    ("rtsp://admin:hunter2@10.0.0.5:554/Streaming/Channels/101",
     "rtsp://admin:***@10.0.0.5:554/Streaming/Channels/101"),
    (f"rtsp://admin:{SECRET}@10.0.0.5/h264: Connection refused",
     "rtsp://admin:***@10.0.0.5/h264: Connection refused"),
    ("[tcp] rtsp://:pw@h/a and http://u:p@h2:80/b", "[tcp] rtsp://:***@h/a and http://u:***@h2:80/b"),
    ("rtsp://10.0.0.5/cam/realmonitor?channel=1&user=admin&password=x1y2&subtype=0",
     "rtsp://10.0.0.5/cam/realmonitor?channel=1&user=admin&password=***&subtype=0"),
    # Nothing secret: left alone.
    ("rtsp://admin@10.0.0.5/live", "rtsp://admin@10.0.0.5/live"),
    ("rtsp://10.0.0.5:554/live", "rtsp://10.0.0.5:554/live"),
    ("摄像头已连接：podium", "摄像头已连接：podium"),
])
def test_redact(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_redact_json_covers_keys_nested_values_and_leaves_other_types() -> None:
    value = {"rtsp://a:b@h/x": [{"node": "rtsp://a:b@h/x", "n": 3, "ok": True, "v": None}]}
    assert redact_json(value) == {"rtsp://a:***@h/x": [
        {"node": "rtsp://a:***@h/x", "n": 3, "ok": True, "v": None}]}


def _camera_url(port: int) -> str:
    # Nothing listens there: ffmpeg fails and names the URL in its error line.
    return f"rtsp://admin:{SECRET}@127.0.0.1:{port}/Streaming/Channels/101"


def test_no_message_of_a_real_agent_carries_the_password(
        broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = _camera_url(9)
    # One camera named by an id, one whose id is the URL itself (the TOML key).
    cfg = make_config(tmp_path, broker.url, agent={"interval": 3600},
                      hardware={"backend": "linux", "cameras": {"ptz": url, url: url}},
                      commands={"fleet_public_key": public_key(KEY)})
    sub = Subscriber(broker.port, [f"{PREFIX}/dev/room-1/#"])
    with running_agent(cfg):
        sub.wait_for(lambda m: m[0].endswith("/status") and m[1].get("state") == "online")
        sub.wait_for(lambda m: m[0].endswith("/telemetry"))
        check = sign(KEY, "room-1", "run-check", {"uplink": False})
        sub.publish(f"{PREFIX}/dev/room-1/cmd", check)
        (_, report, _), = sub.wait_for(lambda m: m[0].endswith("/check"), timeout=60)
    sub.close()
    sent = json.dumps([m[1] for m in sub.messages], ensure_ascii=False)
    assert "s3cr" not in sent
    shown = "rtsp://admin:***@127.0.0.1:9/Streaming/Channels/101"
    [birth] = [m[1] for m in sub.messages if m[0].endswith("/status") and "inventory" in m[1]]
    assert {(c["id"], c["node"]) for c in birth["inventory"]["cameras"]} == {
        ("ptz", shown), (shown, shown)}
    failed = [f for f in report["findings"] if f["reason"] == "camera_capture_failed"]
    assert {f["entity"] for f in failed} == {"camera:ptz", f"camera:{shown}"}
    assert any(shown in f["message_en"] for f in failed), "ffmpeg's error names the camera"

    config = tmp_path / "agent.toml"
    config.write_text(f'device_id = "room-1"\n[hardware.cameras]\nptz = "{url}"\n')
    main(["check", "--config", str(config), "--json"])
    main(["inventory", "--config", str(config)])
    printed = capsys.readouterr().out
    assert "s3cr" not in printed and shown in printed
