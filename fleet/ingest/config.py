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
    # them (MQTT 5 shared subscription); "" (the default) subscribes normally.  Mosquitto
    # 2.0 does not keep the queued messages of a persistent ``$share`` subscription across
    # a broker restart (a plain subscription's it keeps), so sharing on Mosquitto trades
    # restart safety for scale-out; see the README's "Several fleet processes".
    share_group: str = ""
    # The broker session is persistent, so its client id must be the same after a
    # restart and different for every process: "" = syncclass-fleet-<host>-<instance>.
    client_id: str = ""
    instance: str = "fleet"
    # How long the broker keeps this process's session (and queues for it) while it is
    # away: an upgrade, a crash and restart by systemd, a host reboot.
    session_expiry_s: int = 3600
    # Long, because a backlog must never cost the connection: Mosquitto 2.0 answers a
    # PINGREQ only after what is already queued for the client (seen: a 10-20 s lag
    # closed connections at keepalive 10), and while messages flow the PUBACKs we send
    # keep the connection alive without pings anyway.
    keepalive: int = 60
    # MQTT 5 Receive Maximum: messages delivered and not yet acknowledged.  The fleet
    # acknowledges a message only once it is durably handled (written to the database
    # and the time series), so this is the back-pressure: a slow fleet slows the broker,
    # which keeps the rest queued in this process's session.  It must cover the messages
    # of one acknowledgement round (ack_interval_s) at full speed.
    receive_maximum: int = 10_000
    # How often handled messages are made durable and acknowledged.
    ack_interval_s: float = 1.0
    # Commands (checks, actions, expected devices) go on a second connection of their
    # own, never behind inbound telemetry, with this many unacknowledged at a time (a
    # Monday wave is thousands within seconds; the broker may grant fewer: its
    # max_inflight_messages, which CONNACK's Receive Maximum tells).
    command_inflight: int = 1_000
    # How often this process measures how far behind the broker it is (a probe message
    # through its own subscription, queued behind whatever the broker holds for it).
    lag_probe_s: float = 1.0
    # Messages waiting between the network thread and the dispatcher: only unacknowledged
    # ones (see receive_maximum), so more than this is counted as the broker's fault.
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
        if not 1 <= self.receive_maximum <= 65_535:
            raise ValueError("receive_maximum must be 1..65535 (MQTT 5)")
        if self.queue_size < 2 * self.receive_maximum:
            # Only unacknowledged messages are queued; twice, because Mosquitto 2.0.11
            # was seen to send more than the Receive Maximum once acknowledgements freed
            # it (6 for 3 acknowledged).  Nothing is dropped beyond it, only counted.
            raise ValueError("queue_size must be >= 2 * receive_maximum")
        if not 1 <= self.command_inflight <= 65_535:
            raise ValueError("command_inflight must be 1..65535")
        if self.ack_interval_s <= 0 or self.lag_probe_s <= 0 or self.session_expiry_s < 0:
            raise ValueError("ack_interval_s and lag_probe_s must be > 0, session_expiry_s >= 0")
        if not self.instance or any(c in self.instance for c in "/+#"):
            raise ValueError(f"instance {self.instance!r} must be non-empty without / + #")
        if not 0 < self.reconnect_min_s <= self.reconnect_max_s:
            raise ValueError("need 0 < reconnect_min_s <= reconnect_max_s")
        if self.ts_behind_s <= 0 or self.ts_ahead_s <= 0 or self.clock_skew_s <= 0:
            raise ValueError("ts_behind_s, ts_ahead_s and clock_skew_s must be > 0")
        if self.seq_jump < 1 or self.seq_confirm < 1:
            raise ValueError("seq_jump and seq_confirm must be >= 1")
