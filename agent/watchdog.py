"""systemd's notify protocol: READY, STOPPING, STATUS and watchdog pings (sd_notify(3)).

A datagram to ``$NOTIFY_SOCKET``; nothing at all when the variable is unset (run by hand,
in tests, in a container), so the agent never depends on systemd.
"""

from __future__ import annotations

import os
import socket
import time
from contextlib import suppress

__all__ = ["Notifier"]


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # "@name" is a socket in the abstract namespace (a leading NUL byte).
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watched = usec.isdigit() and (not pid or pid == str(os.getpid()))
        #: Seconds between pings: half the watchdog timeout, as sd_watchdog_enabled(3) advises.
        self.ping_interval: float | None = int(usec) / 2e6 if watched else None
        self._last_ping = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, *fields: str) -> None:
        if not self._address:
            return
        # OSError: systemd went away (shutdown), there is nobody left to tell.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, suppress(OSError):
            sock.sendto("\n".join(fields).encode(), self._address)

    def ready(self, status: str = "") -> None:
        self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def ping(self) -> None:
        """Tell the watchdog we are alive, at most every ``ping_interval`` seconds."""
        if self.ping_interval is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.ping_interval:
            self._last_ping = now
            self.notify("WATCHDOG=1")
