"""The people-facing REST API and web page of the fleet."""

from __future__ import annotations

from fleet.api.app import create_api
from fleet.api.config import ApiConfig
from fleet.api.deps import Services

__all__ = ["ApiConfig", "Services", "create_api"]
