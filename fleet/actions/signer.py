"""The fleet's Ed25519 key and the signed command format of ``agent.contract``.

The agent verifies every command against the public key in its config
(``fleet_public_key``, base64 of the raw 32 bytes), so whoever holds this key file can
reboot every classroom: it is created owner-only and never logged.
"""

from __future__ import annotations

import binascii
import os
import secrets
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from agent.contract import COMMAND_SCHEMA, b64, command_signing_bytes, format_ts, unb64

__all__ = ["KeyFileError", "Signer", "build_command"]


class KeyFileError(ValueError):
    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"fleet key file {path}: {message}")
        self.path = path


def build_command(
    device_id: str,
    name: str,
    args: dict[str, Any],
    ttl: timedelta,
    now: datetime,
    *,
    command_id: str | None = None,
) -> dict[str, Any]:
    """An unsigned command; ``command_id`` defaults to a random uuid4 hex."""
    return {
        "schema": COMMAND_SCHEMA,
        "device_id": device_id,
        "ts": format_ts(now),
        "id": command_id or uuid.uuid4().hex,
        "name": name,
        "args": args,
        "issued_at": format_ts(now),
        "expires_at": format_ts(now + ttl),
        "nonce": secrets.token_hex(16),
    }


class Signer:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    @classmethod
    def from_file(cls, path: Path) -> Signer:
        """Load the key at ``path`` (PEM or base64 raw seed); create it if missing."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return cls._generate(path)
        except OSError as exc:
            raise KeyFileError(path, f"cannot read: {exc.strerror}") from None
        return cls(_parse_key(path, data))

    @classmethod
    def _generate(cls, path: Path) -> Signer:
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # O_EXCL: two fleet processes starting together must not each write their own key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls(_parse_key(path, path.read_bytes()))
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        return cls(key)

    @property
    def public_key_b64(self) -> str:
        raw = self._key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return b64(raw)

    def derive_secret(self, purpose: str) -> bytes:
        """A 32-byte secret for ``purpose`` (HKDF-SHA256 of the key's seed).

        Every fleet process already shares this key file, so each derives the same
        secret without another file to distribute, and no secret is the key itself.
        """
        seed = self._key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
        return hkdf.derive(seed)

    def sign(self, command: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``command`` with ``sig`` over its canonical bytes."""
        signed = dict(command)
        signed["sig"] = b64(self._key.sign(command_signing_bytes(command)))
        return signed


def _parse_key(path: Path, data: bytes) -> Ed25519PrivateKey:
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(path, f"not a readable unencrypted PEM key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(path, f"PEM key is {type(key).__name__}, not Ed25519")
        return key
    try:
        seed = unb64(text.decode("ascii"))
    except (UnicodeDecodeError, binascii.Error, ValueError):
        raise KeyFileError(path, "neither PEM nor base64") from None
    if len(seed) != 32:
        raise KeyFileError(path, f"base64 key is {len(seed)} bytes, an Ed25519 seed is 32")
    return Ed25519PrivateKey.from_private_bytes(seed)
