"""The classroom PC itself: CPU, memory, disk, temperature, uptime and clock sync."""

from __future__ import annotations

from typing import Any, ClassVar

from agent.contract import CheckVerdict, format_ts
from agent.probes.base import Finding, Probe, ProbeContext, ProbeReport, graded, mark

__all__ = ["SystemProbe"]

# measurement -> (reason, Chinese, English, warn field, fail field or None)
_LIMITS: tuple[tuple[str, str, str, str, str, str | None], ...] = (
    ("cpu_pct", "cpu_high", "CPU 占用过高（关闭无关程序）",
     "CPU usage high (close unneeded programs)", "cpu_warn_pct", None),
    ("mem_pct", "memory_high", "内存占用过高（关闭无关程序或重启）",
     "memory usage high (close unneeded programs or restart)", "mem_warn_pct", None),
    ("disk_pct", "disk_full", "磁盘空间不足（清理录像/日志文件）",
     "disk almost full (clean up recordings/logs)", "disk_warn_pct", "disk_fail_pct"),
    ("temp_c", "overheat", "主机温度过高（检查风扇和通风，清理灰尘）",
     "PC too hot (check the fan and ventilation, remove dust)", "temp_warn_c", "temp_fail_c"),
)


class SystemProbe(Probe):
    name: ClassVar[str] = "system"

    def collect(self, ctx: ProbeContext) -> ProbeReport:
        stats = ctx.hardware.system()
        section: dict[str, Any] = {
            "cpu_pct": round(stats.cpu_pct, 1),
            "mem_pct": round(stats.mem_pct, 1),
            "disk_pct": round(stats.disk_pct, 1),
            "temp_c": None if stats.temp_c is None else round(stats.temp_c, 1),
            "uptime_s": round(stats.uptime_s),
            "boot_time": format_ts(stats.boot_time),
            "clock_synced": stats.clock_synced,
        }
        th = ctx.thresholds
        findings = []
        for key, reason, zh, en, warn_field, fail_field in _LIMITS:
            value: float | None = section[key]
            if value is None:
                continue
            warn = float(getattr(th, warn_field))
            fail = float(getattr(th, fail_field)) if fail_field else float("inf")
            found = graded(value, warn, fail, reason, "system",
                           (f"{zh}：{value}", f"{en}: {value}"))
            if found is not None:
                findings.append(found)
        if stats.clock_synced is False:
            findings.append(Finding(
                CheckVerdict.WARN, "clock_unsynced",
                "系统时钟未同步（检查 NTP 服务和网络），课表时间可能不准",
                "system clock not synchronised (check NTP and the network); lesson times "
                "may be off", "system"))
        return ProbeReport(mark(section, findings), findings)
