"""Network: round trip, jitter and loss per target, and how long name resolution takes.

Targets come from the config (the broker, the fleet, the streaming server) and, in a
check, from the lesson (the paired classroom's endpoint).  ``host`` is pinged (ICMP);
``host:port`` or a URL is timed by TCP connect, which needs no privileges and shows the
port is open as well.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, ClassVar

from agent.contract import CheckVerdict
from agent.hardware.base import HardwareError
from agent.hardware.targets import is_address, parse_target, ping_spec
from agent.probes.advice import network_advice
from agent.probes.base import CheckParams, Finding, Probe, ProbeContext, ProbeReport, graded, mark
from agent.thresholds import Thresholds

__all__ = ["NetworkProbe"]

# metric -> (reason, Chinese, English, warn field, fail field)
_LIMITS: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("rtt_ms", "network_rtt_high", "网络延迟过高", "round trip time high",
     "rtt_warn_ms", "rtt_fail_ms"),
    ("jitter_ms", "network_jitter_high", "网络抖动过大", "jitter high",
     "jitter_warn_ms", "jitter_fail_ms"),
    ("loss_pct", "network_loss_high", "网络丢包", "packet loss",
     "loss_warn_pct", "loss_fail_pct"),
)
_PING_GAP_S = 0.2  # netio's pause between two pings
_ADVICE = ("（检查网线、交换机和校园网出口）", " (check the cable, switch and school uplink)")


class NetworkProbe(Probe):
    name: ClassVar[str] = "network"

    def __init__(self, count: int = 5, check_count: int = 20, timeout_s: float = 1.0,
                 dns_allowance_s: float = 3.0) -> None:
        self.count = count
        self.check_count = check_count
        self.timeout_s = timeout_s
        self.dns_allowance_s = dns_allowance_s

    def deadline_s(self, count: int) -> float:
        """How long one target may take: every ping timing out, plus a name lookup.

        With the defaults a collection's targets are done in 9 s, inside the runner's
        10 s probe deadline, so a DNS server that does not answer is reported as such
        instead of the whole network section timing out."""
        return count * (self.timeout_s + _PING_GAP_S) + self.dns_allowance_s

    def collect(self, ctx: ProbeContext) -> ProbeReport:
        return self._measure(ctx, ctx.targets, self.count)

    def check(self, ctx: ProbeContext, params: CheckParams) -> ProbeReport:
        return self._measure(ctx, {**ctx.targets, **params.targets}, self.check_count)

    def _measure(self, ctx: ProbeContext, targets: dict[str, str], count: int) -> ProbeReport:
        results: dict[str, Any] = {}
        findings: list[Finding] = []
        dns_times: list[float] = []
        # Targets in parallel: a check pings each for seconds, and a dead one times out.
        # A lookup can hang well past that (getaddrinfo has no timeout of its own): such
        # a target is reported at the deadline and its thread left to finish on its own.
        phases: dict[str, str] = {}
        pool = ThreadPoolExecutor(max_workers=max(1, min(8, len(targets))),
                                  thread_name_prefix="ping")
        futures = {name: pool.submit(self._target, ctx, name, spec, count, phases)
                   for name, spec in targets.items()}
        wait(futures.values(), timeout=self.deadline_s(count))
        pool.shutdown(wait=False, cancel_futures=True)
        outcomes = {name: future.result() if future.done() else
                    _late(name, targets[name], phases.get(name, "queued"))
                    for name, future in futures.items()}
        for name, (item, found, dns_ms) in outcomes.items():
            results[name] = mark(item, found)
            findings += found
            if dns_ms is not None:
                dns_times.append(dns_ms)
        dns_ms = max(dns_times) if dns_times else None
        th = ctx.thresholds
        slow = None if dns_ms is None else graded(
            round(dns_ms, 1), th.dns_warn_ms, th.dns_fail_ms, "dns_slow", "network",
            (f"域名解析缓慢：{dns_ms:.0f} ms（检查 DNS 服务器设置）",
             f"name resolution slow: {dns_ms:.0f} ms (check the DNS server setting)"))
        if slow is not None:
            findings.append(slow)
        section = {"targets": results, "dns_ms": None if dns_ms is None else round(dns_ms, 2)}
        return ProbeReport(mark(section, findings), findings)

    def _target(self, ctx: ProbeContext, name: str, spec: str, count: int,
                phases: dict[str, str]) -> tuple[dict[str, Any], list[Finding], float | None]:
        entity = f"target:{name}"
        item = _blank(spec)
        try:
            host, _ = parse_target(spec)
            phases[name] = "dns"
            dns_ms = None if is_address(host) else ctx.hardware.resolve(host)
            phases[name] = "ping"
            result = ctx.hardware.ping(ping_spec(spec), count, self.timeout_s)
        except ValueError as exc:
            return item, [Finding(CheckVerdict.FAIL, "target_invalid",
                                  f"无法连接 {name}：地址无效：{exc}",
                                  f"cannot reach {name}: bad address: {exc}", entity)], None
        except HardwareError as exc:
            return item, [_unreachable(exc.reason, name, entity, exc.cause)], None
        item.update(
            rtt_ms=None if result.rtt_ms is None else round(result.rtt_ms, 2),
            jitter_ms=None if result.jitter_ms is None else round(result.jitter_ms, 2),
            loss_pct=round(result.loss_pct, 1),
            method=result.method,
        )
        if result.received == 0:
            return item, [_unreachable("target_unreachable", name, entity,
                                       result.error or "timeout")], dns_ms
        return item, _grade_link(item, name, entity, ctx.thresholds), dns_ms


def _blank(spec: str) -> dict[str, Any]:
    return {"host": spec, "rtt_ms": None, "jitter_ms": None, "loss_pct": None}


def _late(name: str, spec: str, phase: str) -> tuple[dict[str, Any], list[Finding], None]:
    """A target not done by the deadline: a lookup that never came back is the DNS."""
    if phase == "dns":
        found = _unreachable("dns_failed", name, f"target:{name}", "dns_unreachable")
    else:
        found = _unreachable("target_unreachable", name, f"target:{name}", "timeout")
    return _blank(spec), [found], None


def _unreachable(reason: str, name: str, entity: str, cause: str) -> Finding:
    zh, en = network_advice(cause)
    return Finding(CheckVerdict.FAIL, reason, f"无法连接 {name}：{zh}",
                   f"cannot reach {name}: {en}", entity)


def _grade_link(item: dict[str, Any], name: str, entity: str, th: Thresholds) -> list[Finding]:
    findings = []
    for key, reason, zh, en, warn_field, fail_field in _LIMITS:
        value = item[key]
        if value is None:
            continue
        found = graded(value, float(getattr(th, warn_field)), float(getattr(th, fail_field)),
                       reason, entity,
                       (f"{name}：{zh} {value}（阈值 {{threshold}}）{_ADVICE[0]}",
                        f"{name}: {en} {value} (limit {{threshold}}){_ADVICE[1]}"))
        if found is not None:
            findings.append(found)
    return findings
