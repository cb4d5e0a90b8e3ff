"""Is the system clock NTP-synchronised?  Asked of the kernel with adjtimex(2), read-only.

timedatectl's ``NTPSynchronized`` is systemd's ``ntp_synced()``: adjtimex with modes = 0
and ``maxerror`` below 16 s (STA_UNSYNC is deliberately not consulted, since it may be set
only to keep the kernel off the RTC).  The agent asks the same question of the kernel
directly, instead of spawning timedatectl (and D-Bus round trips to timedated) every
interval.  The unit's syscall filter must allow adjtimex/clock_adjtime and must not set
ProtectClock=, which turns even this read into EPERM (systemd issue #26413); the empty
capability bounding set still keeps the agent from changing the clock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from dataclasses import dataclass

__all__ = ["ClockStatus", "Timex", "clock_status", "read_timex"]

# <linux/timex.h>
_MAXERROR_SYNCED_US = 16_000_000  # systemd's ntp_synced() threshold (NTP_PHASE_MAX)


class Timex(ctypes.Structure):
    # struct timex as glibc declares it; 'long' fields follow the platform's long, and the
    # trailing reserved ints give the kernel room to write into.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("reserved", ctypes.c_int * 11),
    ]


@dataclass(frozen=True, slots=True)
class ClockStatus:
    synced: bool
    maxerror_us: int


@functools.cache
def _libc() -> ctypes.CDLL | None:
    # Once: find_library runs /sbin/ldconfig, which must not be spawned every interval.
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None


def read_timex() -> Timex | None:
    """adjtimex(2) with modes = 0, or None where it is refused (EPERM in a sandbox)."""
    libc = _libc()
    if libc is None:
        return None
    tx = Timex()  # zeroed: modes = 0 reads and changes nothing
    if int(libc.adjtimex(ctypes.byref(tx))) < 0:
        return None
    return tx


def clock_status() -> ClockStatus | None:
    tx = read_timex()
    if tx is None:
        return None
    return ClockStatus(
        synced=tx.maxerror < _MAXERROR_SYNCED_US,
        maxerror_us=int(tx.maxerror),
    )
