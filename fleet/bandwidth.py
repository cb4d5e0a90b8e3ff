"""Who may use the bandwidth test endpoint: a device the fleet asked to check, briefly.

Every run-check the fleet signs carries, in its ``bandwidth_url``, a token bound to the
device and an expiry (a pre-signed URL: ``agent.contract.BANDWIDTH_TOKEN_PARAM``).  The
token is ``<device>.<expires unix s>.<HMAC-SHA256>`` under a secret each fleet process
derives from the shared command-signing key, so any process verifies it without a
database look-up.  The endpoint admits a valid token at most ``tests_per_window`` times
per device in ``window_s`` (counted per process: one classroom's check takes two, down
and up); anyone else gets 401 before a byte of the payload moves either way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from agent.contract import DEVICE_ID_RE, with_bandwidth_token
from fleet.db.base import utcnow
from fleet.metrics import Sample

__all__ = ["SECRET_PURPOSE", "BandwidthAccess", "QuotaExceeded", "TokenRefused"]

#: The HKDF purpose the secret is derived for (``fleet.actions.signer.Signer``).
SECRET_PURPOSE = "syncclass bandwidth token v1"
# ASCII digits of a sane length only: int() of thousands of digits or of "²", and a
# datetime past the year 9999, raise; compare_digest wants ASCII.
_TOKEN_RE = re.compile(
    rf"(?P<device>{DEVICE_ID_RE.pattern.strip('^$')})\.(?P<expires>[0-9]{{1,11}})"
    r"\.(?P<mac>[A-Za-z0-9_-]{43})"
)


class TokenRefused(Exception):
    """No token, or one the fleet did not issue, or one past its expiry (HTTP 401)."""

    def __init__(self, reason: str, message_zh: str, message_en: str) -> None:
        super().__init__(f"{reason}: {message_en}")
        self.reason = reason
        self.message_zh = message_zh
        self.message_en = message_en


class QuotaExceeded(Exception):
    """The device used up its tests for now (HTTP 429)."""

    def __init__(self, device_id: str, retry_after_s: float) -> None:
        super().__init__(f"{device_id}: retry in {retry_after_s:.0f} s")
        self.device_id = device_id
        self.retry_after_s = retry_after_s


def _mac(secret: bytes, device_id: str, expires: int) -> str:
    digest = hmac.new(secret, f"bandwidth/{device_id}/{expires}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode("ascii")


class BandwidthAccess:
    def __init__(
        self,
        secret: bytes,
        endpoint_url: str,
        *,
        token_grace_s: float = 120.0,
        tests_per_window: int = 6,
        window_s: float = 600.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """``endpoint_url``: the fleet's endpoint as the run-checks name it
        (``checks.bandwidth_url``); a token outlives its command by ``token_grace_s``,
        as the agent runs the other probes first."""
        self._secret = secret
        self.endpoint_url = endpoint_url
        self.token_grace = timedelta(seconds=token_grace_s)
        self.tests_per_window = tests_per_window
        self.window = timedelta(seconds=window_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._used: dict[str, deque[datetime]] = {}
        self._counts: Counter[str] = Counter()

    # ------------------------------------------------------------ issuing

    def issue(self, device_id: str, expires_at: datetime) -> str:
        expires = int(expires_at.timestamp())
        return f"{device_id}.{expires}.{_mac(self._secret, device_id, expires)}"

    def presign(self, url: str | None, device_id: str, command_expires: datetime) -> str | None:
        """The URL a run-check to ``device_id`` carries: with a token if it is the fleet's
        endpoint (another test server is not given the fleet's tokens)."""
        if not url or url != self.endpoint_url:
            return url
        expires = command_expires + self.token_grace
        return with_bandwidth_token(url, self.issue(device_id, expires))

    # ------------------------------------------------------------ admitting

    def admit(self, token: str | None) -> str:
        """The device a request's token belongs to, counted against its quota.

        Raises TokenRefused or QuotaExceeded; nothing is counted for a refused token, so
        forged ones cannot fill the memory or use up a real device's tests.
        """
        try:
            device_id = self._verify(token)
        except TokenRefused as refused:
            with self._lock:
                self._counts[refused.reason] += 1
            raise
        now = self._clock()
        since = now - self.window
        with self._lock:
            used = self._used.setdefault(device_id, deque())
            while used and used[0] <= since:
                used.popleft()
            if len(used) >= self.tests_per_window:
                self._counts["rate_limited"] += 1
                retry = (used[0] - since).total_seconds()
                raise QuotaExceeded(device_id, max(retry, 1.0))
            used.append(now)
            self._counts["admitted"] += 1
        return device_id

    def _verify(self, token: str | None) -> str:
        if not token:
            raise TokenRefused("missing", "缺少测速令牌：测速接口只供车队课前检查命令使用",
                               "no token: the bandwidth test is only for checks the fleet "
                               "sends")
        found = _TOKEN_RE.fullmatch(token)
        if found is None:
            raise TokenRefused("malformed", "测速令牌格式错误", "malformed token")
        device_id, expires = found["device"], int(found["expires"])
        mac = found["mac"]
        if not hmac.compare_digest(mac, _mac(self._secret, device_id, expires)):
            raise TokenRefused("bad_signature", "测速令牌不是本车队签发的",
                               "token not issued by this fleet")
        if datetime.fromtimestamp(expires, UTC) <= self._clock():
            raise TokenRefused("expired", "测速令牌已过期，请重新运行检查",
                               "token expired; run the check again")
        return device_id

    def samples(self) -> Iterable[Sample]:
        with self._lock:
            counts = sorted(self._counts.items())
        for result, value in counts:
            yield Sample("syncclass_bandwidth_requests_total",
                         "Bandwidth test requests: admitted, or why refused.",
                         value, labels={"result": result})
