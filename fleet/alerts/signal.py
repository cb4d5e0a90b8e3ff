"""What the rules tell the engine: a fault on one entity of one device, active or clear.

A :class:`Signal` names its rule, device and entity (the fingerprint of its ticket) and
says whether the fault is present.  An :class:`Observation` is everything one message
says: its signals plus the rules it reports on completely, so that an open alert of such
a rule that the message no longer mentions (a camera that vanished from the list) clears.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

__all__ = ["FLEET_RULES", "RULES", "Observation", "RuleInfo", "Signal", "fingerprint", "rule_info"]


@dataclass(frozen=True)
class RuleInfo:
    severity: str  # critical / warning / info
    title_zh: str
    title_en: str


#: Every rule: those an agent's reason feeds (agent.contract.REASONS) and those the fleet
#: raises from what it sees itself (FLEET_RULES).  A rule neither reaches is dead.
RULES: Final[dict[str, RuleInfo]] = {
    "device_offline": RuleInfo("critical", "设备离线", "device offline"),
    "device_silent": RuleInfo("critical", "设备在线但停止上报", "device connected but silent"),
    "device_cloned": RuleInfo("critical", "设备身份被多台电脑共用（克隆镜像）",
                              "device identity shared by several PCs (cloned image)"),
    "camera_missing": RuleInfo("critical", "摄像头未连接", "camera missing"),
    "camera_black": RuleInfo("critical", "摄像头画面全黑", "camera picture black"),
    "camera_frozen": RuleInfo("critical", "摄像头画面冻结", "camera picture frozen"),
    "camera_fault": RuleInfo("warning", "摄像头异常", "camera problem"),
    "mic_missing": RuleInfo("critical", "麦克风未连接", "microphone missing"),
    "mic_silent": RuleInfo("critical", "麦克风无声", "microphone silent"),
    "mic_clipping": RuleInfo("warning", "麦克风削波失真", "microphone clipping"),
    "mic_fault": RuleInfo("warning", "麦克风异常", "microphone problem"),
    "speaker_missing": RuleInfo("critical", "扬声器未连接", "speaker missing"),
    "display_disconnected": RuleInfo("critical", "显示器未连接", "display disconnected"),
    "target_unreachable": RuleInfo("critical", "网络目标不可达", "network target unreachable"),
    "network_loss": RuleInfo("warning", "网络丢包过高", "packet loss too high"),
    "network_jitter": RuleInfo("warning", "网络抖动过大", "network jitter too high"),
    "network_rtt": RuleInfo("warning", "网络延迟过高", "network round trip too long"),
    "network_fault": RuleInfo("warning", "网络异常", "network problem"),
    "bandwidth_low": RuleInfo("warning", "带宽不足", "bandwidth too low"),
    "camera_stream_failed": RuleInfo("critical", "网络摄像头无法取流",
                                     "network camera stream fails"),
    "av_host_unreachable": RuleInfo("warning", "编码器或录播主机无法连接",
                                    "encoder or recording host unreachable"),
    "avgear_fault": RuleInfo("warning", "网络音视频设备异常", "network AV equipment problem"),
    "disk_full": RuleInfo("warning", "磁盘空间不足", "disk nearly full"),
    "overheating": RuleInfo("warning", "设备温度过高", "device overheating"),
    "clock_unsynced": RuleInfo("warning", "系统时钟未同步", "clock not synchronised"),
    "clock_skew": RuleInfo("warning", "设备时钟与平台相差过大", "device clock far off the fleet's"),
    "probe_failed": RuleInfo("warning", "检测程序出错", "probe failed"),
    "check_failed": RuleInfo("critical", "课前检测未通过", "pre-class check failed"),
    # Silence is a fault too (fleet.alerts.silence).
    "check_no_answer": RuleInfo("critical", "课前检测无应答", "no answer to the pre-class check"),
    "device_never_connected": RuleInfo("critical", "设备从未连接", "device never connected"),
    "device_not_enrolled": RuleInfo("warning", "未登记或已停用的设备在上报",
                                    "unenrolled or disabled device reporting"),
}


#: Rules the fleet raises from its own observations, not from an agent's reason.
FLEET_RULES: Final = frozenset({
    "device_offline", "device_silent", "device_cloned", "clock_skew", "check_failed",
    "check_no_answer", "device_never_connected", "device_not_enrolled",
})


def rule_info(rule: str) -> RuleInfo:
    return RULES.get(rule, RuleInfo("warning", rule, rule))


def fingerprint(rule: str, device_id: str, entity: str) -> str:
    """The identity of a ticket: one per rule, device and entity."""
    return f"{rule}|{device_id}|{entity}"


@dataclass(frozen=True)
class Signal:
    rule: str
    device_id: str
    active: bool
    at: datetime
    entity: str = ""  # "camera:<id>", "target:peer", "" for the device itself
    classroom_id: int | None = None  # for a device the inventory does not know
    severity: str = ""  # "" = the rule's default
    value: float | None = None
    threshold: float | None = None
    lesson_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    message_zh: str = ""  # the agent's own words, when it gave some
    message_en: str = ""

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("signal time must be timezone-aware")

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.rule, self.device_id, self.entity)

    @property
    def level(self) -> str:
        return self.severity or rule_info(self.rule).severity


@dataclass(frozen=True)
class Observation:
    device_id: str
    at: datetime
    signals: tuple[Signal, ...] = ()
    # Rules this message reports on in full: their open alerts it does not mention cleared.
    covers: frozenset[str] = frozenset()
    # Entity prefixes it does not report on, whatever the rule (see rules.CHECK_TARGETS).
    spared: tuple[str, ...] = ()
    # The agent's (session, seq) of the message; None for what the fleet observes itself
    # (silence, skew, unanswered checks), which is ordered by receive time.
    order: tuple[int, int] | None = None
