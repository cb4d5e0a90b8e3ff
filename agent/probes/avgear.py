"""Network AV gear, really asked: RTSP cameras, network encoders and recording hosts.

A configured RTSP camera is in the camera list because the config says so; this probe
says whether it works: ffprobe opens its stream and ffmpeg decodes one frame
(agent.hardware.stream).  Network encoders and recording hosts (录播主机) configured in
``[network.av_hosts]`` are pinged (ICMP) and their HTTP/RTSP port is connected to: a
host that answers ping with its service port closed is a stopped service, not a cable.
Failures get network advice by cause (agent.probes.advice), never "re-plug"; URLs are
shown redacted, so a camera's password never leaves the PC.

Opening a stream takes one of the camera's few RTSP sessions, so while a lesson is near
(``ProbeContext.may_disturb``) a camera is only asked whether its port answers.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, ClassVar

from agent.contract import CheckVerdict
from agent.hardware.base import HardwareError, PingResult
from agent.hardware.targets import parse_target, ping_spec
from agent.probes.advice import network_advice, stream_advice
from agent.probes.base import CheckParams, Finding, Probe, ProbeContext, ProbeReport, mark
from agent.redact import redact

__all__ = ["AvGearProbe", "is_stream"]

_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")


def is_stream(node: str) -> bool:
    """A camera reached over the network (not a /dev node, not a lavfi test source)."""
    return node.startswith(_SCHEMES)


class AvGearProbe(Probe):
    name: ClassVar[str] = "avgear"

    def __init__(self, collect_timeout_s: float = 2.0, check_timeout_s: float = 5.0,
                 pings: int = 2, ping_timeout_s: float = 1.0) -> None:
        # Collection: two commands of at most timeout + 2 s each fit the runner's 10 s.
        self.collect_timeout_s = collect_timeout_s
        self.check_timeout_s = check_timeout_s
        self.pings = pings
        self.ping_timeout_s = ping_timeout_s

    def collect(self, ctx: ProbeContext) -> ProbeReport:
        return self._measure(ctx, self.collect_timeout_s, ctx.may_disturb())

    def check(self, ctx: ProbeContext, params: CheckParams) -> ProbeReport:
        return self._measure(ctx, self.check_timeout_s, ctx.may_disturb(params))

    def _measure(self, ctx: ProbeContext, timeout_s: float, disturb: bool) -> ProbeReport:
        cameras = {c.id: c.node for c in ctx.hardware.cameras() if is_stream(c.node)}
        jobs = len(cameras) + len(ctx.av_hosts)
        if not jobs:
            return ProbeReport({"ok": True, "streams": {}, "hosts": {}})
        # Each camera and host in its own thread: one dead camera costs its own timeout,
        # not everybody's.  The runner's deadline still bounds the whole.
        with ThreadPoolExecutor(max_workers=min(8, jobs), thread_name_prefix="avgear") as pool:
            streams = {i: pool.submit(_stream if disturb else self._stream_port,
                                      ctx, i, url, timeout_s)
                       for i, url in cameras.items()}
            hosts = {name: pool.submit(self._host, ctx, name, spec)
                     for name, spec in ctx.av_hosts.items()}
            wait([*streams.values(), *hosts.values()])
        findings: list[Finding] = []
        section: dict[str, Any] = {"streams": {}, "hosts": {}}
        for key, futures in (("streams", streams), ("hosts", hosts)):
            for name, future in futures.items():
                item, found = future.result()
                section[key][name] = mark(item, found)
                findings += found
        return ProbeReport(mark(section, findings), findings)

    def _host(self, ctx: ProbeContext, name: str, spec: str) -> tuple[dict[str, Any],
                                                                       list[Finding]]:
        entity = f"avhost:{name}"
        host, port = parse_target(spec)
        item: dict[str, Any] = {"host": redact(spec), "port": port, "icmp_ms": None,
                                "port_ms": None}
        icmp = self._ping(ctx, host)
        tcp = self._ping(ctx, ping_spec(spec)) if port is not None else None
        if isinstance(icmp, PingResult):
            item["icmp_ms"] = None if icmp.rtt_ms is None else round(icmp.rtt_ms, 2)
        else:
            item["icmp_error"] = icmp  # not permitted here: the port still tells
        if isinstance(tcp, PingResult):
            item["port_ms"] = None if tcp.rtt_ms is None else round(tcp.rtt_ms, 2)
        port_open = item["port_ms"] is not None
        answers_ping = item["icmp_ms"] is not None
        if port_open or (port is None and (answers_ping or "icmp_error" in item)):
            return item, []
        failed = tcp if port is not None else icmp
        cause = failed.error if isinstance(failed, PingResult) else failed
        if answers_ping and cause != "refused":
            # Up, but its service port swallows the connection: a firewall in between.
            cause = "timeout"
        zh, en = network_advice(cause or "timeout")
        reason = "av_host_port_closed" if answers_ping or cause == "refused" \
            else "av_host_unreachable"
        what_zh, what_en = ("无法连接", "cannot be reached") if port is None else \
            (f"无法连接端口 {port}", f"port {port} cannot be reached")
        return item, [Finding(CheckVerdict.FAIL, reason,
                              f"{name}（{redact(spec)}）{what_zh}：{zh}",
                              f"{name} ({redact(spec)}): {what_en}: {en}", entity)]

    def _stream_port(self, ctx: ProbeContext, camera: str, url: str,
                     timeout_s: float) -> tuple[dict[str, Any], list[Finding]]:
        """Passive evidence near a lesson: the camera's RTSP (or HTTP) port answers."""
        item: dict[str, Any] = {"url": redact(url), "passive": True, "port_ms": None}
        tcp = self._ping(ctx, ping_spec(url))
        if isinstance(tcp, PingResult) and tcp.rtt_ms is not None:
            item["port_ms"] = round(tcp.rtt_ms, 2)
            return item, []
        cause = (tcp.error if isinstance(tcp, PingResult) else tcp) or "timeout"
        zh, en = network_advice(cause)
        return item, [Finding(CheckVerdict.FAIL, "stream_unreachable",
                              f"{camera}：网络摄像头端口无应答：{zh}",
                              f"{camera}: network camera's port does not answer: {en}",
                              f"stream:{camera}")]

    def _ping(self, ctx: ProbeContext, spec: str) -> PingResult | str:
        """The result, or the cause word when the ping could not even be tried."""
        try:
            return ctx.hardware.ping(spec, self.pings, self.ping_timeout_s)
        except HardwareError as exc:
            return exc.cause or exc.reason


def _stream(ctx: ProbeContext, camera: str, url: str,
            timeout_s: float) -> tuple[dict[str, Any], list[Finding]]:
    item: dict[str, Any] = {"url": redact(url)}
    try:
        info = ctx.hardware.probe_stream(url, timeout_s)
    except HardwareError as exc:
        zh, en = stream_advice(exc.cause, exc.message)
        item["cause"] = exc.cause or None
        return item, [Finding(CheckVerdict.FAIL, exc.reason,
                              f"{camera}：网络摄像头无法取流：{zh}",
                              f"{camera}: network camera stream fails: {en}",
                              f"stream:{camera}")]
    item.update(info.to_json())
    return item, []
