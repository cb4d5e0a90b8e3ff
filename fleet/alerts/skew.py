"""A device clock far off the fleet's is itself a fault, with the fix in the text."""

from __future__ import annotations

from datetime import datetime

from fleet.alerts.signal import Signal

__all__ = ["skew_signal"]


def skew_signal(device_id: str, offset_s: float, skewed: bool, now: datetime) -> Signal:
    """``offset_s`` seconds off the fleet's clock; ``skewed`` beyond the configured limit."""
    return Signal(
        "clock_skew", device_id, skewed, now, value=round(offset_s, 1),
        details={"offset_s": round(offset_s, 1)},
        message_zh=f"设备时钟比平台{'快' if offset_s > 0 else '慢'}{_span_zh(offset_s)}。"
        "请在设备上启用NTP时间同步（运行 timedatectl 查看 \"System clock synchronized\"，"
        "用 timedatectl set-ntp true 开启）；若正好相差整数小时，检查BIOS时钟是否设成了"
        "本地时间（timedatectl set-local-rtc 0）",
        message_en=f"the device clock is {_span_en(offset_s)} "
        f"{'ahead of' if offset_s > 0 else 'behind'} the fleet's. Enable NTP on the "
        "device (timedatectl shows \"System clock synchronized\"; timedatectl set-ntp "
        "true turns it on); a whole number of hours off means the BIOS clock is kept in "
        "local time (timedatectl set-local-rtc 0)",
    )


def _span_zh(offset_s: float) -> str:
    hours, rest = divmod(round(abs(offset_s)), 3600)
    return f"{hours}小时{rest // 60}分" if hours else f"{rest // 60}分{rest % 60}秒"


def _span_en(offset_s: float) -> str:
    hours, rest = divmod(round(abs(offset_s)), 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min {rest % 60} s"

