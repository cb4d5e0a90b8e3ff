"""Alerts: rules turn payloads into signals; the engine runs each ticket's life-cycle.

Public surface: :class:`AlertEngine` (a MessageSink with ``tick``, ``acknowledge``,
``add_silence`` and ``query``), :class:`AlertConfig`, :class:`Signal` and
:class:`Observation`.  Errors: :class:`AlertNotFound` (a LookupError) and
:class:`AlertStateError` (a ValueError); bad arguments raise ValueError.
"""

from __future__ import annotations

from fleet.alerts.config import AlertConfig
from fleet.alerts.engine import AlertEngine, AlertNotFound, AlertStateError
from fleet.alerts.signal import RULES, Observation, Signal

__all__ = [
    "RULES",
    "AlertConfig",
    "AlertEngine",
    "AlertNotFound",
    "AlertStateError",
    "Observation",
    "Signal",
]
