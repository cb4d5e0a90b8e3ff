"""Network measurements with the standard library only: ping, TCP connect, DNS.

ICMP echo goes through a Linux "ping socket" (``SOCK_DGRAM``, allowed for groups in
``net.ipv4.ping_group_range``) or, failing that, a raw socket (root or CAP_NET_RAW), so
the agent needs no ``ping`` binary.  A target with a port is timed by TCP connect instead,
which works for anyone.
"""

from __future__ import annotations

import os
import socket
import struct
import time

from agent.hardware.base import HardwareError, PingResult
from agent.hardware.netcause import gai_cause, os_cause, refine
from agent.hardware.targets import parse_target

__all__ = ["icmp_ping", "ping", "resolve", "tcp_ping"]

_PAYLOAD_PREFIX = b"syncclass-ping-" * 2  # + 16 random bytes: 46, about ping's 56


def resolve(host: str) -> float:
    started = time.perf_counter()
    try:
        socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise _dns_error(host, exc) from None
    return (time.perf_counter() - started) * 1000


def _dns_error(host: str, exc: socket.gaierror | UnicodeError) -> HardwareError:
    cause = refine(gai_cause(exc))
    return HardwareError("dns_failed", f"cannot resolve {host}: {cause}", cause)


def _address(host: str, port: int | None) -> tuple[int, tuple[str, int]]:
    try:
        family, _, _, _, addr = socket.getaddrinfo(host, port or 0, proto=socket.IPPROTO_TCP)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise _dns_error(host, exc) from None
    return family, (str(addr[0]), int(addr[1]))


def ping(spec: str, count: int = 5, timeout_s: float = 1.0, interval_s: float = 0.2) -> PingResult:
    host, port = parse_target(spec)
    if port is None:
        return icmp_ping(host, count, timeout_s, interval_s)
    return tcp_ping(host, port, count, timeout_s, interval_s)


def tcp_ping(host: str, port: int, count: int = 5, timeout_s: float = 1.0,
             interval_s: float = 0.2) -> PingResult:
    family, addr = _address(host, port)
    rtts: list[float] = []
    error = ""
    for i in range(count):
        if i:
            time.sleep(interval_s)
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            started = time.perf_counter()
            try:
                sock.connect(addr)
            except OSError as exc:
                error = os_cause(exc)
                continue
            rtts.append((time.perf_counter() - started) * 1000)
    return PingResult(count, tuple(rtts), "tcp", refine(error) if error else "")


def _icmp_socket(family: int) -> tuple[socket.socket, bool]:
    """An ICMP socket and whether it is raw (replies then carry the IPv4 header)."""
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    try:
        return socket.socket(family, socket.SOCK_DGRAM, proto), False
    except PermissionError:
        pass
    try:
        return socket.socket(family, socket.SOCK_RAW, proto), True
    except PermissionError:
        raise HardwareError(
            "icmp_not_permitted",
            "ICMP needs net.ipv4.ping_group_range to include the agent's group or "
            "CAP_NET_RAW; or give the target as host:port",
            "icmp_not_permitted",
        ) from None


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def icmp_ping(host: str, count: int = 5, timeout_s: float = 1.0,
              interval_s: float = 0.2) -> PingResult:
    family, addr = _address(host, None)
    v4 = family == socket.AF_INET
    request, reply = (8, 0) if v4 else (128, 129)
    # Raw sockets see every ICMP reply on the host, including those of pings to other
    # targets running in parallel: a random payload tells ours apart.
    payload = _PAYLOAD_PREFIX + os.urandom(16)
    ident = int.from_bytes(payload[-2:], "big")
    sock, raw = _icmp_socket(family)
    rtts: list[float] = []
    error = ""
    with sock:
        for seq in range(1, count + 1):
            if seq > 1:
                time.sleep(interval_s)
            header = struct.pack("!BBHHH", request, 0, 0, ident, seq)
            # The kernel fills in the checksum for ping sockets and for ICMPv6.
            checksum = _checksum(header + payload) if v4 and raw else 0
            packet = struct.pack("!BBHHH", request, 0, checksum, ident, seq) + payload
            started = time.perf_counter()
            try:
                sock.sendto(packet, (addr[0], 0))
            except OSError as exc:  # no route, or the neighbour is known to be unreachable
                error = os_cause(exc)
                continue
            if _await_reply(sock, raw and v4, (reply, seq, payload), started + timeout_s):
                rtts.append((time.perf_counter() - started) * 1000)
            else:
                error = "timeout"
    return PingResult(count, tuple(rtts), "icmp", refine(error) if error else "")


def _await_reply(sock: socket.socket, strip_ip: bool, expect: tuple[int, int, bytes],
                 deadline: float) -> bool:
    """Wait for the echo reply of type, sequence and payload ``expect``.

    A ping socket rewrites our identifier, so the identifier is never compared.
    """
    reply, seq, payload = expect
    while (left := deadline - time.perf_counter()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(2048)
        except TimeoutError:
            return False
        if strip_ip:
            data = data[(data[0] & 0x0F) * 4:]
        if len(data) >= 8 and data[0] == reply and struct.unpack("!H", data[6:8])[0] == seq \
                and data[8:] == payload:
            return True
    return False
