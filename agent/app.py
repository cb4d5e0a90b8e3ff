"""The agent process: probes on a timer, hot-plug events at once, commands, one MQTT link.

Threads: the main loop (telemetry every interval and watchdog pings), the link's network
thread, a command worker (a pre-class check takes seconds and must not delay telemetry) and
the hardware's hot-plug watcher.  They meet only in the spool, which is thread-safe.  Every
thread blocks until it has work (an event, a queue item, a socket): a classroom PC runs
lessons, and an agent that wakes ten times a second for nothing costs it CPU and power.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.baseline import FILE_NAME as BASELINE_FILE
from agent.baseline import Baseline
from agent.commands import (
    Accepted,
    CommandError,
    CommandVerifier,
    NonceStore,
    check_params,
    lesson_window,
    run_command,
)
from agent.config import AgentConfig
from agent.contract import (
    CAP_EXPECTED,
    ContractError,
    EventType,
    Kind,
    RefusalReason,
    envelope,
    utcnow,
)
from agent.hardware import Hardware, open_backend
from agent.identity import read_identity
from agent.link import Link
from agent.probes import build
from agent.probes.base import ProbeContext
from agent.probes.runner import CheckOutcome, ProbeRunner
from agent.quiet import CAPABILITIES, QuietWindows
from agent.redact import redact, redact_json
from agent.spool import Spool
from agent.watchdog import Notifier

__all__ = [
    "Agent",
    "check_payload",
    "load_interval",
    "open_hardware",
    "probe_context",
    "probe_runner",
    "save_interval",
]

log = logging.getLogger(__name__)

# After a reboot command is acknowledged, how long to wait for the spool to reach the
# broker (its cmd/result above all) before pulling the plug.
_REBOOT_FLUSH_S = 10.0
_MAX_QUEUED_COMMANDS = 100
# What the set-interval command accepts (agent.commands checks its args the same way).
_INTERVAL_RANGE = (1.0, 3600.0)
# Sound servers run per user (systemd --user), not under the system manager.
_SESSION_UNITS = frozenset({"pipewire", "pipewire-pulse", "wireplumber", "pulseaudio"})


def open_hardware(config: AgentConfig, clock: Callable[[], datetime] = utcnow) -> Hardware:
    hw = config.hardware
    return open_backend(hw.backend, scenario=hw.scenario, clock=clock,
                        extra_cameras=hw.cameras, extra_microphones=hw.microphones,
                        onboard_audio=hw.onboard_audio, pulse_server=hw.pulse_server)


def probe_context(config: AgentConfig, hardware: Hardware,
                  clock: Callable[[], datetime] = utcnow) -> ProbeContext:
    """The probes' context; the device baseline lives in the state directory when it
    exists (a one-off check before enrolment has none and keeps it in memory)."""
    state = config.agent.state_dir
    baseline = Baseline(state / BASELINE_FILE if state.is_dir() else None,
                        config.hardware.expected)
    run = config.agent
    return ProbeContext(hardware=hardware, thresholds=config.thresholds,
                        targets=dict(config.network.targets),
                        av_hosts=dict(config.network.av_hosts),
                        bandwidth_url=config.network.bandwidth_url, clock=clock,
                        baseline=baseline,
                        quiet=QuietWindows(run.quiet_lead_s, run.quiet_hold_s, clock),
                        sample_every_s=run.sample_every_s)


def probe_runner(config: AgentConfig, hardware: Hardware,
                 clock: Callable[[], datetime] = utcnow) -> ProbeRunner:
    """The runner with the probes the config's ``[probes]`` table leaves on."""
    return ProbeRunner(probe_context(config, hardware, clock), build(config.probes),
                       collect_deadline_s=config.agent.probe_deadline_s)


def save_interval(path: Path, seconds: float) -> None:
    """Write atomically: a crash leaves the old value or the new one, never half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as fh:
        fh.write(f"{seconds!r}\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_interval(path: Path, default: float) -> float:
    """The interval a set-interval command left, or ``default`` (none, or unreadable)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return default
    except OSError as exc:
        log.warning("ignoring %s: %s; interval stays %.0f s", path, exc, default)
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    low, high = _INTERVAL_RANGE
    if not low <= seconds <= high:  # NaN fails too
        log.warning("ignoring %s: %r is not %g..%g seconds; interval stays %.0f s",
                    path, text.strip(), low, high, default)
        return default
    return seconds


def check_payload(outcome: CheckOutcome, request_id: str | None,
                  lesson_id: str | int | None) -> dict[str, Any]:
    """The contract's ``check`` fields (without the envelope)."""
    return {**outcome.to_json(), "request_id": request_id, "lesson_id": lesson_id}


class Agent:
    """One classroom's agent; ``run()`` blocks until ``stop()``."""

    def __init__(
        self,
        config: AgentConfig,
        hardware: Hardware | None = None,
        *,
        notifier: Notifier | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.device_id = config.device_id
        self.hardware = hardware or open_hardware(config, clock)
        self.clock = clock
        self.notifier = notifier or Notifier()
        state = config.agent.state_dir
        # A set-interval command outlives restarts; the config's value is the default.
        self._interval_file = state / "interval"
        self.interval = load_interval(self._interval_file, config.agent.interval)
        self.spool = Spool(state / "spool.sqlite", config.agent.spool_max_records,
                           config.agent.spool_max_bytes)
        self.nonces = NonceStore(state / "nonces.sqlite")
        self.verifier = CommandVerifier(config.device_id, config.commands, self.nonces, clock)
        self.runner = probe_runner(config, self.hardware, clock)
        # A hash of the machine's identity in every birth: two PCs sharing this device id
        # (a cloned image) show up at the fleet as births from two machines.
        self._machine = read_identity(config.agent.identity_root).digest()
        # None tells the worker to stop; the bound is kept by _receive_command, so that
        # stop() can always queue that None.
        self._commands: queue.Queue[bytes | None] = queue.Queue()
        self.link = Link(config.device_id, config.mqtt, self.spool,
                         on_command=self._receive_command, birth=self._birth, clock=clock)
        self._stop = threading.Event()
        # Set by stop() and by whatever moves the next tick (set-interval, set-expected).
        self._wake = threading.Event()
        self._next_tick = 0.0
        for unit in set(config.commands.allowed_units) - set(config.commands.user_units):
            if unit.removesuffix(".service") in _SESSION_UNITS:
                log.warning("commands.allowed_units: %s is a unit of the user's session; "
                            "the system's restart_command cannot restart it: list it in "
                            "commands.user_units with a user_restart_command", unit)

    # ------------------------------------------------------------------ life cycle
    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._commands.put(None)

    def _tick_at(self, when: float) -> None:
        self._next_tick = min(self._next_tick, when)
        self._wake.set()

    def run(self) -> None:
        self.link.start()
        stop_watching = self.hardware.watch(self._on_hotplug)
        worker = threading.Thread(target=self._command_worker, name="commands", daemon=True)
        worker.start()
        self.notifier.ready(f"{self.device_id}: running")
        log.info("agent %s started (interval %.0f s, broker %s)", self.device_id,
                 self.interval, redact(self.config.mqtt.url))
        try:
            while not self._stop.is_set():
                if time.monotonic() >= self._next_tick:
                    self._next_tick = time.monotonic() + self.interval
                    self._tick()
                # A dead network thread stops the pings, so systemd restarts the agent.
                if self.link.alive:
                    self.notifier.ping()
                wake_at = self._next_tick
                if self.notifier.ping_interval is not None:
                    wake_at = min(wake_at, time.monotonic() + self.notifier.ping_interval)
                self._wake.wait(max(0.0, wake_at - time.monotonic()))
                self._wake.clear()
        finally:
            self.notifier.stopping()
            stop_watching()
            worker.join(timeout=5)
            self.link.stop()
            self.spool.close()
            self.nonces.close()
            log.info("agent %s stopped", self.device_id)

    # ------------------------------------------------------------------ producing
    def _wrap(self, seq: int, body: dict[str, Any]) -> dict[str, Any]:
        env = envelope(self.device_id, seq, self.clock())
        # Every spooled message passes here: no URL password reaches the fleet.
        return {**env, **redact_json(body), **env}  # envelope first to read, and it wins

    def _emit(self, kind: Kind, body: dict[str, Any]) -> int | None:
        try:
            seq = self.spool.append(kind, lambda seq: self._wrap(seq, body))
        except ContractError as exc:  # over the contract's size limit: a bug, never sent
            log.error("not sending a %s message: %s", kind.value, exc)
            return None
        self.link.wake()
        return seq

    def _birth(self) -> dict[str, Any]:
        # The fleet keeps the birth's inventory: it learns there which run-check args and
        # commands this agent takes beyond v1's (an older agent refuses unknown ones), and
        # the baseline, so that it sends set-expected only when its list differs.
        baseline = self.runner.ctx.baseline
        agent = {"capabilities": [*CAPABILITIES, CAP_EXPECTED],
                 "expected": baseline.snapshot() if baseline is not None else {}}
        # The baseline names devices by id, and an RTSP camera's id may be its URL.
        inventory = redact_json({**self.hardware.inventory(), "agent": agent})
        return {"inventory": inventory, "interval": self.interval, "machine": self._machine}

    def _tick(self) -> None:
        try:
            self._collect()
        except Exception:  # e.g. a full disk: log it, keep the agent (and its watchdog) going
            log.exception("collecting or spooling telemetry failed")

    def _collect(self) -> None:
        collection = self.runner.collect()
        self._emit(Kind.TELEMETRY, {"interval": self.interval, "sections": collection.sections,
                                    "probe_runs": collection.runs_json(),
                                    "spool": self.spool.stats().to_json(),
                                    "link": self.link.stats()})
        for event in collection.events:
            self._emit(Kind.EVENT, event)
        if self.link.connected:
            self.spool.report_drops(self._drop_event)

    def _drop_event(self, seq: int, dropped: int, total: int) -> dict[str, Any]:
        return self._wrap(seq, {
            "type": EventType.SPOOL_DROPPED.value,
            "entity": "agent:spool",
            "detail": {"dropped": dropped, "dropped_total": total},
            "message_zh": f"离线缓存已满，丢弃了 {dropped} 条最旧的记录",
            "message_en": f"offline spool full: dropped the {dropped} oldest record(s)",
        })

    def _on_hotplug(self, event: dict[str, Any]) -> None:
        try:
            self._emit(Kind.EVENT, event)
        except Exception:
            log.exception("could not spool hot-plug event %r", event)

    # ------------------------------------------------------------------ commands
    def _receive_command(self, data: bytes) -> None:
        if self._commands.qsize() >= _MAX_QUEUED_COMMANDS:
            log.error("command queue full: dropping a command of %d bytes", len(data))
            return
        self._commands.put(data)

    def _command_worker(self) -> None:
        while (data := self._commands.get()) is not None:
            try:
                self._handle(data)
            except Exception:
                log.exception("command handling failed")

    def _handle(self, data: bytes) -> None:
        try:
            command = self.verifier.verify(data)
        except CommandError as exc:
            log.warning("refused command %r: %s (%s)", exc.command_id, exc.reason, exc.message)
            self._emit(Kind.CMD_RESULT, exc.result())
            return
        log.info("accepted command %s %s %s", command.id, command.name, command.args)
        try:
            self._execute(command)
        except CommandError as exc:
            exc.command_id = command.id
            log.error("command %s %s failed: %s", command.id, command.name, exc.message)
            self._emit(Kind.CMD_RESULT, exc.result())

    def _execute(self, command: Accepted) -> None:
        cfg = self.config.commands
        result: dict[str, Any] = {"id": command.id, "ok": True}
        if command.name == "restart-service":
            unit = command.args["unit"]
            restart = cfg.user_restart_command if unit in cfg.user_units else cfg.restart_command
            argv = [*restart, unit]
            result["output"] = run_command(argv, cfg.command_timeout_s)
        elif command.name == "set-interval":
            self.interval = float(command.args["seconds"])
            self._tick_at(time.monotonic() + self.interval)
            try:
                save_interval(self._interval_file, self.interval)
            except OSError as exc:  # in force until a restart: the fleet must know
                raise CommandError(RefusalReason.FAILED,
                                   f"interval set, but not saved: {exc}") from None
        elif command.name == "set-expected":
            self._set_expected(command.args)
        self._emit(Kind.CMD_RESULT, result)
        if command.name == "run-check":
            self._run_check(command.id, command.args)
        elif command.name == "reboot":
            # The fleet hears "ok" before the machine goes down; a failure follows as a
            # second result with the same id.
            self.link.flush(_REBOOT_FLUSH_S)
            run_command(cfg.reboot_command, cfg.command_timeout_s)

    def _set_expected(self, roles: dict[str, list[str]]) -> None:
        baseline = self.runner.ctx.baseline
        if baseline is None:  # probe_context always makes one; a caller's own may not
            raise CommandError(RefusalReason.FAILED, "this agent keeps no device baseline")
        saved = baseline.assign(roles)
        # Report against the new baseline now, not an interval later.
        self._tick_at(time.monotonic())
        if not saved:  # in force until a restart: the fleet must know
            raise CommandError(RefusalReason.FAILED,
                               "expected devices set, but not saved (see the agent's log)")

    def _run_check(self, request_id: str, args: dict[str, Any]) -> None:
        lesson_id = args.get("lesson_id")
        window = lesson_window(args)
        quiet = self.runner.ctx.quiet
        if quiet is not None and window is not None:
            quiet.lesson(*window)  # before the check: it may already be inside the window
        outcome = self.runner.check(check_params(args))
        if quiet is not None and window is None and lesson_id is not None:
            # An older fleet names the lesson only: it starts within the fleet's lead
            # time, so this check may sample; later ones until the hold ends may not.
            quiet.lesson()
        self._emit(Kind.CHECK, check_payload(outcome, request_id, lesson_id))
