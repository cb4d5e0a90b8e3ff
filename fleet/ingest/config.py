"""Configuration of the MQTT ingest (TOML table ``[ingest]``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.contract import DEFAULT_PREFIX

__all__ = ["IngestConfig"]


@dataclass(frozen=True)
class IngestConfig:
    url: str = "mqtt://127.0.0.1:1883"  # mqtt:// or mqtts://
    username: str = ""
    password: str = ""
    ca_file: Path | None = None  # mqtts:// only; None = the system's CAs
    prefix: str = DEFAULT_PREFIX
    # Fleet processes with the same group split telemetry/event/check/cmd_result between
    # them (MQTT 5 shared subscription); "" subscribes normally.
    share_group: str = "syncclass-fleet"
    client_id: str = ""  # "" = syncclass-fleet-<host>-<pid>
    keepalive: int = 10
    # Messages waiting between the network thread and the dispatcher: a few minutes of a
    # large fleet, so a burst (agents replaying their spools) is absorbed, not dropped.
    queue_size: int = 200_000
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    log_every_s: float = 60.0  # at most one log line per refusal reason this often
    # A message's ts is believed within this window of the fleet's receive time; outside
    # it the message is counted as suspicious and kept out of the device's state.  Behind:
    # long, because an agent replays its spool after an outage (20,000 records: three and
    # a half days at 15 s, weeks at longer intervals), so it only catches nonsense such as
    # a reset RTC's 1970.  Ahead: one day.  The fleet orders by session, seq and its own
    # receive time, so a fast clock no longer outranks anything; what stays refused is
    # nonsense (a year-3000 stamp).  A day, not minutes, because the common skew is a
    # whole number of hours: a BIOS clock kept in local time and read as UTC is 8 h fast
    # in China (at most 14 h anywhere), and such an agent must keep reporting while its
    # skew is alerted (clock_skew) rather than fall silent.
    ts_behind_s: float = 30 * 86400.0
    ts_ahead_s: float = 86_400.0
    # A device clock further than this from the fleet's (measured on live telemetry,
    # never on spool replays) is a clock_skew alert.
    clock_skew_s: float = 120.0
    # A seq more than seq_jump beyond the expected next one is held aside, not believed,
    # until seq_confirm consecutive seqs follow it with nothing on the device's current
    # line in between (fleet.state.SeqTracker says why).
    seq_jump: int = 1000
    seq_confirm: int = 3

    def __post_init__(self) -> None:
        if not self.url.startswith(("mqtt://", "mqtts://")):
            raise ValueError(f"url {self.url!r} must start with mqtt:// or mqtts://")
        if any(c in self.share_group for c in "/+#"):
            raise ValueError(f"share_group {self.share_group!r} may not contain / + #")
        if self.queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise ValueError("need 0 < reconnect_min_s <= reconnect_max_s")
        if self.ts_behind_s <= 0 or self.ts_ahead_s <= 0 or self.clock_skew_s <= 0:
            raise ValueError("ts_behind_s, ts_ahead_s and clock_skew_s must be > 0")
        if self.seq_jump < 1 or self.seq_confirm < 1:
            raise ValueError("seq_jump and seq_confirm must be >= 1")
