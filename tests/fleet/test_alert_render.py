from __future__ import annotations

from fleet.alerts.render import summary


def test_agent_words_that_restate_the_title_replace_it() -> None:
    agent_words = ("Student camera：摄像头未连接（USB 线松动）", "Student camera: camera missing")
    zh, en = summary("camera_missing", "camera", None, agent_words)
    assert zh == "Student camera：摄像头未连接（USB 线松动）"
    assert en == "Student camera: camera missing"


def test_other_agent_words_follow_the_title_and_targets_are_said_in_words() -> None:
    zh, en = summary("network_loss", "target:peer", None, ("peer：丢包 8%", "peer: loss 8%"))
    assert zh == "网络丢包过高（对端教室）：对端教室：丢包 8%"
    assert en == "packet loss too high (the partner classroom): the partner classroom: loss 8%"


def test_the_place_at_fault_leads_the_line() -> None:
    zh, en = summary("disk_full", "", None, place=("竹里乡小学 同步课堂教室",) * 2)
    assert zh == "竹里乡小学 同步课堂教室：磁盘空间不足"
    assert en == "竹里乡小学 同步课堂教室: disk nearly full"
