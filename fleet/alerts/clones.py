"""Two PCs under one device id (a cloned disk image): the broker's takeover loop.

Every agent's birth carries ``machine``, a hash of its machine-id and network cards
(agent.identity).  Two PCs with one identity take the MQTT client id from each other:
each reconnects, is thrown off by the other's reconnect, and so on, so births from two
machines alternate within seconds.  A machine that reappears after another one within
``window_s`` (A, B, A) is that loop; one machine replaced by another (A then B, an
exchanged mini-PC) is not.  An agent too old to send ``machine`` is never judged.

Kept in memory: a fleet restart forgets the births, and a loop still running is found
again within a few reconnects.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fleet.alerts.signal import Signal

__all__ = ["RULE", "CloneWatch"]

RULE = "device_cloned"


@dataclass(frozen=True)
class _Birth:
    at: datetime
    machine: str
    hostname: str
    session: int


class CloneWatch:
    def __init__(self, window_s: float = 600.0, keep: int = 16) -> None:
        self.window = timedelta(seconds=window_s)
        self.keep = keep
        self._births: dict[str, deque[_Birth]] = {}
        self._lock = threading.Lock()

    def birth(self, device_id: str, payload: dict[str, Any], now: datetime) -> Signal | None:
        """The device_cloned signal this status message gives (None: it says nothing)."""
        machine = payload.get("machine")
        if payload.get("state") != "online" or not isinstance(machine, str) or not machine:
            return None
        inventory = payload.get("inventory")
        host = inventory.get("host") if isinstance(inventory, dict) else None
        hostname = str(host.get("hostname", "")) if isinstance(host, dict) else ""
        with self._lock:
            births = self._births.setdefault(device_id, deque(maxlen=self.keep))
            births.append(_Birth(now, machine, hostname, int(payload.get("session", 0))))
            while births and births[0].at < now - self.window:
                births.popleft()
            runs = [b for i, b in enumerate(births) if i == 0 or births[i - 1].machine != b.machine]
        looping = any(runs[i].machine == runs[j].machine
                      for i in range(len(runs)) for j in range(i + 2, len(runs)))
        if not looping:
            return Signal(RULE, device_id, False, now)
        machines: dict[str, _Birth] = {}
        for b in runs:
            machines[b.machine] = b  # the newest birth of each machine
        named = [f"{b.machine[:8]}（{b.hostname or '?'}）" for b in machines.values()]
        named_en = [f"{b.machine[:8]} ({b.hostname or '?'})" for b in machines.values()]
        return Signal(
            RULE, device_id, True, now,
            details={"machines": [{"machine": b.machine, "hostname": b.hostname,
                                   "session": b.session} for b in machines.values()],
                     "switches": len(runs) - 1},
            message_zh=f"设备 {device_id} 的身份同时被 {len(machines)} 台电脑使用："
                       f"{'、'.join(named)}，{len(runs) - 1} 次互相顶掉连接，数据会被当作重复丢弃。"
                       f"这是复制系统盘（克隆镜像）造成的：在多出来的电脑上用新的注册码重新注册。",
            message_en=f"device {device_id}'s identity is used by {len(machines)} PCs at once: "
                       f"{', '.join(named_en)}; they threw each other off {len(runs) - 1} times "
                       f"and their data is dropped as duplicates. A cloned disk image does "
                       f"this: enrol the extra PC with a new code.",
        )
