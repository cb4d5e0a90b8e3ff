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
    # The bandwidth test endpoint is unauthenticated, so both directions are capped.
    bandwidth_max_bytes: int = 32 * 1024 * 1024
    # Largest timetable file accepted (xlsx of a whole county is well under this).
    upload_max_bytes: int = 5 * 1024 * 1024
    # Timetables up to this size import inside the request (200/422); larger ones run as
    # a background job (202, then GET the job), so a big file never stalls the API.
    import_inline_max_bytes: int = 256 * 1024
    # Errors a refused timetable lists (all are counted).
    import_max_errors: int = 100
    # Dates in the API (lessons, reports) are local dates in this zone.
    timezone: str = "Asia/Shanghai"
