"""``syncclass-agent enrol CODE --fleet URL``: join the fleet with a one-time code.

The agent makes its own broker password here and sends it once, over the fleet's HTTPS,
with the code; the fleet answers with the device id, the broker's URL and CA and its
command key.  Nothing secret is typed or copied by hand.  The config file is written
atomically with mode 0600 (it holds the password); keys already in it that enrolment does
not own (hardware, network targets, thresholds) are kept.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from agent import __version__, identity
from agent.config import parse_config
from agent.settings import ConfigError, dump_toml, load_toml
from agent.spool import Spool

__all__ = [
    "EnrolError",
    "Enrolment",
    "check_fleet_url",
    "enrol",
    "split_code_url",
    "write_enrolment",
]

CA_FILE_NAME = "broker-ca.pem"


class EnrolError(RuntimeError):
    """The fleet refused the code (``refused``) or could not be reached."""

    def __init__(self, message: str, refused: bool) -> None:
        super().__init__(message)
        self.refused = refused


@dataclass(frozen=True)
class Enrolment:
    device_id: str
    classroom: str
    school: str
    replaced: bool
    config_path: Path


def split_code_url(code: str, fleet: str | None) -> tuple[str, str]:
    """``CODE`` and ``--fleet URL``, or the QR code's ``https://fleet/enrol?code=CODE``."""
    if code.startswith(("https://", "http://")):
        url = urlsplit(code)
        codes = parse_qs(url.query).get("code")
        if not codes:
            raise EnrolError(f"{code}: 链接中没有 code= / the URL has no code=", refused=True)
        return codes[0], fleet or f"{url.scheme}://{url.netloc}"
    if not fleet:
        raise EnrolError("需要 --fleet https://… / --fleet URL is required", refused=True)
    return code, fleet


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def check_fleet_url(fleet: str, allow_http: bool) -> None:
    """The password travels in the request: plain HTTP only on loopback or when asked."""
    url = urlsplit(fleet)
    if url.scheme not in ("https", "http") or not url.hostname:
        raise EnrolError(f"{fleet}: 应为 https://… / the fleet's URL must be https://…",
                         refused=True)
    if url.scheme == "http" and url.hostname not in _LOOPBACK and not allow_http:
        raise EnrolError(f"{fleet}: 明文 HTTP 会泄露密码，请用 https:// / plain HTTP would "
                         "expose the new broker password: use https:// (or --allow-http on "
                         "a trusted network)", refused=True)


def _post(fleet: str, body: dict[str, Any], fleet_ca: Path | None,
          timeout_s: float) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{fleet.rstrip('/')}/api/v1/enrol", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    context = ssl.create_default_context(cafile=str(fleet_ca) if fleet_ca else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail")
        except ValueError:
            detail = None
        if isinstance(detail, dict):
            text = f"{detail.get('message_zh', '')} / {detail.get('message_en', '')}"
        else:
            text = str(detail or exc.reason)
        raise EnrolError(f"注册被拒绝 / enrolment refused ({exc.code}): {text}",
                         refused=400 <= exc.code < 500) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise EnrolError(f"无法连接 / cannot reach {fleet}: {exc}", refused=False) from None


def _write_private(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` atomically; the new file never exists with a wider mode."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_enrolment(answer: dict[str, Any], password: str, config_path: Path,
                    state_dir: Path, owner: str | None = None) -> None:
    """The fleet's answer into the config (0600), its CA beside it, the state dir (0700).

    Run as root, the config and state go to ``owner`` (the unit's ``User=``), the only
    account that needs to read the password.
    """
    config_path.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = load_toml(config_path) if config_path.exists() else {}
    mqtt = answer["mqtt"]
    ca_path = config_path.parent / CA_FILE_NAME
    doc["device_id"] = answer["device_id"]
    section = {k: v for k, v in doc.get("mqtt", {}).items() if k != "ca_file"}
    section.update(url=mqtt["url"], username=mqtt["username"], password=password,
                   prefix=mqtt["prefix"])
    if mqtt.get("ca_pem"):
        section["ca_file"] = str(ca_path.resolve())
    doc["mqtt"] = section
    doc["agent"] = {**doc.get("agent", {}), "state_dir": str(state_dir.resolve())}
    doc["commands"] = {**doc.get("commands", {}),
                       "fleet_public_key": answer["fleet_public_key"]}
    config = parse_config(doc)  # what we write must load; a ConfigError names the key
    if mqtt.get("ca_pem"):
        _write_private(ca_path, mqtt["ca_pem"], 0o644)
    _write_private(config_path, dump_toml(doc), 0o600)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    # Enrolling is what makes this machine the device, also for a cloned image's copy.
    identity.record(state_dir, answer["device_id"], identity.read_identity(
        config.agent.identity_root))
    spool = Spool(state_dir / "spool.sqlite", config.agent.spool_max_records,
                  config.agent.spool_max_bytes)
    try:
        spool.continue_sessions(int(answer.get("session_floor", 0)))
    finally:
        spool.close()
    if owner is not None and os.geteuid() == 0:
        account = pwd.getpwnam(owner)
        for path in (config_path, state_dir, *state_dir.iterdir()):
            os.chown(path, account.pw_uid, account.pw_gid)


def _service_user(name: str) -> str | None:
    """``name`` if this machine has it and we may hand files to it, else None."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(name)
    except KeyError:
        return None
    return name


def enrol(code: str, fleet: str, config_path: Path, state_dir: Path, *,
          fleet_ca: Path | None = None, service_user: str = "syncclass",
          allow_http: bool = False, timeout_s: float = 30.0) -> Enrolment:
    check_fleet_url(fleet, allow_http)
    if config_path.exists() and not os.access(config_path, os.W_OK):
        raise ConfigError(str(config_path), "not writable: run enrol as root")
    password = secrets.token_urlsafe(32)
    answer = _post(fleet, {"code": code, "password": password, "hostname": socket.gethostname(),
                           "agent_version": __version__}, fleet_ca, timeout_s)
    write_enrolment(answer, password, config_path, state_dir, _service_user(service_user))
    return Enrolment(device_id=answer["device_id"], classroom=answer["classroom"],
                     school=answer["school"], replaced=bool(answer["replaced"]),
                     config_path=config_path)
