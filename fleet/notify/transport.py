"""One JSON POST over HTTP, with its failure classified for the dispatcher.

Timeouts, refused connections, 408/429 and 5xx may pass on a later attempt; any other
4xx and an unusable URL will not.  The robots (DingTalk, WeCom) answer HTTP 200 with an
``errcode`` in the body, so they classify that part themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from fleet.notify.base import ChannelError, redact

__all__ = ["HttpTransport", "check_errcode"]

_RETRY_STATUS = frozenset({408, 425, 429})
_TOO_FAST = 429


class HttpTransport:
    def __init__(self, timeout_s: float, user_agent: str = "syncclass-fleet") -> None:
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s),
            headers={"User-Agent": user_agent},
            follow_redirects=False,
        )

    def post(
        self, url: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """POST ``body`` as JSON; a response outside 2xx raises :class:`ChannelError`."""
        merged = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        try:
            response = self._client.post(url, content=body, headers=merged)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise ChannelError(f"bad URL {redact(url)}: {exc}", retryable=False) from None
        except httpx.TimeoutException:
            raise ChannelError(f"timeout posting to {redact(url)}", retryable=True) from None
        except httpx.TransportError as exc:
            raise ChannelError(
                f"cannot reach {redact(url)}: {type(exc).__name__} {exc}", retryable=True
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return response
        retryable = status >= 500 or status in _RETRY_STATUS
        snippet = response.text[:200].replace("\n", " ")
        raise ChannelError(
            f"HTTP {status} from {redact(url)}: {snippet}",
            retryable=retryable,
            throttled=status == _TOO_FAST,
        )

    def close(self) -> None:
        self._client.close()


def check_errcode(
    response: httpx.Response,
    robot: str,
    retryable: frozenset[int],
    throttled: frozenset[int] = frozenset(),
) -> None:
    """Raise unless the robot's JSON answer says ``errcode`` 0 (DingTalk and WeCom answer
    HTTP 200 either way); a reply that is not the documented JSON is retried, a code in
    ``throttled`` (a refusal for speed) waits out the robot's throttle."""
    try:
        data: Any = response.json()
        code, errmsg = int(data["errcode"]), str(data.get("errmsg", ""))
    except (ValueError, KeyError, TypeError):
        snippet = response.text[:200].replace("\n", " ")
        raise ChannelError(f"unexpected {robot} reply: {snippet!r}", retryable=True) from None
    if code != 0:
        raise ChannelError(
            f"{robot} errcode {code}: {errmsg}",
            retryable=code in retryable,
            throttled=code in throttled,
        )
