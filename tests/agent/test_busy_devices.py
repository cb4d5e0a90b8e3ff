"""A device held by another process is evidence, not a failure: a real second process
holds a device node, and the real /proc scan names it.

This machine has no camera and no sound card (/dev/snd is missing), so the nodes are
files the probe is configured to use (an extra camera's node; a PCM's node through a
test /proc/asound link and /dev/snd directory).  What holds them is a real process that
renamed itself as a conferencing app does ("zoom"): /proc/PID/fd, comm and the owner are
read as on a classroom PC.  Without a holder, the same check samples the node, and
ffmpeg/arecord fail on it: that is how the tests see that a held device was not sampled.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.hardware.base import HardwareError
from agent.hardware.holders import Holder, holders, in_use_texts, pcm_node
from agent.hardware.linux import LinuxHardware, pulse_server
from agent.probes.base import CheckParams, ProbeContext
from agent.probes.camera import CameraProbe
from agent.probes.microphone import MicrophoneProbe
from agent.thresholds import Thresholds
from tests.agent.fixtures.media import pulse_session
from tests.waiting import wait_until

__all__ = ["pulse_session"]  # fixture used here

_HOLD = """
import os, sys
with open("/proc/self/comm", "w") as comm:
    comm.write(sys.argv[2])
held = open(sys.argv[1], "rb")
print(os.getpid(), flush=True)
sys.stdin.read()
"""


@contextmanager
def held(node: Path, app: str = "zoom") -> Iterator[int]:
    """A real process with ``node`` open until the block ends; yields its pid.

    Started through a shell that exits at once, so it is no child of this process (the
    lesson's app is never the agent's child, and the agent's own children are skipped).
    """
    # An asynchronous command's stdin is /dev/null unless redirected from a saved copy.
    shell = subprocess.Popen(["sh", "-c", 'exec 3<&0; "$@" <&3 3<&- &', "sh",
                              sys.executable, "-c", _HOLD,
                              str(node), app],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert shell.stdin is not None and shell.stdout is not None
    try:
        pid = int(shell.stdout.readline())
        yield pid
    finally:
        shell.stdin.close()  # the holder exits at end of input
        shell.wait(timeout=10)
    # Its files closed (exited; the container's init may reap it later).
    assert wait_until(lambda: not any(Path(f"/proc/{pid}/fd").glob("*")), timeout=10)


def test_holders_names_the_process_its_app_and_its_user(tmp_path: Path) -> None:
    node = tmp_path / "video0"
    node.write_bytes(b"")
    assert holders(str(node)) == []
    with held(node) as pid:
        found = holders(str(node))
        assert found == [Holder(pid, "zoom", getpass.getuser())]
        assert in_use_texts(found) == (f"正在被 zoom ({getpass.getuser()}) 使用",
                                       f"in use by zoom ({getpass.getuser()})")
    assert holders(str(node)) == []
    # Not a node: a URL, a lavfi spec, a file that is gone.
    assert holders("rtsp://cam/stream") == holders(str(tmp_path / "gone")) == []


def test_pcm_names_become_their_capture_node(tmp_path: Path) -> None:
    asound, snd = tmp_path / "asound", tmp_path / "snd"
    (asound / "card2").mkdir(parents=True)
    (asound / "C920").symlink_to("card2")
    assert pcm_node("plughw:CARD=C920,DEV=0", asound, snd) == str(snd / "pcmC2D0c")
    assert pcm_node("hw:3,1", asound, snd) == str(snd / "pcmC3D1c")
    assert pcm_node("hw:C920", asound, snd, capture=False) == str(snd / "pcmC2D0p")
    # PipeWire's "default" or an unknown card: no node to look at.
    assert pcm_node("default", asound, snd) == pcm_node("plughw:CARD=Gone,DEV=0",
                                                        asound, snd) == ""


def test_a_held_camera_is_in_use_and_not_sampled(tmp_path: Path) -> None:
    node = tmp_path / "video0"
    node.write_bytes(b"")
    ctx = ProbeContext(LinuxHardware(extra_cameras={"cam": str(node)}), Thresholds(), {})
    probe = CameraProbe()
    with held(node) as pid:
        report = probe.check(ctx, CheckParams())
    [camera] = report.section["devices"]
    assert report.findings == [] and camera["ok"] is True and camera["sampled"] is False
    assert camera["held_by"] == [{"pid": pid, "app": "zoom", "user": getpass.getuser()}]
    assert camera["message"] == (f"cam：正在被 zoom ({getpass.getuser()}) 使用 / "
                                 f"cam: in use by zoom ({getpass.getuser()})")
    # Free now: the check samples it, and ffmpeg cannot read a plain file as V4L2.
    report = probe.check(ctx, CheckParams())
    [camera] = report.section["devices"]
    assert camera["ok"] is False and camera["reason"] == "camera_capture_failed"
    assert camera["sampled"] is True and "held_by" not in camera


def test_a_held_microphone_is_in_use_and_not_sampled(tmp_path: Path) -> None:
    asound, snd = tmp_path / "asound", tmp_path / "snd"
    (asound / "card1").mkdir(parents=True)
    (asound / "Speak").symlink_to("card1")
    snd.mkdir()
    node = snd / "pcmC1D0c"
    node.write_bytes(b"")
    hardware = LinuxHardware(extra_microphones={"speak": "plughw:CARD=Speak,DEV=0"},
                             asound_root=asound, snd_root=snd)
    ctx = ProbeContext(hardware, Thresholds(), {})
    probe = MicrophoneProbe()
    with held(node, "wemeetapp") as pid:
        report = probe.check(ctx, CheckParams())
    [mic] = report.section["devices"]
    assert report.findings == [] and mic["ok"] is True
    assert [h["pid"] for h in mic["held_by"]] == [pid]
    assert "in use by wemeetapp" in mic["message"]
    # Free: arecord is run, and this machine has no card "Speak".
    [mic] = probe.check(ctx, CheckParams()).section["devices"]
    assert mic["ok"] is False and mic["reason"] == "microphone_capture_failed"


def test_a_fault_found_before_stands_while_the_app_holds_the_device(tmp_path: Path) -> None:
    """Opening a silent microphone in the lesson's app does not make it work again."""
    node = tmp_path / "video0"
    node.write_bytes(b"")
    ctx = ProbeContext(LinuxHardware(extra_cameras={"cam": str(node)}), Thresholds(), {})
    probe = CameraProbe()
    first = probe.check(ctx, CheckParams())  # free: sampled, and it fails
    with held(node):
        again = probe.check(ctx, CheckParams())
    [camera] = again.section["devices"]
    assert [f.reason for f in again.findings] == [f.reason for f in first.findings] == [
        "camera_capture_failed"]
    assert camera["ok"] is False and camera["sampled"] is False and camera["held_by"]


def test_microphones_through_pulseaudio_are_shared_not_taken(pulse_session: str) -> None:
    """parec records beside another recorder of the same source: a stream of the sound
    server, where ALSA's hw PCM would be busy."""
    hardware = LinuxHardware(extra_microphones={"room": "pulse:tone",
                                                "muted": "pulse:quiet.monitor",
                                                "gone": "pulse:no-such-source"},
                             pulse_server=pulse_session)
    ctx = ProbeContext(hardware, Thresholds(), {})
    other = subprocess.Popen(["parec", "-d", "tone", "--raw"], stdout=subprocess.DEVNULL,
                             env={**os.environ, "PULSE_SERVER": pulse_session})
    try:
        report = MicrophoneProbe().check(ctx, CheckParams())
    finally:
        other.terminate()
        other.wait(timeout=10)
    devices = {d["id"]: d for d in report.section["devices"]}
    assert devices["room"]["ok"] is True and devices["room"]["sampled"] is True
    assert -30 < devices["room"]["level_dbfs"] < 0 and "held_by" not in devices["room"]
    assert devices["muted"]["reason"] == "microphone_silent"
    assert devices["gone"]["reason"] == "microphone_capture_failed"
    assert "no-such-source" in devices["gone"]["message"]


def test_the_sound_server_is_found_in_the_users_session(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PULSE_SERVER", raising=False)
    with pytest.raises(HardwareError) as err:
        pulse_server("", tmp_path)
    assert err.value.reason == "sound_server_missing"
    (tmp_path / "1000" / "pulse").mkdir(parents=True)
    (tmp_path / "1000" / "pulse" / "native").write_bytes(b"")
    assert pulse_server("", tmp_path) == f"unix:{tmp_path}/1000/pulse/native"
    monkeypatch.setenv("PULSE_SERVER", "unix:/run/syncclass/pulse")
    assert pulse_server("", tmp_path) == "unix:/run/syncclass/pulse"
    assert pulse_server("tcp:10.0.0.5", tmp_path) == "tcp:10.0.0.5"


def test_alsa_names_a_pcms_owner_to_an_agent_that_cannot_see_its_fds(tmp_path: Path) -> None:
    """/proc/asound/cardN/pcmDc/subK/status is ALSA's own word on who has a PCM open (here
    a test copy in the kernel's format, the owner a real process)."""
    asound, snd = tmp_path / "asound", tmp_path / "snd"
    sub = asound / "card1" / "pcm0c" / "sub0"
    sub.mkdir(parents=True)
    (asound / "Speak").symlink_to("card1")
    (sub / "status").write_text("closed\n")
    hardware = LinuxHardware(extra_microphones={"speak": "plughw:CARD=Speak,DEV=0"},
                             asound_root=asound, snd_root=snd)
    [mic] = hardware.microphones()
    assert hardware.holders(mic) == []
    (tmp_path / "stream").write_bytes(b"")
    with held(tmp_path / "stream", "wemeetapp") as pid:  # a real owner process
        (sub / "status").write_text(
            f"state: RUNNING\nowner_pid   : {pid}\ntrigger_time: 5.1\n")
        assert hardware.holders(mic) == [Holder(pid, "wemeetapp", getpass.getuser())]


def test_the_agents_own_children_are_not_holders(tmp_path: Path) -> None:
    """A check's ffmpeg, seen by a collection running meanwhile, is not the lesson's app."""
    node = tmp_path / "video0"
    node.write_bytes(b"")
    with node.open("rb") as mine, held(node) as other:
        child = subprocess.Popen(["sleep", "30"], pass_fds=(mine.fileno(),))
        try:
            assert [h.pid for h in holders(str(node))] == [other]
        finally:
            child.kill()
            child.wait()
