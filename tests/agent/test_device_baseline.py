"""Expected devices: roles, identity and the persisted baseline, on umockdev testbeds.

Each ``boot`` runs tests/agent/umockdev_devices.py under ``umockdev-wrapper``: the real
LinuxHardware and presence probes on the fixtures in fixtures/umockdev (hand-written from
real devices' udev properties), with the baseline in a state directory that outlives the
process, as /var/lib/syncclass-agent outlives a reboot.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.app import probe_context
from agent.baseline import FILE_NAME, Baseline
from agent.config import AgentConfig, RuntimeConfig, parse_config
from agent.hardware.simulated import SimulatedHardware
from agent.probes.speaker import SpeakerProbe
from agent.settings import ConfigError

ROOT = Path(__file__).resolve().parents[2]
UMOCKDEV = Path(__file__).parent / "fixtures" / "umockdev"
C920 = UMOCKDEV / "c920.umockdev"
JABRA = UMOCKDEV / "jabra-speak-510.umockdev"
HDA = UMOCKDEV / "intel-hda.umockdev"
LOOPBACK = UMOCKDEV / "v4l2loopback.umockdev"
CAMERA_A = "046d:082d:8A2B3C4D"
JABRA_ID = "0b0e:0422:745C4B6A1F02021200:0"

needs_umockdev = pytest.mark.skipif(shutil.which("umockdev-wrapper") is None,
                                    reason="needs umockdev (Makefile DEBS_TEST)")


def boot(state: Path, *fixtures: Path, onboard: tuple[str, ...] = ()) -> dict[str, Any]:
    state.mkdir(exist_ok=True)
    cmd = ["umockdev-wrapper", sys.executable, "-m", "tests.agent.umockdev_devices",
           "--state", str(state)]
    cmd += [arg for pcm in onboard for arg in ("--onboard", pcm)]
    done = subprocess.run([*cmd, *map(str, fixtures)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def devices(result: dict[str, Any], probe: str) -> dict[str, dict[str, Any]]:
    return {d["id"]: d for d in result[probe]["devices"]}


def variant(tmp_path: Path, source: Path, name: str, changes: dict[str, str]) -> Path:
    """A copy of ``source`` with text replaced: another unit, or the same one elsewhere."""
    text = source.read_text()
    for old, new in changes.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f"{name}.umockdev"
    path.write_text(text)
    return path


def moved(tmp_path: Path, source: Path, name: str) -> Path:
    """``source`` plugged into USB port 1-4 of the same controller instead of 1-2."""
    return variant(tmp_path, source, name, {"1-2": "1-4", "usb-0:2:": "usb-0:4:"})


@needs_umockdev
def test_roles_from_capabilities(tmp_path: Path) -> None:
    result = boot(tmp_path / "state", C920, JABRA, HDA, LOOPBACK)
    # udev lists them all; the probes count what is a camera, microphone or speaker.
    assert {"video0", "video1", "video10", "pcmC0D0p", "pcmC0D3p", "pcmC0D7p", "pcmC0D0c",
            "pcmC1D0c", "pcmC1D0p", "pcmC2D0c"} <= set(result["udev"])
    # Not the C920's metadata node (video1), not the v4l2loopback camera (video10).
    assert list(devices(result, "cameras")) == [CAMERA_A]
    camera = devices(result, "cameras")[CAMERA_A]
    assert (camera["node"], camera["name"], camera["serial"]) == (
        "/dev/video0", "HD Pro Webcam C920", "8A2B3C4D")
    # The C920's own microphone and the speakerphone; the onboard codec and HDMI are not.
    assert set(devices(result, "microphones")) == {f"{CAMERA_A}:0", JABRA_ID}
    assert list(devices(result, "speakers")) == [JABRA_ID]
    assert devices(result, "speakers")[JABRA_ID]["pcm"] == "plughw:CARD=USB,DEV=0"
    assert all(not r["findings"] for k, r in result.items() if k != "udev")


@needs_umockdev
def test_onboard_pcms_count_when_listed(tmp_path: Path) -> None:
    # A classroom whose ceiling speakers hang off the HDMI projector and whose wired
    # microphone is on the codec's input: listed, they count; the second HDMI does not.
    result = boot(tmp_path / "state", HDA, onboard=("PCH:0", "PCH:3"))
    assert set(devices(result, "speakers")) == {"pci-0000:00:1f.3:0", "pci-0000:00:1f.3:3"}
    assert list(devices(result, "microphones")) == ["pci-0000:00:1f.3:0"]
    assert devices(result, "speakers")["pci-0000:00:1f.3:3"]["pcm"] == "plughw:CARD=PCH,DEV=3"
    # Unlisted, the same machine has no speaker at all, and says so.
    bare = boot(tmp_path / "bare", HDA)
    assert bare["speakers"]["findings"] == {"speaker:*": "speaker_missing"}


@needs_umockdev
def test_a_camera_moved_to_another_port_is_the_same_device(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = boot(state, C920, JABRA)
    assert devices(first, "cameras")[CAMERA_A]["bus_path"] == "pci-0000:00:14.0-usb-0:2:1.0"
    after = boot(state, moved(tmp_path, C920, "c920-port4"), JABRA)
    camera = devices(after, "cameras")
    assert list(camera) == [CAMERA_A]
    assert camera[CAMERA_A]["bus_path"] == "pci-0000:00:14.0-usb-0:4:1.0"
    assert (camera[CAMERA_A]["expected"], after["cameras"]["findings"]) == (True, {})
    assert after["microphones"]["findings"] == {}  # its microphone moved with it


@needs_umockdev
def test_without_a_serial_the_port_is_the_identity(tmp_path: Path) -> None:
    nameless = variant(tmp_path, C920, "noserial", {
        "E: ID_SERIAL_SHORT=8A2B3C4D\n": "", "A: serial=8A2B3C4D\n": ""})
    state = tmp_path / "state"
    first = boot(state, nameless)
    port_id = "046d:082d@pci-0000:00:14.0-usb-0:2:1.0"
    assert list(devices(first, "cameras")) == [port_id]
    after = boot(state, moved(tmp_path, nameless, "noserial-port4"))
    assert after["cameras"]["findings"] == {f"camera:{port_id}": "camera_missing"}


@needs_umockdev
def test_odd_and_long_serials_make_bounded_ids(tmp_path: Path) -> None:
    long_serial = "SN 0123456789" * 8  # 104 characters with spaces, as sysfs gives it
    odd = variant(tmp_path, C920, "odd-serial", {
        "E: ID_SERIAL_SHORT=8A2B3C4D\n": "", "A: serial=8A2B3C4D": f"A: serial={long_serial}"})
    [camera_id] = devices(boot(tmp_path / "state", odd), "cameras")
    head, _, digest = camera_id.removeprefix("046d:082d:").partition("~")
    assert head == "SN_0123456789SN_0123456789SN_01" and len(digest) == 8
    assert len(f"microphone:{camera_id}:0") < 128


@needs_umockdev
def test_a_missing_speakerphone_is_noticed_after_a_reboot(tmp_path: Path) -> None:
    state = tmp_path / "state"
    boot(state, C920, JABRA, HDA)
    assert (state / FILE_NAME).exists()
    after = boot(state, C920, HDA)  # rebooted without the speakerphone
    assert after["speakers"]["findings"] == {f"speaker:{JABRA_ID}": "speaker_missing"}
    assert after["microphones"]["findings"] == {f"microphone:{JABRA_ID}": "microphone_missing"}
    gone = devices(after, "speakers")[JABRA_ID]
    assert (gone["present"], gone["name"], gone["ok"]) == (False, "Jabra SPEAK 510 USB", False)
    back = boot(state, C920, JABRA, HDA)
    assert back["speakers"]["findings"] == {}


@needs_umockdev
def test_camera_b_does_not_clear_camera_a_missing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    boot(state, C920, JABRA)
    # Another C920 (another serial) plugged into camera A's port.
    other = variant(tmp_path, C920, "camera-b", {"8A2B3C4D": "1F2E3D4C"})
    after = boot(state, other, JABRA)
    assert after["cameras"]["findings"] == {f"camera:{CAMERA_A}": "camera_missing"}
    cams = devices(after, "cameras")
    assert (cams["046d:082d:1F2E3D4C"]["expected"], cams[CAMERA_A]["present"]) == (False, False)
    # Camera A back beside B: both present, nothing missing, B still not expected.  The
    # kernel gives the second camera the next node and card numbers.
    second = variant(tmp_path, moved(tmp_path, other, "camera-b-port4"), "camera-b-second", {
        "video0": "video2", "video1": "video3", "card2": "card3", "pcmC2D0c": "pcmC3D0c",
        "A: id=C920": "A: id=C920_1"})
    both = boot(state, C920, second, JABRA)
    assert both["cameras"]["findings"] == {}
    assert {i: d["expected"] for i, d in devices(both, "cameras").items()} == {
        CAMERA_A: True, "046d:082d:1F2E3D4C": False}


def test_a_damaged_baseline_is_kept_aside_and_learned_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / FILE_NAME
    path.write_text('{"version": 1, "roles": {"cameras": ')  # cut short by a power failure
    with caplog.at_level(logging.ERROR, logger="agent.baseline"):
        baseline = Baseline(path)
    assert "unreadable device baseline" in caplog.text
    assert (tmp_path / (FILE_NAME + ".bad")).read_text().endswith('"cameras": ')
    assert baseline.expected("cameras", {"cam-a": {"name": "A"}}) == {
        "cam-a": {"name": "A", "vendor": "", "model": "", "serial": ""}}
    assert set(json.loads(path.read_text())["roles"]) == {"cameras"}
    assert Baseline(path).expected("cameras", {}) == {
        "cam-a": {"name": "A", "vendor": "", "model": "", "serial": ""}}


def test_nothing_present_learns_nothing_yet(tmp_path: Path) -> None:
    # An agent installed before the camera is plugged in learns the camera, not "none".
    baseline = Baseline(tmp_path / FILE_NAME)
    assert baseline.expected("cameras", {}) == {}
    assert not (tmp_path / FILE_NAME).exists()
    assert list(baseline.expected("cameras", {"cam-a": {"name": "A"}})) == ["cam-a"]
    assert list(baseline.expected("cameras", {"cam-b": {"name": "B"}})) == ["cam-a"]


def test_configured_devices_are_expected_without_learning(tmp_path: Path) -> None:
    baseline = Baseline(tmp_path / FILE_NAME, {"cameras": ["046d:082d:8A2B3C4D"]})
    assert baseline.expected("cameras", {"other": {"name": "X"}}) == {
        "046d:082d:8A2B3C4D": {"name": "046d:082d:8A2B3C4D"}}
    assert not (tmp_path / FILE_NAME).exists()


def test_an_unwritable_state_directory_keeps_the_baseline_in_memory(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    baseline = Baseline(tmp_path / "gone" / FILE_NAME)  # its directory does not exist
    with caplog.at_level(logging.ERROR, logger="agent.baseline"):
        assert list(baseline.expected("speakers", {"spk": {"name": "S"}})) == ["spk"]
    assert "cannot save the device baseline" in caplog.text
    assert list(baseline.expected("speakers", {})) == ["spk"]


@pytest.mark.parametrize(("hardware", "key"), [
    ({"expected": {"projectors": ["x"]}}, "hardware.expected.projectors"),
    ({"expected": {"cameras": [" "]}}, "hardware.expected.cameras"),
    ({"onboard_audio": ["HDA Intel PCH"]}, "hardware.onboard_audio"),
])
def test_bad_expected_devices_in_the_config(hardware: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"device_id": "room-101", "hardware": hardware})
    assert info.value.key == key


def test_expected_devices_in_the_config() -> None:
    cfg = parse_config({"device_id": "room-101", "hardware": {
        "onboard_audio": ["PCH:0", "HDMI:3"],
        "expected": {"cameras": ["046d:082d:8A2B3C4D"], "speakers": ["PCH:0"]}}})
    assert cfg.hardware.onboard_audio == ["PCH:0", "HDMI:3"]
    assert cfg.hardware.expected["cameras"] == ["046d:082d:8A2B3C4D"]


def test_the_agent_keeps_its_baseline_in_the_state_directory(tmp_path: Path) -> None:
    hardware = SimulatedHardware()
    enrolled = AgentConfig("room-101", agent=RuntimeConfig(state_dir=tmp_path))
    ctx = probe_context(enrolled, hardware)
    assert ctx.baseline is not None and ctx.baseline.path == tmp_path / FILE_NAME
    SpeakerProbe().collect(ctx)
    assert list(json.loads((tmp_path / FILE_NAME).read_text())["roles"]) == ["speakers"]
    # A one-off `check` before enrolment (no state directory yet) writes nothing.
    adhoc = AgentConfig("room-101", agent=RuntimeConfig(state_dir=tmp_path / "none"))
    adhoc_baseline = probe_context(adhoc, hardware).baseline
    assert adhoc_baseline is not None and adhoc_baseline.path is None
