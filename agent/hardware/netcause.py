"""Why a network operation failed, as a cause word the probes turn into advice.

Raw error text (``[Errno -2] Name or service not known``) tells a teacher nothing and
sends a technician to the wrong place.  A failure is sorted into: the name does not
exist, the DNS server does not answer, this PC has no link (no carrier on any physical
network interface), this PC has no route, the host does not answer, the port is closed,
or (for network cameras) the account or stream path is wrong.  When the local link is
down, everything upstream fails too, and the link is named as the cause.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path

__all__ = ["CAUSES", "ffmpeg_cause", "gai_cause", "local_cause", "os_cause", "refine"]

CAUSES = ("link_down", "no_route", "dns_no_such_name", "dns_unreachable", "dns_failed",
          "refused", "host_unreachable", "timeout", "auth", "not_found")

_GAI = {
    socket.EAI_NONAME: "dns_no_such_name",
    socket.EAI_AGAIN: "dns_unreachable",
}
# EAI_NODATA ("no address for this name") is glibc-only.
if hasattr(socket, "EAI_NODATA"):
    _GAI[socket.EAI_NODATA] = "dns_no_such_name"

_ERRNO = {
    errno.ECONNREFUSED: "refused",
    errno.ENETUNREACH: "no_route",
    errno.EHOSTUNREACH: "host_unreachable",
    errno.ETIMEDOUT: "timeout",
}

# ffmpeg's last error line (its wording, stable since 4.x) -> cause.
_FFMPEG = (
    ("401 unauthorized", "auth"),
    ("403 forbidden", "auth"),
    ("404 not found", "not_found"),
    ("name or service not known", "dns_no_such_name"),
    ("no address associated with hostname", "dns_no_such_name"),
    ("temporary failure in name resolution", "dns_unreachable"),
    ("connection refused", "refused"),
    ("network is unreachable", "no_route"),
    ("no route to host", "host_unreachable"),
    ("timed out", "timeout"),
)
# Upstream causes the local link explains when it is down.
_UPSTREAM = frozenset({"no_route", "dns_unreachable", "dns_failed", "host_unreachable",
                       "timeout"})


def gai_cause(exc: socket.gaierror | UnicodeError) -> str:
    if isinstance(exc, UnicodeError):
        return "dns_no_such_name"  # not even a valid host name
    return _GAI.get(exc.errno or 0, "dns_failed")


def os_cause(exc: OSError) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    return _ERRNO.get(exc.errno or 0, "host_unreachable")


def ffmpeg_cause(stderr: str) -> str | None:
    low = stderr.lower()
    return next((cause for text, cause in _FFMPEG if text in low), None)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:  # carrier of an interface that is down: EINVAL
        return ""


def local_cause(sysfs_root: Path = Path("/sys")) -> str | None:
    """"link_down" when no physical interface has a carrier; None when one has (or
    this machine shows none, as containers do: then nothing can be said)."""
    net = sysfs_root / "class" / "net"
    physical = [i for i in sorted(net.glob("*"))
                if "/devices/virtual/" not in str(i.resolve()) and i.name != "lo"]
    if not physical:
        return None
    return None if any(_read(i / "carrier") == "1" for i in physical) else "link_down"


def refine(cause: str, sysfs_root: Path = Path("/sys")) -> str:
    """``cause``, or "link_down" when the local link explains an upstream failure."""
    if cause in _UPSTREAM and local_cause(sysfs_root) == "link_down":
        return "link_down"
    return cause
