"""Silence is a fault too: a lesson's end that does not answer, a device never heard
from, and an agent the broker lets in but the inventory refuses.

Each becomes a :class:`Signal` like any fault, so it fires, names the lesson, reminds,
escalates and resolves through the one life-cycle.  A device that never connected is one
ticket from its first unanswered check on (not one per check); a device heard before is
ticketed only when its last check before the lesson goes unanswered, since a recheck
follows the first.  Its own words clear them: any check answer, or a new connection.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from fleet.alerts.signal import Observation, Signal
from fleet.checks.scheduler import Unanswered

__all__ = ["NEVER_CONNECTED", "NOT_ENROLLED", "NO_ANSWER", "heard", "stranger", "unanswered"]

NO_ANSWER: Final = "check_no_answer"
NEVER_CONNECTED: Final = "device_never_connected"
NOT_ENROLLED: Final = "device_not_enrolled"

_NEVER_ZH: Final = ("平台从未收到该设备的任何消息。请检查：电源是否打开；网络是否连通"
                    "（能否访问MQTT服务器）；设备是否已登记（代理程序配置的设备编号和密码"
                    "与平台一致）")
_NEVER_EN: Final = ("the fleet has never heard from this device. Check: is it powered on; "
                    "is its network up (can it reach the MQTT broker); is it enrolled (the "
                    "agent's device id and password match the fleet's)")


def unanswered(run: Unanswered, ever_connected: bool, now: datetime) -> Signal | None:
    """The fault an unanswered lesson check shows, if it is one yet."""
    details: dict[str, Any] = {"request_id": run.request_id, "phase": run.phase}
    if not ever_connected:
        return Signal(NEVER_CONNECTED, run.device_id, True, now, lesson_id=run.lesson_id,
                      details=details, message_zh=_NEVER_ZH, message_en=_NEVER_EN)
    if not run.final:
        return None  # the recheck asks again before anyone is called
    zh, en = run.message
    return Signal(NO_ANSWER, run.device_id, True, now, lesson_id=run.lesson_id,
                  details=details, message_zh=zh, message_en=en)


def heard(device_id: str, at: datetime, *rules: str) -> Observation:
    """The device spoke: the silences named by ``rules`` are over."""
    return Observation(device_id, at, tuple(Signal(r, device_id, False, at) for r in rules))


def stranger(
    device_id: str, at: datetime, active: bool, disabled: bool, details: dict[str, Any]
) -> Signal:
    """An agent that passed the broker's password check but is refused by the inventory."""
    if disabled:
        zh = ("该设备在清单中已停用，但仍在连接上报，消息被拒收。请确认教室里这台电脑"
              "是否应运行：应运行则在清单中启用，否则关闭它或收回其MQTT账号")
        en = ("disabled in the inventory but still connecting; its messages are refused. "
              "Should this classroom PC run? Enable it in the inventory, or switch it off "
              "or revoke its MQTT account")
    else:
        zh = ("该设备的MQTT账号有效，但设备清单中没有它，消息被拒收。请在清单中登记它，"
              "或收回其MQTT账号")
        en = ("its MQTT account works but the inventory does not list it; its messages are "
              "refused. Enrol it in the inventory, or revoke its MQTT account")
    return Signal(NOT_ENROLLED, device_id, active, at, details=details,
                  message_zh=zh, message_en=en)
