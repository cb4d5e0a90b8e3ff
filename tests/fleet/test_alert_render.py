from __future__ import annotations

from fleet.alerts.render import summary


def test_agent_words_that_restate_the_title_replace_it() -> None:
    agent_words = ("Student camera：摄像头未连接（USB 线松动）", "Student camera: camera missing")
    zh, en = summary("camera_missing", "camera", None, agent_words)
    assert zh == "Student camera：摄像头未连接（USB 线松动）"
    assert en == "Student camera: camera missing"


def test_other_agent_words_follow_the_title() -> None:
    zh, en = summary("network_loss", "target:peer", None, ("丢包 8%", "loss 8%"))
    assert zh == "网络丢包过高（target:peer）：丢包 8%"
    assert en == "packet loss too high (target:peer): loss 8%"
