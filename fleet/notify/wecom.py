"""WeCom (企业微信) group robot, markdown messages.

POST ``{"msgtype": "markdown", "markdown": {"content": ...}}`` to the robot's
``.../cgi-bin/webhook/send?key=...`` URL; the reply is ``{"errcode": 0}`` on success.
The content may hold at most 4096 bytes of UTF-8 (``40058`` otherwise), so it is cut to
fit; ``45009`` (over 20 messages a minute: waits out the throttle) and ``-1`` (system
busy) are retried, other
codes (``93000`` invalid webhook URL...) are configuration faults.
"""

from __future__ import annotations

import json

from fleet.notify.base import Channel, Outgoing, truncate_utf8
from fleet.notify.config import RobotConfig, WeComConfig
from fleet.notify.transport import HttpTransport, check_errcode

__all__ = ["MAX_CONTENT_BYTES", "WeComChannel"]

MAX_CONTENT_BYTES = 4096
_RETRYABLE = frozenset({-1, 45009})
_THROTTLED = frozenset({45009})


class WeComChannel(Channel):
    def __init__(self, config: RobotConfig | None = None) -> None:
        self._config = config or WeComConfig()
        self._http = HttpTransport(self._config.timeout_s)

    def send(self, message: Outgoing) -> None:
        content = truncate_utf8(f"### {message.subject}\n{message.body}", MAX_CONTENT_BYTES)
        body = {"msgtype": "markdown", "markdown": {"content": content}}
        raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
        check_errcode(self._http.post(message.target, raw), "WeCom", _RETRYABLE, _THROTTLED)

    def close(self) -> None:
        self._http.close()
