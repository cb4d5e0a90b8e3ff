"""Sending schemathesis cases through the app's own httpx TestClient.

grafana-client pulls in urllib3-future, which replaces urllib3 and breaks schemathesis'
requests transport, so cases become httpx keyword arguments instead.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from sqlalchemy.orm import sessionmaker

from fleet.db.base import Base, make_engine
from tests.fleet.api_world import World, open_world
from tests.fleet.pilot import load_pilot

__all__ = ["httpx_kwargs", "module_world"]


def module_world(prefix: str) -> World:
    """The app over one pilot database for a whole test module.

    Schemathesis collects the operations at import time, so the world is made then too,
    and later operations see what earlier ones created.
    """
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, directory, True)
    engine = make_engine(f"sqlite:///{directory / 'fleet.db'}")
    Base.metadata.create_all(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    load_pilot(sessions)
    return open_world(sessions)


def httpx_kwargs(case: schemathesis.Case, headers: dict[str, str]) -> dict[str, Any]:
    kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
    kwargs.pop("timeout", None)
    kwargs.pop("allow_redirects", None)
    if not kwargs.get("cookies"):
        kwargs.pop("cookies", None)
    data = kwargs.get("data")
    if isinstance(data, bytes | str):
        kwargs["content"] = kwargs.pop("data")
    # schemathesis may generate a multipart body with no file part at all (files=None).
    if kwargs.get("files") is not None:
        kwargs["files"] = [(name, _file(value)) for name, value in _items(kwargs["files"])]
    else:
        kwargs.pop("files", None)
    return kwargs


def _items(files: Any) -> list[tuple[str, Any]]:
    return list(files.items()) if isinstance(files, dict) else list(files)


def _file(value: Any) -> Any:
    """httpx wants bytes where requests accepts anything it can str()."""
    if isinstance(value, tuple):
        return (value[0], _file(value[1]), *value[2:])
    return value if isinstance(value, bytes) else str(value).encode()
