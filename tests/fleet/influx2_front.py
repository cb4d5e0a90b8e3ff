"""InfluxDB 2's write API in front of the real VictoriaMetrics, for what VictoriaMetrics
does not do: refuse points.

VictoriaMetrics stores every line it can parse and answers 204 whatever else it skips,
so it never refuses a batch.  InfluxDB 2 does, by its documentation: a field keeps the
type of its first value ("field type conflict"), and a write holding conflicting points
is answered 422 with a JSON error (code "unprocessable entity") while the other points of
the batch are written (a partial write).  This front enforces that rule per measurement
and field key, forwards the accepted lines to VictoriaMetrics unchanged, and can answer
the next requests with a server error, as an InfluxDB behind an overloaded proxy does.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from fleet.broker import free_port
from tests.fleet.tsdb_server import VictoriaMetrics

__all__ = ["InfluxFront", "influx_front"]

_UNESCAPED_SPACE = re.compile(r"(?<!\\) ")
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")
_UNESCAPED_EQUALS = re.compile(r"(?<!\\)=")


def _field_type(value: str) -> str:
    if value in ("t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"):
        return "boolean"
    if value.startswith('"'):
        return "string"
    if value.endswith("i"):
        return "integer"
    if value.endswith("u"):
        return "unsigned"
    return "float"


@dataclass
class InfluxFront:
    victoria: VictoriaMetrics
    port: int = field(default_factory=free_port)
    types: dict[tuple[str, str], str] = field(default_factory=dict)
    fail_next: list[int] = field(default_factory=list)  # statuses for the next requests
    answers: list[int] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def conflicts(self, line: str) -> str | None:
        """Why the line's fields conflict with the types already stored; records them."""
        parts = _UNESCAPED_SPACE.split(line)
        measurement = _UNESCAPED_COMMA.split(parts[0])[0]
        fields = [_UNESCAPED_EQUALS.split(f, maxsplit=1)
                  for f in _UNESCAPED_COMMA.split(parts[1])]
        for key, value in fields:
            kind, known = _field_type(value), self.types.get((measurement, key))
            if known is not None and known != kind:
                return (f'partial write: field type conflict: input field "{key}" on '
                        f'measurement "{measurement}" is type {kind}, already exists as '
                        f"type {known}")
        for key, value in fields:
            self.types[(measurement, key)] = _field_type(value)
        return None

    def write(self, body: bytes, query: str) -> tuple[int, dict[str, Any] | None]:
        with self._lock:
            if self.fail_next:
                status = self.fail_next.pop(0)
                self.answers.append(status)
                return status, {"code": "internal error", "message": "overloaded"}
            accepted, refused = [], []
            for line in body.decode().splitlines():
                if line.strip():
                    (refused if (why := self.conflicts(line)) else accepted).append(why or line)
            if accepted:
                request = urllib.request.Request(
                    f"{self.victoria.url}/api/v2/write?{query}",
                    data="\n".join(accepted).encode(), method="POST")
                urllib.request.urlopen(request, timeout=5).close()
            status = 422 if refused else 204
            self.answers.append(status)
            if refused:
                return 422, {"code": "unprocessable entity", "message": refused[0]}
            return 204, None

    def start(self) -> InfluxFront:
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                path, _, query = self.path.partition("?")
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if path != "/api/v2/write":
                    status, error = 404, {"code": "not found", "message": "path not found"}
                else:
                    status, error = front.write(body, query)
                payload = b"" if error is None else json.dumps(error).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture
def influx_front(victoria: VictoriaMetrics) -> Iterator[InfluxFront]:
    front = InfluxFront(victoria).start()
    try:
        yield front
    finally:
        front.stop()
