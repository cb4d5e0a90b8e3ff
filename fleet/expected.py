"""Sending the inventory's expected devices to the agents that take them.

The inventory may name a device's expected cameras, microphones and speakers (ids as the
agent names them).  An agent whose birth lists ``CAP_EXPECTED`` also reports its baseline
there (``inventory.agent.expected``); after such a birth, and when the inventory changes,
the fleet sends ``set-expected`` with the roles the inventory names if any of them differs
from what the agent has.  An agent whose birth does not list the capability (an older
one refuses an unknown command) never gets it and keeps its own baseline.

The command is an action like the others (audited, actor ``inventory``); it is not
disruptive, so lessons do not hold it back, and it is not rate limited: births bound it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Final

from sqlalchemy import select

from agent.contract import CAP_EXPECTED
from fleet.actions.outcomes import ActionRefused
from fleet.actions.service import Actions
from fleet.db.base import SessionFactory, session_scope
from fleet.db.models import Device
from fleet.sinks import NullSink
from fleet.state import DeviceStates

__all__ = ["ACTOR", "ExpectedDevices", "to_send"]

log = logging.getLogger(__name__)

#: The audit log's actor of these commands.
ACTOR: Final = "inventory"


def to_send(wanted: Mapping[str, list[str]], inventory: Any) -> dict[str, list[str]] | None:
    """What to send an agent whose birth inventory is ``inventory``: the inventory's roles
    when the agent takes the command and has other ids for any of them, else None."""
    agent = inventory.get("agent") if isinstance(inventory, dict) else None
    capabilities = agent.get("capabilities") if isinstance(agent, dict) else None
    if not isinstance(capabilities, list) or CAP_EXPECTED not in capabilities:
        return None
    assert isinstance(agent, dict)
    reported = agent.get("expected")
    reported = reported if isinstance(reported, dict) else {}
    same = all(isinstance(reported.get(role), list) and sorted(reported[role]) == sorted(ids)
               for role, ids in wanted.items())
    return None if same else {role: list(ids) for role, ids in wanted.items()}


class ExpectedDevices(NullSink):
    """A sink after ``DeviceStates`` (its births) and the fleet's ``reload_inventory``."""

    def __init__(self, sessions: SessionFactory, actions: Actions, states: DeviceStates) -> None:
        self._sessions = sessions
        self._actions = actions
        self._states = states
        self._lock = threading.Lock()
        # What was sent since each device's latest birth: a reload that changes nothing
        # for a device does not send it the same list again.
        self._sent: dict[str, dict[str, list[str]]] = {}

    def on_status(self, device_id: str, payload: dict[str, Any]) -> None:
        if payload.get("state") != "online":
            return
        with self._lock:
            self._sent.pop(device_id, None)
        wanted = self._wanted(device_id)
        if wanted is not None:
            self._send(device_id, wanted, payload.get("inventory"))

    def inventory_changed(self) -> int:
        """Send the new lists to the online agents they differ for; return how many."""
        with session_scope(self._sessions) as session:
            devices = [(d.id, dict(d.expected)) for d in session.scalars(
                select(Device).where(Device.enabled.is_(True), Device.expected.is_not(None)))
                if d.expected]
        sent = 0
        for device_id, wanted in devices:
            state = self._states.get(device_id)
            with self._lock:
                unchanged = self._sent.get(device_id) == wanted
            if state is not None and state.online and not unchanged:
                sent += self._send(device_id, wanted, state.inventory)
        return sent

    def _wanted(self, device_id: str) -> dict[str, list[str]] | None:
        with session_scope(self._sessions) as session:
            device = session.get(Device, device_id)
            if device is None or not device.enabled or not device.expected:
                return None
            return dict(device.expected)

    def _send(self, device_id: str, wanted: dict[str, list[str]], inventory: Any) -> int:
        roles = to_send(wanted, inventory)
        if roles is None:
            return 0
        try:
            self._actions.request(ACTOR, device_id, "set-expected", roles, system=True)
        except ActionRefused as refusal:  # audited already; e.g. the device was disabled
            log.warning("set-expected for %s refused: %s", device_id, refusal.code)
            return 0
        with self._lock:
            self._sent[device_id] = wanted
        log.info("sent %s its expected devices: %s", device_id, roles)
        return 1
