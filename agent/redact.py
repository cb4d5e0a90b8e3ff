"""Credentials never leave the classroom PC: URLs are shown with their password masked.

An RTSP camera is configured as ``rtsp://admin:secret@10.0.0.5/...``; that URL reaches
device ids, inventories, ffmpeg's error lines and the technician's screen.  Everything the
agent publishes (and prints) goes through ``redact_json``, so the fleet, its database and
its API only ever see ``rtsp://admin:***@10.0.0.5/...``; the real URL stays in the agent's
config, where ffmpeg gets it.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MASK", "redact", "redact_json"]

MASK = "***"
# scheme://user:password@ - the password may hold anything but "@" and whitespace, since
# people paste passwords with "/" or ":" unescaped and ffmpeg still accepts them.
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):[^\s@]*@")
# ...?user=admin&password=secret, as some IP cameras take them.
_QUERY = re.compile(r"([?&;](?:password|passwd|pwd|pass)=)[^&;#\s]*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with URL passwords replaced by ``***``; unchanged if it holds none."""
    if "://" not in text and "=" not in text:
        return text
    return _QUERY.sub(rf"\g<1>{MASK}", _USERINFO.sub(rf"\g<1>:{MASK}@", text))


def redact_json(value: Any) -> Any:
    """A JSON value with every string (keys too) redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(k) if isinstance(k, str) else k: redact_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_json(v) for v in value]
    return value
