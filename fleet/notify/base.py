"""The channel seam: what every notification channel implements, and how it fails.

A channel turns one outgoing message into one delivery attempt.  It never retries by
itself: it raises :class:`ChannelError` and says whether another attempt could succeed
(a timeout, a 5xx, a rate limit) or not (a wrong secret, an unknown recipient), and the
dispatcher decides when to try again and when to give up visibly.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "Channel",
    "ChannelError",
    "Outgoing",
    "fit_json",
    "redact",
    "truncate_utf8",
]

TRUNCATED = "\n…（内容过长已截断 truncated）"


class ChannelError(Exception):
    """One delivery attempt failed; ``retryable`` says whether trying later may help,
    ``throttled`` that the target refused for speed (wait out its documented throttle)."""

    def __init__(self, message: str, *, retryable: bool, throttled: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable or throttled
        self.throttled = throttled


@dataclass(frozen=True)
class Outgoing:
    """A notification as a channel sees it: detached from the database session."""

    id: int
    channel: str
    target: str
    kind: str
    subject: str
    body: str
    alert_id: int | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None  # of the outbox row: stable across attempts


class Channel(ABC):
    """Delivers one message; raises :class:`ChannelError` when it could not."""

    @abstractmethod
    def send(self, message: Outgoing) -> None: ...

    def close(self) -> None:  # noqa: B027 - an optional hook, not every channel holds one
        """Release connections; the default channel holds none."""


def truncate_utf8(text: str, max_bytes: int, marker: str = TRUNCATED) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8, on a character boundary, marked."""
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    room = max(0, max_bytes - len(marker.encode("utf-8")))
    return raw[:room].decode("utf-8", errors="ignore") + marker


def fit_json(make: Callable[[str], dict[str, Any]], text: str, max_bytes: int) -> bytes:
    """The JSON body ``make(text)`` with ``text`` shortened until the body fits ``max_bytes``.

    JSON escaping makes the body grow by more than the text, so the cut is repeated with
    the measured overflow until it fits; each round removes at least that many bytes.
    """
    while True:
        body = json.dumps(make(text), ensure_ascii=False).encode("utf-8")
        overflow = len(body) - max_bytes
        if overflow <= 0:
            return body
        size = len(text.encode("utf-8"))
        if size <= len(TRUNCATED.encode("utf-8")):
            raise ChannelError(f"message frame alone exceeds {max_bytes} bytes", retryable=False)
        text = truncate_utf8(text, size - overflow)


def redact(target: str) -> str:
    """A target fit for logs: webhook URLs carry their credential in the query string."""
    if "://" not in target:
        return target
    parts = urlsplit(target)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?…" if parts.query else "")
