"""Pre-class check settings (TOML table ``[checks]``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CheckConfig"]


@dataclass(frozen=True)
class CheckConfig:
    # First check this long before the lesson, spread over the next spread_minutes so
    # that a county's 08:00 lessons do not all ask at 07:30:00.
    lead_minutes: float = 30.0
    spread_minutes: float = 5.0
    # Second lead time: ends whose last check is in recheck_verdicts are checked again.
    recheck_lead_minutes: float = 10.0
    recheck_spread_minutes: float = 2.0
    recheck_verdicts: tuple[str, ...] = ("fail", "no_answer")
    # A check not answered by then is "no_answer" (the device is offline or wedged); it
    # is also the command's expiry, so a late-delivered one is refused by the agent.
    answer_timeout_s: float = 180.0
    # The fleet's bandwidth test endpoint the agents measure against ("" = the agent's
    # own configured URL).
    bandwidth_url: str = ""
    # Throughput per end and direction, Mbit/s, from Zoom's published figures: sending
    # 1080p group video 3.0, receiving 1080p 2.5; the receiving class's return video
    # is 720p, 1.2 each way.  The main end's downlink is per receiving classroom.
    main_up_mbps: float = 3.0
    main_down_mbps: float = 1.2
    receiver_up_mbps: float = 1.2
    receiver_down_mbps: float = 2.5

    def __post_init__(self) -> None:
        if not 0 <= self.spread_minutes <= self.lead_minutes - self.recheck_lead_minutes:
            raise ValueError("spread_minutes must fit between the two lead times")
        if not 0 <= self.recheck_spread_minutes <= self.recheck_lead_minutes:
            raise ValueError("recheck_spread_minutes must not exceed recheck_lead_minutes")
        if self.answer_timeout_s <= 0:
            raise ValueError("answer_timeout_s must be > 0")
        unknown = set(self.recheck_verdicts) - {"pass", "warn", "fail", "no_answer"}
        if unknown:
            raise ValueError(f"recheck_verdicts: unknown verdicts {sorted(unknown)}")
