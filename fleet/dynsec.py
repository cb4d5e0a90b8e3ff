"""Broker credentials through Mosquitto's dynamic security plugin.

The fleet manages the broker's clients by publishing the plugin's JSON commands on
``$CONTROL/dynamic-security/v1`` as an admin client and reading the answers on
``.../v1/response`` (mosquitto.org/documentation/dynamic-security).  That was chosen over
``mosquitto_ctrl``: passwords never appear on a command line (``ps`` shows those to every
user of the host), the broker may be on another machine, and a broker error comes back
as the plugin's own text for each command instead of a process's exit status.

Every device has its own client (username = device id) and its own role, which may
publish only under ``PREFIX/dev/ID/`` and subscribe only to its own ``cmd`` topic; the
plugin refuses anything else (MQTT 5 "Not authorized").  Disabling a client kicks its live
connection and refuses the next one; changing its password kicks it too.  Nothing needs a
password file or a broker reload.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

__all__ = [
    "CONTROL_TOPIC",
    "FLEET_ROLE",
    "DynsecAdmin",
    "DynsecError",
    "device_role",
    "device_role_acls",
    "fleet_role_acls",
]

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
FLEET_ROLE = "syncclass-fleet"
# What an agent publishes (agent.contract.Kind, except the fleet's own cmd).
_DEVICE_WRITES = ("status", "telemetry", "event", "check", "cmd/result")
# The plugin's answer for an object that is already there: creating is then a no-op.
_EXISTS = ("already exists",)


class DynsecError(RuntimeError):
    """The broker refused a command, or did not answer."""


def device_role(device_id: str) -> str:
    return f"syncclass-dev-{device_id}"


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": True}


def device_role_acls(prefix: str, device_id: str) -> list[dict[str, Any]]:
    """One device's own topics: write its reports, read its commands, nothing else."""
    base = f"{prefix}/dev/{device_id}"
    return [
        *(_acl("publishClientSend", f"{base}/{kind}") for kind in _DEVICE_WRITES),
        _acl("subscribeLiteral", f"{base}/cmd"),
        _acl("publishClientReceive", f"{base}/cmd"),
    ]


def fleet_role_acls(prefix: str) -> list[dict[str, Any]]:
    """The fleet reads every device (also through shared subscriptions) and sends cmds."""
    return [
        _acl("subscribePattern", f"{prefix}/#"),
        _acl("subscribePattern", f"$share/+/{prefix}/#"),
        _acl("publishClientReceive", f"{prefix}/#"),
        _acl("publishClientSend", f"{prefix}/dev/+/cmd"),
        _fleet_probes(prefix),
    ]


def _fleet_probes(prefix: str) -> dict[str, Any]:
    # Each fleet process measures its lag with probes to itself (fleet.ingest.lag).
    return _acl("publishClientSend", f"{prefix}/fleet/+/lag")


@dataclass(frozen=True)
class AdminLogin:
    url: str  # mqtt:// or mqtts://
    username: str
    password: str
    ca_file: Path | None = None


class DynsecAdmin:
    """A short-lived admin connection: connect, send commands, read the answers, close.

    Enrolments and revocations are rare, so a connection per call costs nothing and holds
    no admin session open between them.
    """

    def __init__(self, login: AdminLogin, timeout_s: float = 10.0) -> None:
        self.login = login
        self.timeout_s = timeout_s

    def call(self, commands: Sequence[dict[str, Any]],
             tolerate: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Send ``commands`` in one message; raises DynsecError on any command's error
        unless its text contains one of ``tolerate``."""
        correlation = uuid.uuid4().hex
        tagged = [{**c, "correlationData": f"{correlation}-{i}"} for i, c in enumerate(commands)]
        answers = self._exchange({"commands": tagged}, correlation)
        errors = [f"{a.get('command')}: {a['error']}" for a in answers
                  if a.get("error") and not any(t in str(a["error"]) for t in tolerate)]
        if errors:
            raise DynsecError("代理拒绝 / broker refused: " + "; ".join(errors))
        return answers

    def _exchange(self, body: dict[str, Any], correlation: str) -> list[dict[str, Any]]:
        url = urlsplit(self.login.url)
        tls = url.scheme == "mqtts"
        client = mqtt.Client(CallbackAPIVersion.VERSION2,
                             client_id=f"syncclass-dynsec-{correlation[:12]}",
                             protocol=mqtt.MQTTv5)
        client.username_pw_set(self.login.username, self.login.password)
        if tls:
            client.tls_set(ca_certs=str(self.login.ca_file) if self.login.ca_file else None,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)
        done = threading.Event()
        state: dict[str, Any] = {"answers": [], "error": None}
        want = len(body["commands"])

        def on_connect(c: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                       reason: ReasonCode, props: Properties | None) -> None:
            if reason.is_failure:
                state["error"] = f"admin login refused: {reason}"
                done.set()
                return
            c.subscribe(RESPONSE_TOPIC, qos=1)

        def on_subscribe(c: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode],
                         props: Properties | None) -> None:
            if any(r.is_failure for r in reasons):
                state["error"] = f"cannot read {RESPONSE_TOPIC}: {reasons}"
                done.set()
                return
            c.publish(CONTROL_TOPIC, json.dumps(body), qos=1)

        def on_message(c: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
            try:
                responses = json.loads(msg.payload)["responses"]
            except (ValueError, KeyError, TypeError):
                return
            mine = [r for r in responses
                    if str(r.get("correlationData", "")).startswith(correlation)]
            state["answers"].extend(mine)
            if len(state["answers"]) >= want:
                done.set()

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        try:
            client.connect(url.hostname or "127.0.0.1", url.port or (8883 if tls else 1883),
                           keepalive=30)
        except OSError as exc:
            raise DynsecError(
                f"代理不可达 / broker unreachable at {self.login.url}: {exc}") from exc
        client.loop_start()
        try:
            if not done.wait(self.timeout_s):
                raise DynsecError(f"代理未应答 / no answer from the broker's dynamic security "
                                  f"plugin within {self.timeout_s:.0f}s (is it loaded?)")
        finally:
            client.disconnect()
            client.loop_stop()
        if state["error"]:
            raise DynsecError(str(state["error"]))
        answers: list[dict[str, Any]] = sorted(
            state["answers"], key=lambda a: int(str(a["correlationData"]).rsplit("-", 1)[1]))
        return answers

    # ------------------------------------------------------------ what the fleet does

    def ensure_fleet_client(self, prefix: str, username: str, password: str) -> None:
        """The fleet's own client and role; what exists already is left as it is, except
        that a role made before the lag probes gets their ACL."""
        self.call([
            {"command": "createRole", "rolename": FLEET_ROLE, "acls": fleet_role_acls(prefix)},
            {"command": "addRoleACL", "rolename": FLEET_ROLE, **_fleet_probes(prefix)},
            {"command": "createClient", "username": username, "password": password,
             "roles": [{"rolename": FLEET_ROLE}]},
        ], tolerate=_EXISTS)

    def put_device(self, prefix: str, device_id: str, password: str) -> None:
        """Create or re-credential a device's client, enabled, with its own role.

        A device that had a client (a replaced mini-PC, a rotation) gets the new password;
        the plugin then drops whatever is connected with the old one.
        """
        role = device_role(device_id)
        self.call([
            {"command": "createRole", "rolename": role,
             "acls": device_role_acls(prefix, device_id)},
            {"command": "createClient", "username": device_id, "password": password,
             "roles": [{"rolename": role}]},
        ], tolerate=_EXISTS)
        self.call([
            {"command": "modifyClient", "username": device_id, "password": password,
             "roles": [{"rolename": role}]},
            {"command": "enableClient", "username": device_id},
        ])

    def disable_device(self, device_id: str) -> None:
        """Kick the device's live connection and refuse the next ones."""
        self.call([{"command": "disableClient", "username": device_id}])
