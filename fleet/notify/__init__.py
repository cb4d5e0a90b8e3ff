"""Notifications: the outbox, its dispatcher and one module per channel.

Exceptions: :class:`~fleet.notify.base.ChannelError` (``retryable`` or not) is the only
error a channel raises; the dispatcher turns it into a retry or a visible failure.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fleet.db.base import utcnow
from fleet.notify.base import Channel, ChannelError, Outgoing
from fleet.notify.config import NotifyConfig
from fleet.notify.dingtalk import DingTalkChannel
from fleet.notify.dispatcher import Dispatcher
from fleet.notify.email import EmailChannel
from fleet.notify.outbox import CHANNELS, enqueue, failed_notifications, requeue
from fleet.notify.webhook import WebhookChannel
from fleet.notify.wecom import WeComChannel

__all__ = [
    "CHANNELS",
    "Channel",
    "ChannelError",
    "Dispatcher",
    "NotifyConfig",
    "Outgoing",
    "build_channels",
    "enqueue",
    "failed_notifications",
    "requeue",
]


def build_channels(
    config: NotifyConfig, clock: Callable[[], datetime] = utcnow
) -> dict[str, Channel]:
    """The enabled channels by name; a message for a disabled one fails visibly."""
    channels: dict[str, Channel] = {}
    if config.email.enabled:
        channels["email"] = EmailChannel(config.email, clock)
    if config.dingtalk.enabled:
        channels["dingtalk"] = DingTalkChannel(config.dingtalk, clock)
    if config.wecom.enabled:
        channels["wecom"] = WeComChannel(config.wecom)
    if config.webhook.enabled:
        channels["webhook"] = WebhookChannel(config.webhook, clock)
    return channels
