"""Notification settings: the ``[notify]`` table and one sub-table per channel."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DingTalkConfig",
    "EmailConfig",
    "NotifyConfig",
    "RateLimit",
    "RobotConfig",
    "WeComConfig",
    "WebhookConfig",
]

_STEPS_PER_ATTEMPT = 6


@dataclass
class RateLimit:
    """At most ``per_window`` requests to one target in any ``window_s`` seconds; after a
    refusal for speed, nothing goes to that target for ``throttle_s``."""

    per_window: int = 20
    window_s: float = 60.0
    throttle_s: float = 600.0

    def __post_init__(self) -> None:
        if self.per_window < 1 or self.window_s <= 0 or self.throttle_s <= 0:
            raise ValueError("a rate limit needs per_window >= 1, window_s > 0, throttle_s > 0")


def _dingtalk_limit() -> RateLimit:
    # "每个机器人每分钟最多发送20条消息到群里，如果超过20条，会限流10分钟" (DingTalk docs).
    return RateLimit(per_window=20, window_s=60.0, throttle_s=600.0)


def _wecom_limit() -> RateLimit:
    # "每个机器人发送的消息不能超过20条/分钟" (WeCom docs); past it 45009 until the minute
    # has passed, no longer throttle is documented.
    return RateLimit(per_window=20, window_s=60.0, throttle_s=60.0)


def _mailbox_limit() -> RateLimit:
    # No provider documents a per-recipient rate; ten a minute keeps one technician's inbox
    # readable in a storm (the rest arrive as a digest) and far below relays' daily quotas.
    return RateLimit(per_window=10, window_s=60.0, throttle_s=60.0)


def _webhook_limit() -> RateLimit:
    # A receiver of our own choosing: one a second on average; HTTP 429 throttles a minute.
    return RateLimit(per_window=60, window_s=60.0, throttle_s=60.0)


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
    limit: RateLimit = field(default_factory=_mailbox_limit)  # per recipient mailbox

    def __post_init__(self) -> None:
        if self.ssl and self.starttls:
            raise ValueError("ssl and starttls exclude each other")
        if self.username == "":
            # ``username = ""`` left in a config: a relay that takes mail without AUTH.
            self.username = self.password = None
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if not (self.username or "").isascii() or not (self.password or "").isascii():
            raise ValueError("username and password must be ASCII (SMTP AUTH sends them so)")


@dataclass
class RobotConfig:
    """A group robot (DingTalk, WeCom): the URL and secret come with each message."""

    enabled: bool = True
    timeout_s: float = 10.0
    limit: RateLimit = field(default_factory=_dingtalk_limit)  # per robot (webhook URL)


@dataclass
class DingTalkConfig(RobotConfig):
    limit: RateLimit = field(default_factory=_dingtalk_limit)


@dataclass
class WeComConfig(RobotConfig):
    limit: RateLimit = field(default_factory=_wecom_limit)


@dataclass
class WebhookConfig:
    enabled: bool = True
    timeout_s: float = 10.0
    secret: str | None = None  # signs each POST (X-Syncclass-Signature) when set
    limit: RateLimit = field(default_factory=_webhook_limit)  # per URL


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
    # A notice whose target refused it this many times (or for good) goes to the other
    # channels of the people behind that target, when it has any; else it keeps trying.
    fallback_after: int = 3
    email: EmailConfig = field(default_factory=EmailConfig)
    dingtalk: DingTalkConfig = field(default_factory=DingTalkConfig)
    wecom: WeComConfig = field(default_factory=WeComConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.backoff_initial_s <= 0 or self.backoff_factor < 1:
            raise ValueError("backoff_initial_s must be > 0 and backoff_factor >= 1")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        if self.batch_size < 1 or self.poll_interval_s <= 0 or self.fallback_after < 1:
            raise ValueError("batch_size, poll_interval_s and fallback_after must be positive")
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

    def channel(self, name: str) -> EmailConfig | RobotConfig | WebhookConfig:
        """The settings of channel ``name`` (its timeout, its targets' rate limit)."""
        configs: dict[str, EmailConfig | RobotConfig | WebhookConfig] = {
            "email": self.email,
            "dingtalk": self.dingtalk,
            "wecom": self.wecom,
            "webhook": self.webhook,
        }
        return configs[name]

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt."""
        delay = self.backoff_initial_s * self.backoff_factor ** max(0, attempts - 1)
        return min(self.backoff_max_s, delay)
