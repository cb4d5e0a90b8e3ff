"""Bandwidth: an active HTTP up/down test in checks; passive interface rates every interval.

The active test talks to any endpoint that answers ``GET url?bytes=N`` with N bytes and
accepts a ``POST`` body (the fleet serves one, only to the device whose token the URL of
a fleet-sent check carries).  It runs only in checks: it costs the classroom the very
uplink it measures, and not in a check while a lesson is near or the fleet asks for
passive evidence (agent.quiet).  Telemetry repeats the last result with its time.  A server that
refuses the test (401/403: no or a stale token, as for a local check against the fleet's
endpoint; 429: too many tests) leaves the bandwidth untested, a warning that says why,
not a failed link.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

from agent.contract import CheckVerdict, format_ts
from agent.hardware.base import HardwareError
from agent.probes.base import CheckParams, Finding, Probe, ProbeContext, ProbeReport, graded, mark

__all__ = ["BandwidthProbe"]

_REFUSALS = {
    "bandwidth_unauthorized": (
        "测速服务器拒绝测速，带宽未测（车队的测速接口只接受车队下发的课前检查命令中的令牌）",
        "the test server refused the test; bandwidth not tested (the fleet's endpoint only "
        "accepts the token of a check the fleet sends)"),
    "bandwidth_rate_limited": (
        "本设备近期测速次数过多，测速服务器暂不受理，带宽未测",
        "too many tests from this device for now; bandwidth not tested"),
}


def _refused(exc: HardwareError) -> Finding:
    zh, en = _REFUSALS[exc.reason]
    return Finding(CheckVerdict.WARN, "bandwidth_untested", f"{zh}：{exc.message}",
                   f"{en}: {exc.message}", "bandwidth")


class BandwidthProbe(Probe):
    name: ClassVar[str] = "bandwidth"

    def __init__(
        self,
        nbytes: int = 16 * 1024 * 1024,
        seconds: float = 3.0,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.nbytes = nbytes  # upper bound; a test also stops after ``seconds``
        self.seconds = seconds
        self._monotonic = monotonic
        self._last: dict[str, Any] = {"up_mbps": None, "down_mbps": None, "measured_at": None}
        self._counters: tuple[float, int, int] | None = None

    def collect(self, ctx: ProbeContext) -> ProbeReport:
        return ProbeReport(mark({**self._last, **self._passive(ctx)}, []))

    def _passive(self, ctx: ProbeContext) -> dict[str, float | None]:
        sent, received = ctx.hardware.net_bytes()
        now = self._monotonic()
        before, self._counters = self._counters, (now, sent, received)
        if before is None or now <= before[0]:
            return {"tx_mbps": None, "rx_mbps": None}
        span = now - before[0]
        # Counters restart when an interface goes away; a negative delta is no measurement.
        tx, rx = sent - before[1], received - before[2]
        return {
            "tx_mbps": round(tx * 8 / span / 1e6, 3) if tx >= 0 else None,
            "rx_mbps": round(rx * 8 / span / 1e6, 3) if rx >= 0 else None,
        }

    def check(self, ctx: ProbeContext, params: CheckParams) -> ProbeReport:
        if not ctx.may_disturb(params):
            # The test fills the uplink for seconds: not while teachers connect or teach.
            # The last result and its time stand, as in telemetry.
            return ProbeReport(mark({**self._last, **self._passive(ctx), "sampled": False}, []))
        url = params.bandwidth_url or ctx.bandwidth_url
        th = ctx.thresholds
        if not url:
            finding = Finding(CheckVerdict.WARN, "bandwidth_untested",
                              "未配置带宽测试地址，无法测速", "no bandwidth test URL configured",
                              "bandwidth")
            return ProbeReport(mark({**self._last, **self._passive(ctx)}, [finding]), [finding])
        needs = [("down", params.need_down_mbps or th.need_down_mbps, ctx.hardware.download)]
        if params.uplink:
            needs.append(("up", params.need_up_mbps or th.need_up_mbps, ctx.hardware.upload))
        findings: list[Finding] = []
        result: dict[str, Any] = {"up_mbps": None, "down_mbps": None}
        for direction, need, measure in needs:
            zh_dir = "下行" if direction == "down" else "上行"
            try:
                mbps = measure(url, self.nbytes, self.seconds)
            except HardwareError as exc:
                if exc.reason in _REFUSALS:
                    # The same server refuses the other direction too: do not ask it.
                    findings.append(_refused(exc))
                    break
                findings.append(Finding(
                    CheckVerdict.FAIL, "bandwidth_test_failed",
                    f"{zh_dir}测速失败（测速服务器不可达？）：{exc.message}",
                    f"{direction}load test failed (test server unreachable?): {exc.message}",
                    f"bandwidth:{direction}"))
                continue
            result[f"{direction}_mbps"] = round(mbps, 2)
            slow = graded(
                round(mbps, 2), need * th.headroom, need, f"bandwidth_{direction}_low",
                f"bandwidth:{direction}",
                (f"{zh_dir}带宽不足：{mbps:.1f} Mbit/s，本节课需要 {need:g} Mbit/s"
                 "（检查校园网出口占用，暂停其他下载/更新）",
                 f"{direction}link too slow: {mbps:.1f} Mbit/s, this lesson needs {need:g} "
                 "(check the school uplink, pause other downloads/updates)"),
                low_is_bad=True)
            if slow is not None:
                findings.append(slow)
        self._last = {**result, "measured_at": format_ts(ctx.clock())}
        return ProbeReport(mark({**self._last, **self._passive(ctx)}, findings), findings)
