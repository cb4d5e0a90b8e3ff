"""The syncclass wire contract, version 2: MQTT topics, typed JSON payloads, reasons.

Agent and fleet both import this package and nothing else to talk to each other; it is
documented in the README ("Wire contract").  It must stay light: it is loaded on every
classroom mini-PC (its one dependency, msgspec, is a small C extension).

- :mod:`agent.contract.wire`: topics, the envelope, encoding, commands' signing bytes;
- :mod:`agent.contract.model`: one typed Struct per payload, section and finding, and the
  decoder (v1 payloads are upgraded to v2 as they are decoded);
- :mod:`agent.contract.catalogue`: the closed catalogue of reasons and the rules they feed.

The package exports all of ``wire`` (each module's ``__all__`` is its one list of names),
the payloads of ``model`` and the catalogue.
"""

from __future__ import annotations

from agent.contract import wire
from agent.contract.catalogue import (
    MISSING_REASONS,
    REASONS,
    SECTION_ENTITIES,
    Reason,
)
from agent.contract.catalogue import markdown as markdown_catalogue
from agent.contract.model import (
    Check,
    CmdResult,
    Command,
    Decoded,
    Event,
    Finding,
    Status,
    Telemetry,
    decode,
    decode_message,
    section_findings,
)
from agent.contract.wire import *  # noqa: F403

__all__ = [
    "MISSING_REASONS",
    "REASONS",
    "SECTION_ENTITIES",
    "Check",
    "CmdResult",
    "Command",
    "Decoded",
    "Event",
    "Finding",
    "Reason",
    "Status",
    "Telemetry",
    "decode",
    "decode_message",
    "markdown_catalogue",
    "section_findings",
]
__all__ += wire.__all__
