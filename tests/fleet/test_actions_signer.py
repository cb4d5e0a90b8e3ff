"""The fleet's Ed25519 key file and the signed command format the agent verifies."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from agent.commands import CommandError, CommandVerifier, NonceStore
from agent.config import CommandsConfig
from agent.contract import Kind, RefusalReason, b64, command_signing_bytes, decode, encode, unb64
from fleet.actions.signer import KeyFileError, Signer, build_command

NOW = datetime(2026, 9, 7, 0, 0, tzinfo=UTC)


def verify(public_b64: str, command: dict[str, object]) -> None:
    key = Ed25519PublicKey.from_public_bytes(unb64(public_b64))
    key.verify(unb64(str(command["sig"])), command_signing_bytes(command))


def test_a_missing_key_is_generated_owner_only_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "fleet.key"
    first = Signer.from_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert Signer.from_file(path).public_key_b64 == first.public_key_b64
    assert len(unb64(first.public_key_b64)) == 32


def test_a_raw_base64_seed_loads(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "seed.b64"
    path.write_text(b64(key.private_bytes_raw()) + "\n")
    raw_public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
    assert Signer.from_file(path).public_key_b64 == b64(raw_public)


def test_signed_commands_verify_and_tampering_does_not(tmp_path: Path) -> None:
    signer = Signer.from_file(tmp_path / "fleet.key")
    command = signer.sign(build_command("r-1", "restart-service", {"unit": "syncclass-agent"},
                                        timedelta(minutes=5), NOW))
    decoded = decode("r-1", Kind.CMD, encode(command))  # a valid contract payload
    verify(signer.public_key_b64, decoded)
    assert (decoded["issued_at"], decoded["expires_at"]) == (
        "2026-09-07T00:00:00.000Z", "2026-09-07T00:05:00.000Z")
    assert len(decoded["id"]) == 32 and len(decoded["nonce"]) == 32
    other = build_command("r-1", "reboot", {}, timedelta(minutes=5), NOW)
    assert (other["id"], other["nonce"]) != (decoded["id"], decoded["nonce"])
    with pytest.raises(InvalidSignature):
        verify(signer.public_key_b64, decoded | {"device_id": "r-2"})
    stranger = Signer(Ed25519PrivateKey.generate())
    with pytest.raises(InvalidSignature):
        verify(stranger.public_key_b64, decoded)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a key at all!", "neither PEM nor base64"),
        (b64(b"short").encode(), "5 bytes"),
        (b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n", "PEM"),
        (ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()), "not Ed25519"),
    ],
)
def test_a_bad_key_file_is_a_clear_error_and_left_alone(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "fleet.key"
    path.write_bytes(content)
    with pytest.raises(KeyFileError, match=message) as err:
        Signer.from_file(path)
    assert err.value.path == path and str(path) in str(err.value)
    assert path.read_bytes() == content, "a bad key is never replaced by a new one"


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("reboot", {}),
        ("restart-service", {"unit": "syncclass-agent"}),
        ("run-check", {"targets": {"peer": "m-1.lan"}, "need_up_mbps": 1.2,
                       "need_down_mbps": 2.5, "uplink": True, "lesson_id": 7,
                       "bandwidth_url": "http://fleet.lan/api/v1/bandwidth"}),
        ("run-check", {"targets": {}, "need_up_mbps": None, "need_down_mbps": 2.5,
                       "uplink": False, "bandwidth_url": None, "lesson_id": 7}),
    ],
)
def test_the_agents_own_verifier_accepts_fleet_commands_once(
    tmp_path: Path, name: str, args: dict[str, object]
) -> None:
    signer = Signer.from_file(tmp_path / "fleet.key")
    config = CommandsConfig(fleet_public_key=signer.public_key_b64,
                            allowed_units=["syncclass-agent"])
    nonces = NonceStore(tmp_path / "nonces.db")
    verifier = CommandVerifier("r-1", config, nonces, clock=lambda: NOW + timedelta(seconds=30))
    data = encode(signer.sign(build_command("r-1", name, args, timedelta(minutes=3), NOW)))
    accepted = verifier.verify(data)
    assert (accepted.name, accepted.args) == (name, args)
    with pytest.raises(CommandError) as err:
        verifier.verify(data)
    assert err.value.reason is RefusalReason.REPLAYED
    nonces.close()
