"""Remote-action settings (TOML table ``[actions]``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from agent.contract import DEFAULT_PREFIX

__all__ = ["ActionConfig", "RateLimit"]


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` actions in ``window_s`` seconds, per device or per actor.

    ``actions`` names the actions counted (empty: all of them).  TOML:
    ``[[actions.limits]] scope = "device"  actions = ["reboot"]  count = 1  window_s = 600``.
    """

    scope: Literal["device", "actor"]
    count: int
    window_s: float
    actions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.scope not in ("device", "actor"):
            raise ValueError(f"scope must be 'device' or 'actor', not {self.scope!r}")
        if self.count < 1 or self.window_s <= 0:
            raise ValueError("count must be >= 1 and window_s > 0")


def _default_limits() -> tuple[RateLimit, ...]:
    return (
        # A classroom PC that is rebooted again before it has come back gains nothing,
        # and a loop of reboots is the worst thing a script could do to a lesson.
        RateLimit("device", 1, 600.0, ("reboot",)),
        RateLimit("device", 3, 600.0, ("restart-service",)),
        RateLimit("actor", 20, 60.0),
    )


@dataclass(frozen=True)
class ActionConfig:
    prefix: str = DEFAULT_PREFIX
    # The fleet's Ed25519 private key (PEM or base64 of the raw 32-byte seed); generated
    # with mode 0600 when missing.  Its public half goes into every agent's config.
    key_file: Path = Path("/var/lib/syncclass/fleet-ed25519.key")
    # A command not executed within this is refused by the agent (it may have been
    # queued by the broker while the classroom was offline).
    command_ttl_s: float = 300.0
    # An accepted action without a cmd/result by then is audited as "timeout".
    answer_timeout_s: float = 360.0
    # No reboot / restart inside this lead before a lesson: the pre-class check runs
    # then (keep equal to checks.lead_minutes).
    lead_minutes: float = 30.0
    # Units restart-service may name; the agent has its own allow-list as well.
    allowed_units: tuple[str, ...] = ("syncclass-agent",)
    limits: tuple[RateLimit, ...] = field(default_factory=_default_limits)

    def __post_init__(self) -> None:
        if self.command_ttl_s <= 0 or self.answer_timeout_s <= 0 or self.lead_minutes < 0:
            raise ValueError("command_ttl_s and answer_timeout_s must be > 0, lead_minutes >= 0")
