"""A real local HTTP server standing in for DingTalk, WeCom and a generic webhook.

It answers like the services do, written from their documentation and independent of the
fleet's code (so a fleet that reads the documentation wrongly fails).  DingTalk checks
``timestamp``/``sign`` by its documented recipe, refuses a bad one with errcode 310000 and
bodies over 20000 bytes with 460101.  WeCom refuses markdown content over 4096 bytes
(40058).  Both robots keep their documented rate limit, each robot (access token or key)
on its own: 20 messages in any minute.  DingTalk then refuses everything with 130101 for
10 minutes ("每个机器人每分钟最多发送20条消息到群里，如果超过20条，会限流10分钟"); WeCom
refuses with 45009 while the minute is full.  The window and the throttle are fields of
the state and the time is its ``clock``, so tests can scale both.  The generic webhook
checks the HMAC header when given a secret (401 otherwise).  Tests can make it fail the
next requests with an HTTP status or a robot errcode.  Paths: ``/dingtalk/robot/send``,
``/wecom/cgi-bin/webhook/send``, ``/hook``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from fleet.broker import free_port

__all__ = ["Request", "WebhookReceiver", "webhook_receiver"]

DINGTALK_MAX_BODY = 20000  # bytes of the request body
WECOM_MAX_CONTENT = 4096  # bytes of markdown.content
SIGNATURE_HEADER = "X-Syncclass-Signature"  # the README's webhook recipe
TIMESTAMP_HEADER = "X-Syncclass-Timestamp"


def dingtalk_refusal(secret: str, timestamp: str, sign: str, now: datetime) -> str | None:
    """DingTalk's check of a signed robot request: HmacSHA256(key=secret,
    msg=timestamp + "\\n" + secret), base64; the timestamp within an hour of now."""
    try:
        millis = int(timestamp)
    except ValueError:
        return f"invalid timestamp {timestamp!r}"
    if abs(now.timestamp() * 1000 - millis) > 3_600_000:
        return "invalid timestamp"
    mac = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return None if hmac.compare_digest(base64.b64encode(mac.digest()).decode(), sign) else (
        "sign not match")


def webhook_signed(secret: str, timestamp: str, body: bytes, received: str,
                   now: datetime) -> bool:
    """The README's webhook recipe: X-Syncclass-Signature = "sha256=" + hex HMAC-SHA256
    (key=secret, msg=timestamp + "." + body), the timestamp within five minutes."""
    try:
        if abs(now.timestamp() - int(timestamp)) > 300:
            return False
    except ValueError:
        return False
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest("sha256=" + mac.hexdigest(), received)

@dataclass(frozen=True)
class Request:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw: bytes
    accepted: bool

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


@dataclass
class _Fault:
    remaining: int
    status: int = 200
    errcode: int = 0
    errmsg: str = ""


@dataclass
class _Robot:
    accepted: list[datetime] = field(default_factory=list)
    throttled_until: datetime | None = None


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _State:
    clock: Callable[[], datetime] = _now
    dingtalk_secret: str | None = None
    webhook_secret: str | None = None
    robot_limit: int = 20  # messages per robot in any window
    robot_window_s: float = 60.0
    dingtalk_throttle_s: float = 600.0  # refusing everything after the limit was passed
    requests: list[Request] = field(default_factory=list)
    faults: list[_Fault] = field(default_factory=list)
    robots: dict[str, _Robot] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def over_limit(self, robot: str, dingtalk: bool) -> dict[str, Any] | None:
        """The refusal for speed, else None with the message counted (call under lock)."""
        now = self.clock()
        state = self.robots.setdefault(robot, _Robot())
        if dingtalk and state.throttled_until is not None and now < state.throttled_until:
            return {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
        window = timedelta(seconds=self.robot_window_s)
        state.accepted = [t for t in state.accepted if t > now - window]
        if len(state.accepted) >= self.robot_limit:
            if dingtalk:
                state.throttled_until = now + timedelta(seconds=self.dingtalk_throttle_s)
                return {"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}
            return {"errcode": 45009, "errmsg": "api freq out of limit"}
        state.accepted.append(now)
        return None


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:
        state = self.server.state
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with state.lock:
            fault = next((f for f in state.faults if f.remaining > 0), None)
            if fault is not None:
                fault.remaining -= 1
        answer: dict[str, Any]
        if fault is not None and fault.status != 200:
            status, answer = fault.status, {"error": "injected"}
        elif fault is not None:
            status, answer = 200, {"errcode": fault.errcode, "errmsg": fault.errmsg}
        else:
            status, answer = self._judge(parts.path, query, raw)
        ok = status == 200 and answer.get("errcode", 0) == 0
        headers = {k.lower(): v for k, v in self.headers.items()}
        with state.lock:
            state.requests.append(Request(parts.path, query, headers, raw, ok))
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _judge(self, path: str, query: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
        state = self.server.state
        if path == "/dingtalk/robot/send":
            if state.dingtalk_secret is not None:
                refusal = dingtalk_refusal(state.dingtalk_secret, query.get("timestamp", ""),
                                           query.get("sign", ""), state.clock())
                if refusal:
                    return 200, {"errcode": 310000, "errmsg": refusal}
            if len(raw) > DINGTALK_MAX_BODY:
                return 200, {"errcode": 460101, "errmsg": "message too long, exceed 20000 bytes"}
            body = json.loads(raw)
            if body.get("msgtype") != "markdown" or not body["markdown"].get("text"):
                return 200, {"errcode": 40035, "errmsg": "缺少参数 markdown"}
            return self._rate(f"dingtalk:{query.get('access_token', '')}", dingtalk=True)
        if path == "/wecom/cgi-bin/webhook/send":
            if "key" not in query:
                return 200, {"errcode": 93000, "errmsg": "invalid webhook url"}
            body = json.loads(raw)
            content = body.get("markdown", {}).get("content", "")
            if len(content.encode("utf-8")) > WECOM_MAX_CONTENT:
                return 200, {"errcode": 40058, "errmsg": "markdown.content exceed max length 4096"}
            return self._rate(f"wecom:{query['key']}", dingtalk=False)
        if path == "/hook":
            if state.webhook_secret is not None and not webhook_signed(
                state.webhook_secret,
                self.headers.get(TIMESTAMP_HEADER, ""),
                raw,
                self.headers.get(SIGNATURE_HEADER, ""),
                state.clock(),
            ):
                return 401, {"error": "bad signature"}
            return 200, {"ok": True}
        return 404, {"error": "no such path"}

    def _rate(self, robot: str, dingtalk: bool) -> tuple[int, dict[str, Any]]:
        state = self.server.state
        with state.lock:
            refusal = state.over_limit(robot, dingtalk)
        return 200, refusal or {"errcode": 0, "errmsg": "ok"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State


class WebhookReceiver:
    def __init__(self) -> None:
        self.port = free_port()
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.state = _State()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def state(self) -> _State:
        return self._server.state

    @property
    def requests(self) -> list[Request]:
        with self.state.lock:
            return list(self.state.requests)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next ``count`` requests with HTTP ``status``."""
        with self.state.lock:
            self.state.faults.append(_Fault(count, status=status))

    def errcode_next(self, count: int, errcode: int, errmsg: str = "injected") -> None:
        """Answer the next ``count`` requests HTTP 200 with a robot ``errcode``."""
        with self.state.lock:
            self.state.faults.append(_Fault(count, errcode=errcode, errmsg=errmsg))

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()
