"""Settings of the people-facing API (the ``[api]`` table of the fleet's TOML)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ApiConfig"]


@dataclass(frozen=True)
class ApiConfig:
    # How long a login token lasts; technicians log in once per working day.
    token_ttl_hours: float = 12.0
    # Secret for calendar subscription links (calendar apps cannot send a bearer
    # header).  Empty: a random secret per process, so links change on restart.
    calendar_secret: str = ""
    # What one bandwidth test may move, each direction.
    bandwidth_max_bytes: int = 32 * 1024 * 1024
    # A device's token (in the run-check it is sent) outlives the command by this much,
    # and admits at most bandwidth_tests_per_device requests (a check takes one per
    # direction) per bandwidth_window_s in each fleet process.
    bandwidth_token_grace_s: float = 120.0
    bandwidth_tests_per_device: int = 6
    bandwidth_window_s: float = 600.0
    # Largest timetable file accepted (xlsx of a whole county is well under this).
    upload_max_bytes: int = 5 * 1024 * 1024
    # Dates in the API (lessons, reports) are local dates in this zone.
    timezone: str = "Asia/Shanghai"

    def __post_init__(self) -> None:
        if (self.bandwidth_tests_per_device < 1 or self.bandwidth_window_s <= 0
                or self.bandwidth_token_grace_s < 0):
            raise ValueError("bandwidth_tests_per_device must be >= 1, bandwidth_window_s > 0 "
                             "and bandwidth_token_grace_s >= 0")
