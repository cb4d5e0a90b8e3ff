"""Signed remote commands: verify, refuse with a reason, or accept and say what to run.

A command is trusted only if the fleet's Ed25519 key signed it (over
``contract.command_signing_bytes``), it names this device, it is inside its validity
window (with a clock-skew allowance) and its nonce was never seen before; nonces are
remembered on disk until the command expires, so a replay after a restart is refused
too.  Verification order matters: nothing from an unsigned or badly signed command is
trusted, so the signature is checked before anything else it says.
"""

from __future__ import annotations

import binascii
import json
import logging
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import CommandsConfig
from agent.contract import (
    COMMAND_NAMES,
    COMMAND_SCHEMA,
    EXPECTED_ROLES,
    ContractError,
    RefusalReason,
    check_expected,
    command_signing_bytes,
    parse_ts,
    unb64,
    utcnow,
)
from agent.probes.base import CheckParams

if TYPE_CHECKING:  # cryptography itself is loaded with the first command
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "Accepted",
    "CommandError",
    "CommandVerifier",
    "NonceStore",
    "check_params",
    "lesson_window",
    "parse_args",
    "run_command",
]

log = logging.getLogger(__name__)


class CommandError(Exception):
    """A refused or failed command: ``reason`` goes into ``cmd/result``."""

    def __init__(self, reason: RefusalReason, message: str, command_id: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.command_id = command_id

    def result(self) -> dict[str, Any]:
        return {"id": self.command_id, "ok": False, "reason": self.reason.value,
                "message": self.message}


class NonceStore:
    """Nonces of accepted commands, kept on disk until their command expires."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, expires REAL NOT NULL)")

    def remember(self, nonce: str, expires: datetime, now: datetime) -> bool:
        """Record ``nonce``; False if it is already known (a replay)."""
        with self._lock:
            self._db.execute("DELETE FROM nonces WHERE expires < ?", (now.timestamp(),))
            try:
                self._db.execute("INSERT INTO nonces VALUES (?, ?)", (nonce, expires.timestamp()))
            except sqlite3.IntegrityError:
                return False
            return True

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass(frozen=True)
class Accepted:
    """A verified command: its id, name and validated arguments."""

    id: str
    name: str
    args: dict[str, Any]


# name -> {arg: accepted JSON types}; an arg missing from the command is None.
_ARG_TYPES: dict[str, dict[str, tuple[type, ...]]] = {
    "run-check": {"targets": (dict,), "need_up_mbps": (int, float),
                  "need_down_mbps": (int, float), "uplink": (bool,),
                  "bandwidth_url": (str,), "lesson_id": (str, int),
                  # agent.quiet.CAPABILITIES: sent only to agents whose birth lists them
                  "passive": (bool,), "lesson_starts_at": (str,), "lesson_ends_at": (str,)},
    "reboot": {},
    "restart-service": {"unit": (str,)},
    "set-interval": {"seconds": (int, float)},
    # agent.contract.CAP_EXPECTED: sent only to agents whose birth lists it
    "set-expected": {role: (list,) for role in EXPECTED_ROLES},
}
_REQUIRED_ARGS = {"restart-service": ("unit",), "set-interval": ("seconds",)}


def _bad(message: str) -> CommandError:
    return CommandError(RefusalReason.BAD_ARGS, message)


def parse_args(name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Type-check a command's arguments; raise CommandError(BAD_ARGS) naming the bad one."""
    types = _ARG_TYPES[name]
    for key, value in args.items():
        if key not in types:
            raise _bad(f"{name} takes no argument {key!r} (known: {', '.join(sorted(types))})")
        if value is None:
            continue
        if not isinstance(value, types[key]) or (isinstance(value, bool)
                                                 and bool not in types[key]):
            raise _bad(f"{name}: {key}={value!r} has the wrong type")
    for key in _REQUIRED_ARGS.get(name, ()):
        if args.get(key) is None:
            raise _bad(f"{name} needs {key!r}")
    if name == "run-check":
        targets = args.get("targets") or {}
        if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in targets.items()):
            raise _bad("run-check: targets must map names to hosts")
        for key in ("need_up_mbps", "need_down_mbps"):
            if args.get(key) is not None and args[key] < 0:
                raise _bad(f"run-check: {key} must be >= 0")
        window = lesson_window(args)
        if window is not None and window[1] <= window[0]:
            raise _bad("run-check: lesson_ends_at is not after lesson_starts_at")
    if name == "set-interval" and not 1 <= args["seconds"] <= 3600:
        raise _bad("set-interval: seconds must be 1..3600")
    if name == "set-expected":
        try:
            return check_expected({k: v for k, v in args.items() if v is not None})
        except ContractError as exc:
            raise _bad(f"set-expected: {exc.message}") from None
    return args


def lesson_window(args: dict[str, Any]) -> tuple[datetime, datetime] | None:
    """A run-check's lesson start and end, when it names both."""
    starts, ends = args.get("lesson_starts_at"), args.get("lesson_ends_at")
    if starts is None or ends is None:
        if (starts is None) != (ends is None):
            raise _bad("run-check: lesson_starts_at and lesson_ends_at go together")
        return None
    try:
        return parse_ts(starts), parse_ts(ends)
    except ContractError as exc:
        raise _bad(f"run-check: {exc.message}") from None


def check_params(args: dict[str, Any]) -> CheckParams:
    return CheckParams(
        targets=dict(args.get("targets") or {}),
        need_up_mbps=args.get("need_up_mbps"),
        need_down_mbps=args.get("need_down_mbps"),
        uplink=args.get("uplink", True) is not False,
        bandwidth_url=args.get("bandwidth_url"),
        passive=args.get("passive") is True,
    )


class CommandVerifier:
    def __init__(
        self,
        device_id: str,
        config: CommandsConfig,
        nonces: NonceStore,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.device_id = device_id
        self.config = config
        self.nonces = nonces
        self.clock = clock
        self._key: Ed25519PublicKey | None = None

    def verify(self, data: bytes) -> Accepted:
        """Return the accepted command or raise CommandError with the refusal reason."""
        try:
            cmd = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CommandError(RefusalReason.MALFORMED, f"not JSON: {exc}") from None
        if not isinstance(cmd, dict):
            raise CommandError(RefusalReason.MALFORMED, "a command is a JSON object")
        raw_id = cmd.get("id")
        cid = raw_id if isinstance(raw_id, str) else ""
        try:
            return self._verify(cmd, cid)
        except CommandError as exc:
            exc.command_id = cid
            raise

    def _verify(self, cmd: dict[str, Any], cid: str) -> Accepted:
        sig = cmd.get("sig")
        if not isinstance(sig, str) or not sig:
            raise CommandError(RefusalReason.UNSIGNED, "the command carries no signature")
        if not self.config.fleet_public_key:
            raise CommandError(RefusalReason.UNSIGNED,
                               "no commands.fleet_public_key configured: every command refused")
        # cryptography costs the resident agent about 8 MiB: load it with the first command.
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        if self._key is None:
            self._key = Ed25519PublicKey.from_public_bytes(unb64(self.config.fleet_public_key))
        try:
            self._key.verify(unb64(sig), command_signing_bytes(cmd))
        except (InvalidSignature, binascii.Error, ValueError):
            raise CommandError(RefusalReason.BAD_SIGNATURE,
                               "signature does not verify with the fleet key") from None
        missing = [k for k in ("id", "name", "args", "issued_at", "expires_at", "nonce")
                   if k not in cmd]
        if cmd.get("schema") != COMMAND_SCHEMA or missing or not cid:
            raise CommandError(RefusalReason.MALFORMED,
                               f"schema {cmd.get('schema')!r}, missing {missing or ['id']}")
        if cmd.get("device_id") != self.device_id:
            raise CommandError(RefusalReason.FOREIGN_DEVICE,
                               f"command is for {cmd.get('device_id')!r}, this is "
                               f"{self.device_id!r}")
        now = self.clock()
        issued, expires = self._window(cmd)
        skew = timedelta(seconds=self.config.clock_skew_s)
        if now + skew < issued:
            raise CommandError(RefusalReason.NOT_YET_VALID, f"issued in the future ({issued})")
        if now - skew > expires:
            raise CommandError(RefusalReason.EXPIRED, f"expired at {expires}")
        name = cmd["name"]
        if name not in COMMAND_NAMES:
            raise CommandError(RefusalReason.UNKNOWN_COMMAND, f"unknown command {name!r}")
        if not isinstance(cmd["args"], dict):
            raise CommandError(RefusalReason.BAD_ARGS, "args must be an object")
        args = parse_args(name, cmd["args"])
        if name == "restart-service" and args["unit"] not in self.config.allowed_units:
            raise CommandError(RefusalReason.NOT_ALLOWED,
                               f"unit {args['unit']!r} is not in commands.allowed_units")
        nonce = cmd["nonce"]
        if not isinstance(nonce, str) or not nonce:
            raise CommandError(RefusalReason.MALFORMED, "nonce must be a non-empty string")
        if not self.nonces.remember(nonce, expires + skew, now):
            raise CommandError(RefusalReason.REPLAYED, f"nonce {nonce!r} was already used")
        return Accepted(cid, name, args)

    def _window(self, cmd: dict[str, Any]) -> tuple[datetime, datetime]:
        try:
            issued = parse_ts(cmd["issued_at"])
            expires = parse_ts(cmd["expires_at"])
        except (ContractError, TypeError):
            raise CommandError(RefusalReason.MALFORMED,
                               "issued_at/expires_at must be RFC 3339 with an offset") from None
        if expires <= issued:
            raise CommandError(RefusalReason.MALFORMED, "expires_at is not after issued_at")
        if (expires - issued).total_seconds() > self.config.max_validity_s:
            raise CommandError(RefusalReason.MALFORMED,
                               f"valid for longer than {self.config.max_validity_s:.0f} s")
        return issued, expires


def run_command(argv: Sequence[str], timeout: float) -> str:
    """Run a configured command; return its output or raise CommandError(FAILED)."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommandError(RefusalReason.FAILED, f"{argv[0]}: {exc}") from None
    output = (proc.stdout + proc.stderr)[-2000:]
    if proc.returncode != 0:
        raise CommandError(RefusalReason.FAILED,
                           f"{' '.join(argv)} exited with {proc.returncode}: {output.strip()}")
    return output
