"""DingTalk (钉钉) custom group robot, markdown messages, signed form included.

Signed robots ("加签") expect ``&timestamp=<ms>&sign=<s>`` on the webhook URL, where
``s = urlencode(base64(HMAC-SHA256(key=secret, msg=timestamp + "\\n" + secret)))``;
DingTalk refuses a timestamp more than an hour away from its clock.  The reply is HTTP
200 with ``{"errcode": 0}`` on success; ``310000`` (sign not match / invalid timestamp /
keyword / IP list) and an unknown token are configuration faults and are not retried,
``130101`` (over 20 messages a minute, then throttled for 10 minutes) waits that out.
A request body over 20000 bytes is refused (``460101``), so the text is cut to fit.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote_plus

from fleet.db.base import utcnow
from fleet.notify.base import Channel, Outgoing, fit_json, truncate_utf8
from fleet.notify.config import DingTalkConfig, RobotConfig
from fleet.notify.transport import HttpTransport, check_errcode

__all__ = [
    "MAX_BODY_BYTES",
    "DingTalkChannel",
    "sign",
]

MAX_BODY_BYTES = 20000
MAX_TITLE_BYTES = 256  # the title is the chat-list preview; the text carries the rest
# 130101: send too fast (throttled for minutes); 410100: flow control; -1: system busy.
_RETRYABLE = frozenset({-1, 130101, 410100})
_THROTTLED = frozenset({130101, 410100})


def sign(secret: str, timestamp_ms: int | str) -> str:
    """The base64 signature of ``timestamp`` (not yet URL-encoded)."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode("utf-8"), to_sign, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _markdown(message: Outgoing, mobiles: list[str]) -> str:
    """The markdown text; DingTalk needs a blank line for a visible line break."""
    parts = [f"#### {message.subject}"]
    if mobiles:
        # A mention only rings when the number also appears in the text; it goes before
        # the body so that cutting a long body never drops it.
        parts.append(" ".join(f"@{m}" for m in mobiles))
    parts.extend(line.rstrip() for line in message.body.splitlines())
    return "\n\n".join(parts)


class DingTalkChannel(Channel):
    def __init__(
        self, config: RobotConfig | None = None, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._config = config or DingTalkConfig()
        self._clock = clock
        self._http = HttpTransport(self._config.timeout_s)

    def send(self, message: Outgoing) -> None:
        mobiles = [str(m) for m in message.payload.get("at_mobiles", [])]
        text = _markdown(message, mobiles)
        title = truncate_utf8(message.subject, MAX_TITLE_BYTES, marker="…")

        def make(content: str) -> dict[str, Any]:
            return {
                "msgtype": "markdown",
                "markdown": {"title": title, "text": content},
                "at": {"atMobiles": mobiles, "isAtAll": False},
            }

        body = fit_json(make, text, MAX_BODY_BYTES)
        url = message.target
        secret = message.payload.get("secret")
        if secret:
            millis = int(self._clock().timestamp() * 1000)
            sep = "&" if "?" in url else "?"
            url = f"{url}{sep}timestamp={millis}&sign={quote_plus(sign(str(secret), millis))}"
        check_errcode(self._http.post(url, body), "DingTalk", _RETRYABLE, _THROTTLED)

    def close(self) -> None:
        self._http.close()
