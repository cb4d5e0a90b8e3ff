"""An ASGI app served for real by uvicorn on a free loopback port, in a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from fleet.api.live import Server
from fleet.broker import free_port, wait_for_port

__all__ = ["served"]


@contextmanager
def served(app: Any, port: int | None = None) -> Iterator[str]:
    """Yields the base URL (``http://127.0.0.1:PORT``) while the app is served."""
    port = port or free_port()
    # As fleet.app serves it: an open page's live event stream does not hold the stop.
    server = Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                   timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
