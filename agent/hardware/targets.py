"""Network target specs: ``host``, ``host:port``, ``[v6]:port`` or a URL."""

from __future__ import annotations

import ipaddress
from typing import Final
from urllib.parse import urlsplit

__all__ = ["DEFAULT_PORTS", "is_address", "parse_target", "ping_spec"]

DEFAULT_PORTS: Final = {"mqtt": 1883, "mqtts": 8883, "http": 80, "https": 443,
                        "rtmp": 1935, "rtsp": 554, "rtsps": 322, "ws": 80, "wss": 443}


def parse_target(spec: str) -> tuple[str, int | None]:
    """(host, port); port None means "ping it" (ICMP), a port means TCP connect timing.

    Raises ValueError for an empty host or a port that is not a number.
    """
    spec = spec.strip()
    if "://" in spec:
        url = urlsplit(spec)
        host, port = url.hostname or "", url.port or DEFAULT_PORTS.get(url.scheme)
    elif spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        port = _port(spec, rest[1:]) if rest.startswith(":") else None
    elif spec.count(":") == 1:
        host, _, text = spec.partition(":")
        port = _port(spec, text)
    else:
        host, port = spec, None  # a name, an IPv4 address or a bare IPv6 address
    if not host:
        raise ValueError(f"target {spec!r} has no host")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"target {spec!r}: port {port} out of range")
    return host, port


def _port(spec: str, text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"target {spec!r}: port {text!r} is not a number")
    return int(text)


def ping_spec(spec: str) -> str:
    """The ``Hardware.ping`` argument for a target spec."""
    host, port = parse_target(spec)
    if port is None:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
