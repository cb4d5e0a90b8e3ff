"""A generic JSON webhook for anything else (a ticket system, a chat bridge, a script).

The POST body is ``{"version": "1", "id", "kind", "subject", "body", "alert_id",
"alert": {...}}``; ``id`` is stable across retries so that a receiver can drop the
duplicate of an attempt whose answer was lost.  With a shared secret, each POST carries
``X-Syncclass-Timestamp`` (unix seconds) and ``X-Syncclass-Signature: sha256=<hex>``,
the HMAC-SHA256 of ``timestamp + "." + body`` (documented in the README for
receivers).  Any 2xx answer is success.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime

from fleet.db.base import utcnow
from fleet.notify.base import Channel, Outgoing
from fleet.notify.config import WebhookConfig
from fleet.notify.transport import HttpTransport

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WebhookChannel",
    "signature",
]

SIGNATURE_HEADER = "X-Syncclass-Signature"
TIMESTAMP_HEADER = "X-Syncclass-Timestamp"
# Keys of a notification's payload that steer a channel and are nobody else's business
# (a robot's secret, people's phone numbers, the routes of other channels).
_PRIVATE_KEYS = frozenset({"secret", "at_mobiles", "fallback"})


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookChannel(Channel):
    def __init__(
        self, config: WebhookConfig | None = None, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._config = config or WebhookConfig()
        self._clock = clock
        self._http = HttpTransport(self._config.timeout_s)

    def send(self, message: Outgoing) -> None:
        document = {
            "version": "1",
            "id": message.id,
            "kind": message.kind,
            "subject": message.subject,
            "body": message.body,
            "alert_id": message.alert_id,
            "alert": {k: v for k, v in message.payload.items() if k not in _PRIVATE_KEYS},
        }
        body = json.dumps(document, ensure_ascii=False).encode("utf-8")
        headers = {"X-Syncclass-Delivery": str(message.id)}
        if self._config.secret:
            timestamp = str(int(self._clock().timestamp()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = signature(self._config.secret, timestamp, body)
        self._http.post(message.target, body, headers)

    def close(self) -> None:
        self._http.close()
