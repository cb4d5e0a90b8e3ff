"""The bandwidth test's HTTP client: download and upload against the fleet's endpoint.

Kept apart from ``netio`` because only a pre-class check's bandwidth test needs it:
the HTTP client stack stays out of the resident agent until the first test.
"""

from __future__ import annotations

import http.client
import os
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from agent.contract import bandwidth_token
from agent.hardware.base import HardwareError

__all__ = ["download", "upload"]

_CHUNK = 64 * 1024
# Answers that say "not you" or "not now" rather than "the link is bad": the probe then
# reports the bandwidth as untested, with the reason, instead of a slow or broken link.
_REFUSED = {401: "bandwidth_unauthorized", 403: "bandwidth_unauthorized",
            429: "bandwidth_rate_limited"}


def _with_bytes(url: str, nbytes: int) -> str:
    return f"{url}{'&' if '?' in url else '?'}bytes={nbytes}"


def _split(url: str) -> tuple[str, dict[str, str]]:
    """The URL to ask and its headers: the fleet's token moves from the pre-signed URL
    into ``Authorization``, out of proxies' request logs and out of error messages."""
    bare, token = bandwidth_token(url)
    return bare, ({"Authorization": f"Bearer {token}"} if token else {})


def _status_error(method: str, url: str, status: int, had_token: bool) -> HardwareError:
    reason = _REFUSED.get(status, "bandwidth_test_failed")
    why = ""
    if reason == "bandwidth_unauthorized":
        why = (" (token refused: expired?)" if had_token else
               " (no token: the fleet's endpoint serves only checks the fleet sends)")
    elif reason == "bandwidth_rate_limited":
        why = " (too many tests from this device for now)"
    return HardwareError(reason, f"{method} {url}: HTTP {status}{why}")


def download(url: str, nbytes: int, timeout_s: float) -> float:
    """GET ``url?bytes=N`` and read until N bytes or ``timeout_s``; Mbit/s."""
    bare, headers = _split(url)
    request = urllib.request.Request(_with_bytes(bare, nbytes), headers=headers)
    received = 0
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout_s + 5) as resp:
            while received < nbytes and time.perf_counter() - started < timeout_s:
                chunk = resp.read(_CHUNK)
                if not chunk:
                    break
                received += len(chunk)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise _status_error("GET", bare, exc.code, bool(headers)) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise HardwareError("bandwidth_test_failed", f"GET {bare}: {exc}") from None
    elapsed = time.perf_counter() - started
    if not received:
        raise HardwareError("bandwidth_test_failed", f"GET {bare}: no data")
    return received * 8 / elapsed / 1e6


def upload(url: str, nbytes: int, timeout_s: float) -> float:
    """POST up to ``nbytes`` (chunked) for at most ``timeout_s``; Mbit/s to the answer."""
    bare, headers = _split(url)
    parts = urlsplit(bare)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HardwareError("bandwidth_test_failed", f"not an http(s) URL: {bare}")
    conn_cls = (http.client.HTTPSConnection if parts.scheme == "https"
                else http.client.HTTPConnection)
    conn = conn_cls(parts.hostname, parts.port, timeout=timeout_s + 5)
    block = os.urandom(_CHUNK)  # incompressible, so a compressing proxy cannot flatter us
    sent = 0
    started = time.perf_counter()
    try:
        conn.putrequest("POST", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Transfer-Encoding", "chunked")
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        try:
            while sent < nbytes and time.perf_counter() - started < timeout_s:
                piece = block[: min(_CHUNK, nbytes - sent)]
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
            conn.send(b"0\r\n\r\n")
        except OSError:
            pass  # a server that refuses early (401, 413) closes; its answer says why
        resp = conn.getresponse()
        resp.read()
        elapsed = time.perf_counter() - started
    except (OSError, http.client.HTTPException) as exc:
        raise HardwareError("bandwidth_test_failed", f"POST {bare}: {exc}") from None
    finally:
        conn.close()
    if not 200 <= resp.status < 300:
        raise _status_error("POST", bare, resp.status, bool(headers))
    return sent * 8 / elapsed / 1e6
