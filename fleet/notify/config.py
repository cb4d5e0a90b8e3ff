"""Notification settings: the ``[notify]`` table and one sub-table per channel."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EmailConfig", "NotifyConfig", "RobotConfig", "WebhookConfig"]

_STEPS_PER_ATTEMPT = 6


@dataclass
class EmailConfig:
    enabled: bool = True
    host: str = "localhost"
    port: int = 25
    sender: str = "syncclass@localhost"  # may carry a name: "同步课堂运维 <ops@example.cn>"
    starttls: bool = False
    ssl: bool = False  # implicit TLS (port 465); excludes starttls
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None  # a private CA for the relay's certificate
    helo_name: str = "syncclass-fleet"
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.ssl and self.starttls:
            raise ValueError("ssl and starttls exclude each other")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if not (self.username or "").isascii() or not (self.password or "").isascii():
            raise ValueError("username and password must be ASCII (SMTP AUTH sends them so)")


@dataclass
class RobotConfig:
    """A group robot (DingTalk, WeCom): the URL and secret come with each message."""

    enabled: bool = True
    timeout_s: float = 10.0


@dataclass
class WebhookConfig:
    enabled: bool = True
    timeout_s: float = 10.0
    secret: str | None = None  # signs each POST (X-Syncclass-Signature) when set


@dataclass
class NotifyConfig:
    max_attempts: int = 8  # then the notification is failed, shown and counted
    backoff_initial_s: float = 30.0
    backoff_factor: float = 2.0
    backoff_max_s: float = 1800.0
    # A claimed notification is invisible to other dispatchers this long; it must outlast
    # one delivery attempt, or two dispatchers could send the same message.  An attempt
    # is several network steps (connect, TLS, login, data), each bounded by timeout_s.
    lease_s: float = 120.0
    batch_size: int = 100
    poll_interval_s: float = 5.0
    email: EmailConfig = field(default_factory=EmailConfig)
    dingtalk: RobotConfig = field(default_factory=RobotConfig)
    wecom: RobotConfig = field(default_factory=RobotConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_initial_s <= 0 or self.backoff_factor < 1:
            raise ValueError("backoff_initial_s must be > 0 and backoff_factor >= 1")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        if self.batch_size < 1 or self.poll_interval_s <= 0:
            raise ValueError("batch_size and poll_interval_s must be positive")
        longest = max(
            self.email.timeout_s,
            self.dingtalk.timeout_s,
            self.wecom.timeout_s,
            self.webhook.timeout_s,
        )
        if self.lease_s <= _STEPS_PER_ATTEMPT * longest:
            raise ValueError(
                f"lease_s must exceed {_STEPS_PER_ATTEMPT} times the longest channel timeout"
                f" ({longest}s)"
            )

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt."""
        delay = self.backoff_initial_s * self.backoff_factor ** max(0, attempts - 1)
        return min(self.backoff_max_s, delay)
