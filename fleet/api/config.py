"""Settings of the people-facing API (the ``[api]`` table of the fleet's TOML)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fleet.history import HistoryConfig

__all__ = ["ApiConfig", "LoginConfig", "LoginLimit"]


@dataclass(frozen=True)
class LoginLimit:
    """How many failed logins one account (or one address) may make."""

    # Failures forgiven outright: people mistype.  Each one past this doubles the wait.
    free_failures: int
    # From this many failures on, the wait is the whole lockout.
    lockout_after: int

    def __post_init__(self) -> None:
        if not 0 < self.free_failures <= self.lockout_after:
            raise ValueError("need 0 < free_failures <= lockout_after")


@dataclass(frozen=True)
class LoginConfig:
    """Back-off and lockout of failed logins (``[api.login]``), counted in the database."""

    account: LoginLimit = field(default_factory=lambda: LoginLimit(5, 10))
    # One county office or school often sits behind one NAT address: more room there.
    address: LoginLimit = field(default_factory=lambda: LoginLimit(30, 100))
    first_delay_s: float = 1.0
    lockout_s: float = 15 * 60.0
    # Failures older than this (since the last one) are forgotten.
    forget_after_s: float = 60 * 60.0

    def __post_init__(self) -> None:
        if not 0 < self.first_delay_s <= self.lockout_s:
            raise ValueError("need 0 < first_delay_s <= lockout_s")
        if self.forget_after_s < self.lockout_s:
            raise ValueError("forget_after_s must be at least lockout_s")

    def delay_s(self, limit: LoginLimit, failures: int) -> float:
        """The wait after ``failures`` failures in a row: none, doubling, then the lockout."""
        if failures < limit.free_failures:
            return 0.0
        if failures >= limit.lockout_after:
            return self.lockout_s
        return min(self.first_delay_s * 2.0 ** (failures - limit.free_failures), self.lockout_s)


@dataclass(frozen=True)
class ApiConfig:
    # How long a login token lasts; technicians log in once per working day.
    token_ttl_hours: float = 12.0
    # Secret for calendar subscription links (calendar apps cannot send a bearer
    # header).  Empty: a random one made once and kept in the database
    # (``fleet_secret``), the same for every fleet process and across restarts.
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
    # Timetables up to this size import inside the request (200/422); larger ones run as
    # a background job (202, then GET the job), so a big file never stalls the API.
    import_inline_max_bytes: int = 256 * 1024
    # Errors a refused timetable lists (all are counted).
    import_max_errors: int = 100
    # Dates in the API (lessons, reports) are local dates in this zone.
    timezone: str = "Asia/Shanghai"
    login: LoginConfig = field(default_factory=LoginConfig)
    # Where the device page reads its charts ([api.history]).
    history: HistoryConfig = field(default_factory=HistoryConfig)
    # Grafana's address (e.g. https://grafana.example.cn): the device page links to the
    # overview dashboard of its school.  Empty: no link.
    grafana_url: str = ""

    def __post_init__(self) -> None:
        if (self.bandwidth_tests_per_device < 1 or self.bandwidth_window_s <= 0
                or self.bandwidth_token_grace_s < 0):
            raise ValueError("bandwidth_tests_per_device must be >= 1, bandwidth_window_s > 0 "
                             "and bandwidth_token_grace_s >= 0")
