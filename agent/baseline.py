"""The devices a classroom is expected to have: its baseline, kept in the state directory.

Per role (the probe's name: ``cameras``, ``microphones``, ``speakers``), the expected
devices are the fleet's (its inventory's list, sent in a ``set-expected`` command) when
it set them, else the config's ``[hardware.expected]`` list when it has one, else
learned: the devices present at the first survey that sees any device of that role.
The fleet's list wins because it is the later word and the one a county keeps for all
its classrooms; the config's covers an agent without a fleet inventory entry.  A learned role is
written to ``baseline.json`` at once, so a speakerphone gone across a reboot is still
missing.  Devices plugged in later are reported but never join the baseline, so camera B
cannot stand in for a missing camera A.  To learn again (a camera replaced on purpose),
stop the agent and delete the file.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agent.contract import utcnow

__all__ = ["FILE_NAME", "FLEET", "Baseline"]

log = logging.getLogger(__name__)

FILE_NAME = "baseline.json"
_VERSION = 1
# What a learned device keeps, so a missing one still has its name after a reboot.
_KEPT = ("name", "vendor", "model", "serial")
#: A role's ``source`` in the file when the fleet set it (learned roles have none).
FLEET = "fleet"


class Baseline:
    """``path``: the JSON file (None: in memory only, forgotten at exit)."""

    def __init__(self, path: Path | None = None,
                 configured: Mapping[str, Sequence[str]] | None = None) -> None:
        self.path = path
        self._configured = {role: {dev_id: {"name": dev_id} for dev_id in ids}
                            for role, ids in (configured or {}).items()}
        self._lock = threading.Lock()
        self._roles: dict[str, dict[str, Any]] = self._load()

    def _load(self) -> dict[str, dict[str, Any]]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            doc = json.loads(self.path.read_text())
            roles = doc["roles"]
            if doc.get("version") != _VERSION or not isinstance(roles, dict) or not all(
                    isinstance(r.get("devices"), dict) for r in roles.values()):
                raise ValueError(f"not a version {_VERSION} baseline")
            return roles
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # Kept aside, not overwritten: someone may want to see what broke it.  (An
            # OSError, such as another user's file, is raised: nothing to learn from.)
            aside = self.path.with_name(self.path.name + ".bad")
            os.replace(self.path, aside)
            log.error("unreadable device baseline %s (%s); moved to %s, learning again",
                      self.path, exc, aside)
            return {}

    def _save(self) -> bool:
        """Write the file; False (logged) if it could not be written."""
        if self.path is None:
            return True
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with tmp.open("w") as fh:
                json.dump({"version": _VERSION, "roles": self._roles}, fh,
                          ensure_ascii=False, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:  # a full or read-only disk: keep the baseline in memory
            log.error("cannot save the device baseline to %s: %s", self.path, exc)
            return False
        return True

    def assign(self, roles: Mapping[str, Sequence[str]]) -> bool:
        """Take the fleet's expected devices for ``roles`` (others keep theirs); False if
        they are in force but could not be saved.  A device already known keeps its name."""
        with self._lock:
            updated = dict(self._roles)
            for role, ids in roles.items():
                known = {**self._configured.get(role, {}),
                         **self._roles.get(role, {}).get("devices", {})}
                updated[role] = {"source": FLEET, "set_at": utcnow().isoformat(),
                                 "devices": {dev_id: known.get(dev_id, {"name": dev_id})
                                             for dev_id in ids}}
            self._roles = updated
            log.info("the fleet set the expected %s", "; ".join(
                f"{role}: {', '.join(ids) or '-'}" for role, ids in roles.items()))
            return self._save()

    def snapshot(self) -> dict[str, list[str]]:
        """The expected ids of every role that has them, for the agent's birth."""
        with self._lock:
            roles = {role: self._configured[role] for role in self._configured}
            roles.update({role: doc.get("devices", {}) for role, doc in self._roles.items()
                          if doc.get("source") == FLEET or role not in roles})
        return {role: sorted(devices) for role, devices in sorted(roles.items())}

    def expected(self, role: str, present: Mapping[str, Mapping[str, Any]]
                 ) -> dict[str, dict[str, Any]]:
        """The expected devices of ``role``, id -> detail (``name`` at least); learns the
        role from ``present`` (id -> detail) if it is neither configured nor learned."""
        with self._lock:
            fleet = self._roles.get(role, {})
            if fleet.get("source") == FLEET:
                devices: dict[str, dict[str, Any]] = fleet.get("devices", {})
                return devices
            if role in self._configured:
                return self._configured[role]
            if role not in self._roles and present:
                self._roles = {**self._roles, role: {
                    "learned_at": utcnow().isoformat(),
                    "devices": {dev_id: {k: str(detail.get(k) or "") for k in _KEPT}
                                for dev_id, detail in present.items()}}}
                self._save()
                log.info("learned the expected %s: %s", role, ", ".join(sorted(present)))
            learned: dict[str, dict[str, Any]] = self._roles.get(role, {}).get("devices", {})
            return learned
