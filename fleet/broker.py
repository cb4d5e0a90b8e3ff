"""A private Mosquitto process: the demo's broker, and the tests' real broker.

Production points the fleet and agents at a broker run by the operator (Mosquitto or an
EMQX cluster, provisioned from ``provisioning/``); this module only starts one for
embedded defaults and tests, with the same configuration features production uses:
the dynamic security plugin (or the older password file and pattern ACL) pinning each
device to its own topics, TLS.
"""

from __future__ import annotations

import ctypes
import getpass
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from fleet.dynsec import AdminLogin

__all__ = [
    "DYNSEC_PLUGIN_GLOB",
    "BrokerError",
    "Mosquitto",
    "TlsFiles",
    "device_acl",
    "dynsec_plugin",
    "free_port",
    "make_test_ca",
    "wait_for_port",
]


DYNSEC_PLUGIN_GLOB = "/usr/lib/*/mosquitto_dynamic_security.so"


class BrokerError(RuntimeError):
    pass


def dynsec_plugin() -> Path:
    found = sorted(glob.glob(DYNSEC_PLUGIN_GLOB))
    if not found:
        raise BrokerError(f"no {DYNSEC_PLUGIN_GLOB} (Debian: apt-get install mosquitto)")
    return Path(found[0])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # A private broker must not outlive the demo or test that started it, even one killed
    # with SIGKILL: Linux's PR_SET_PDEATHSIG sends it SIGTERM when its parent dies.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise BrokerError(f"nothing listens on {host}:{port} after {timeout:.0f}s")


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path


def device_acl(prefix: str, fleet_users: tuple[str, ...] = ("fleet",)) -> str:
    """A Mosquitto ACL: every device user may touch only its own topics.

    The device's MQTT username is its device id (``%u``), so one classroom's stolen
    credentials cannot publish as another classroom.
    """
    lines = [
        f"pattern write {prefix}/dev/%u/status",
        f"pattern write {prefix}/dev/%u/telemetry",
        f"pattern write {prefix}/dev/%u/event",
        f"pattern write {prefix}/dev/%u/check",
        f"pattern write {prefix}/dev/%u/cmd/result",
        f"pattern read {prefix}/dev/%u/cmd",
        "",
    ]
    for user in fleet_users:
        lines += [f"user {user}", f"topic readwrite {prefix}/#", ""]
    return "\n".join(lines)


@dataclass
class Mosquitto:
    """Start, stop and restart a Mosquitto process on a loopback port.

    ``users`` maps username to password; with users set, anonymous access is off.
    ``acl`` is the text of an ACL file.  ``dynsec`` loads the dynamic security plugin
    instead (no users, no ACL file): only ``admin_login`` may log in until the fleet
    creates clients through it.  ``tls`` adds a second, TLS listener on
    ``tls_port``.  Persistence is on, so a restart keeps retained messages and queued QoS 1
    messages of persistent sessions, as a production broker does.
    """

    port: int = 0
    users: dict[str, str] = field(default_factory=dict)
    acl: str | None = None
    tls: TlsFiles | None = None
    tls_port: int = 0
    workdir: Path | None = None
    max_queued_messages: int = 100_000
    dynsec: bool = False
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _own_dir: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
            raise BrokerError("mosquitto is not installed (Debian: apt-get install mosquitto)")
        if self.dynsec and (self.users or self.acl is not None):
            raise BrokerError("dynsec replaces users and acl: give one or the other")
        if not self.port:
            self.port = free_port()
        if self.tls and not self.tls_port:
            self.tls_port = free_port()
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="syncclass-mqtt-"))
            self._own_dir = True
        self.workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"mqtts://127.0.0.1:{self.tls_port}"

    @property
    def admin_login(self) -> AdminLogin:
        """The dynamic security plugin's admin (``mosquitto_ctrl dynsec init``)."""
        return AdminLogin(self.url, "admin", self.admin_password)

    @property
    def log_file(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "mosquitto.log"

    def _write_config(self) -> Path:
        assert self.workdir is not None
        wd = self.workdir
        lines = [
            # Run as whoever started us: as root Mosquitto would otherwise switch to the
            # `mosquitto` user, which cannot read a private temporary directory.
            f"user {getpass.getuser()}",
            "per_listener_settings false",
            "persistence true",
            f"persistence_location {wd}/",
            "autosave_interval 1",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            f"max_queued_messages {self.max_queued_messages}",
            "max_inflight_messages 1000",
            f"listener {self.port} 127.0.0.1",
        ]
        if self.users:
            passwd = wd / "passwd"
            passwd.write_text("")
            for user, password in self.users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(passwd), user, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        elif self.dynsec:
            lines += self._dynsec_lines()
        else:
            lines.append("allow_anonymous true")
        if self.acl is not None:
            acl_file = wd / "acl"
            acl_file.write_text(self.acl)
            lines.append(f"acl_file {acl_file}")
        if self.tls:
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.cert_file}",
                f"keyfile {self.tls.key_file}",
            ]
        conf = wd / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _dynsec_lines(self) -> list[str]:
        assert self.workdir is not None
        state = self.workdir / "dynamic-security.json"
        if not state.exists():  # a restart keeps the clients the fleet created
            subprocess.run(
                ["mosquitto_ctrl", "dynsec", "init", str(state), "admin", self.admin_password],
                check=True, capture_output=True,
            )
            state.chmod(0o600)  # it holds password hashes
        return ["allow_anonymous false", f"plugin {dynsec_plugin()}",
                f"plugin_opt_config_file {state}"]

    def start(self) -> Mosquitto:
        if self._proc is not None:
            return self
        conf = self._write_config()
        self._proc = subprocess.Popen(
            ["mosquitto", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            wait_for_port(self.port)
            if self.tls:
                wait_for_port(self.tls_port)
        except BrokerError:
            self.stop()
            raise BrokerError(f"mosquitto did not start: {self.log_tail()}") from None
        return self

    def stop(self, kill: bool = False) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        if down_for:
            time.sleep(down_for)
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def close(self) -> None:
        self.stop()
        if self._own_dir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def make_test_ca(directory: Path, hostname: str = "127.0.0.1") -> TlsFiles:
    """A throw-away CA and server certificate (for the demo and tests, never production)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "san.ext"
    ext.write_text(f"subjectAltName=IP:{hostname},DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True)

    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-days", "2", "-subj", "/CN=syncclass test CA",
        "-keyout", str(ca_key), "-out", str(ca_crt))
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", f"/CN={hostname}", "-keyout", str(key), "-out", str(csr))
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(crt))
    for path in (ca_crt, crt, key):
        os.chmod(path, 0o644)
    return TlsFiles(ca_file=ca_crt, cert_file=crt, key_file=key)
