"""``syncclass-agent``: enrol, run the agent, or check / list this classroom's equipment.

Exit codes: ``check`` returns 0 pass, 1 warn, 2 fail; ``enrol`` 1 when the fleet refuses
the code and 69 (EX_UNAVAILABLE) when it cannot be reached; every command returns 78
(EX_CONFIG, sysexits.h) for a bad config file, which the systemd unit does not restart,
and ``run`` returns it too on a machine other than the enrolled one (agent.identity).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import signal
import socket
import sys
from dataclasses import replace
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

from agent.config import (
    DEFAULT_CONFIG_PATH,
    AgentConfig,
    HardwareConfig,
    RuntimeConfig,
    load_config,
)
from agent.contract import CheckVerdict, utcnow
from agent.probes.base import CheckParams
from agent.redact import redact_json
from agent.settings import ConfigError

__all__ = ["EX_CONFIG", "main", "render_check"]

EX_CONFIG = 78
EX_UNAVAILABLE = 69
DEFAULT_STATE_DIR = RuntimeConfig().state_dir
_EXIT = {CheckVerdict.PASS: 0, CheckVerdict.WARN: 1, CheckVerdict.FAIL: 2}
_VERDICT_TEXT = {
    CheckVerdict.PASS: "通过 PASS",
    CheckVerdict.WARN: "警告 WARN",
    CheckVerdict.FAIL: "不通过 FAIL",
}
_LOCAL_TZ = ZoneInfo("Asia/Shanghai")


def _config(args: argparse.Namespace, required: bool) -> AgentConfig:
    path: Path | None = args.config
    if path is None and (required or DEFAULT_CONFIG_PATH.exists()):
        path = DEFAULT_CONFIG_PATH
    if path is not None:
        cfg = load_config(path)
    else:
        # A technician's laptop or a fresh machine: no file, still useful.
        host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())
        cfg = AgentConfig(device_id=host.lstrip("-_.") or "device")
    if args.simulate is not None:
        scenario = Path(args.simulate) if args.simulate else None
        cfg = replace(cfg, hardware=HardwareConfig("simulated", scenario))
    return cfg


def render_check(device_id: str, payload: dict[str, Any], when: datetime) -> str:
    """The pre-class check for a technician standing at the device, 简体中文 first."""
    verdict = CheckVerdict(payload["verdict"])
    local = when.astimezone(_LOCAL_TZ).strftime("%Y-%m-%d %H:%M")
    lines = [f"课前检查 Pre-class check · {device_id} · {local}",
             f"结论 Verdict: {_VERDICT_TEXT[verdict]}"]
    for finding in payload["findings"]:
        mark = "✗" if finding["level"] == CheckVerdict.FAIL.value else "!"
        where = f" [{finding['entity']}]" if finding.get("entity") else ""
        lines.append(f"  {mark}{where} {finding['message_zh']}")
        lines.append(f"    {finding['message_en']}")
    if not payload["findings"]:
        lines.append("  ✓ 设备全部正常 All equipment OK")
    return "\n".join(lines)


def _cmd_run(args: argparse.Namespace) -> int:
    from agent.app import Agent
    from agent.identity import ClonedImage, read_identity, verify

    cfg = _config(args, required=True)
    try:  # before the first connection: a clone must not take the real device's place
        verify(cfg.agent.state_dir, cfg.device_id, read_identity(cfg.agent.identity_root))
    except ClonedImage as exc:
        print(f"syncclass-agent: {exc}", file=sys.stderr)
        return EX_CONFIG
    agent = Agent(cfg)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        agent.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.run()
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from agent.app import check_payload, open_hardware, probe_runner

    cfg = _config(args, required=False)
    outcome = probe_runner(cfg, open_hardware(cfg)).check(CheckParams())
    payload = redact_json(check_payload(outcome, None, None))
    if args.json:
        print(json.dumps({"device_id": cfg.device_id, **payload}, ensure_ascii=False, indent=2))
    else:
        print(render_check(cfg.device_id, payload, utcnow()))
    return _EXIT[outcome.verdict]


def _cmd_inventory(args: argparse.Namespace) -> int:
    from agent.app import open_hardware

    cfg = _config(args, required=False)
    inventory = redact_json(open_hardware(cfg).inventory())
    if args.json:
        print(json.dumps(inventory, ensure_ascii=False, indent=2))
        return 0
    for role, zh in (("cameras", "摄像头"), ("microphones", "麦克风"), ("speakers", "扬声器"),
                     ("displays", "显示器")):
        devices = inventory.get(role, [])
        print(f"{zh} {role}: {len(devices)}")
        for device in devices:
            print(f"  - {device.get('id')}: {device.get('name', '')}")
    print(f"主机 host: {json.dumps(inventory.get('host', {}), ensure_ascii=False)}")
    return 0


def _cmd_enrol(args: argparse.Namespace) -> int:
    from agent.enrol import EnrolError, enrol, split_code_url

    config_path: Path = args.config or DEFAULT_CONFIG_PATH
    try:
        code, fleet = split_code_url(args.code, args.fleet)
        done = enrol(code, fleet, config_path, args.state_dir, fleet_ca=args.fleet_ca,
                     service_user=args.user, allow_http=args.allow_http)
    except EnrolError as exc:
        print(f"syncclass-agent: {exc}", file=sys.stderr)
        return 1 if exc.refused else EX_UNAVAILABLE
    what = "替换原设备 replaces the previous machine" if done.replaced else "新设备 new device"
    print(f"已注册 Enrolled: {done.device_id} · {done.school} {done.classroom} ({what})\n"
          f"配置 Config: {done.config_path} (0600)\n"
          f"启动 Start: systemctl restart syncclass-agent  (a running agent must restart to "
          f"use the new credentials; without systemd: syncclass-agent run --config "
          f"{done.config_path})")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="syncclass-agent",
                                     description="syncclass classroom agent / 同步课堂设备代理")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    # The installed distribution's version: what the Debian package or pip put there.
    parser.add_argument("--version", action="version",
                        version=f"syncclass-agent {version('syncclass')} "
                                f"(Python {platform.python_version()}, {sys.prefix})")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "run the agent / 运行代理"),
                       ("check", "pre-class check here / 本机课前检查"),
                       ("inventory", "list the equipment / 列出设备")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--config", type=Path, default=None,
                         help=f"config file (default {DEFAULT_CONFIG_PATH})")
        cmd.add_argument("--simulate", nargs="?", const="", default=None, metavar="SCENARIO",
                         help="simulated hardware, optionally driven by a scenario file")
        if name != "run":
            cmd.add_argument("--json", action="store_true", help="machine-readable output")
    enrol = sub.add_parser("enrol", help="join the fleet with a one-time code / 用注册码注册")
    enrol.add_argument("code", help="the code (ABCD-EFGH) or the QR code's URL")
    enrol.add_argument("--fleet", help="the fleet's URL, https://…")
    enrol.add_argument("--config", type=Path, default=None,
                       help=f"config file to write (default {DEFAULT_CONFIG_PATH})")
    enrol.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                       help=f"spool and state (default {DEFAULT_STATE_DIR})")
    enrol.add_argument("--fleet-ca", type=Path, default=None,
                       help="CA of the fleet's HTTPS certificate (default: the system's)")
    enrol.add_argument("--user", default="syncclass",
                       help="run as root: the account the agent runs as gets the config and "
                            "state (default syncclass, if it exists)")
    enrol.add_argument("--allow-http", action="store_true",
                       help="allow a plain http:// fleet beyond loopback (trusted LAN only)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    handler = {"run": _cmd_run, "check": _cmd_check, "inventory": _cmd_inventory,
               "enrol": _cmd_enrol}
    try:
        return handler[args.command](args)
    except ConfigError as exc:
        print(f"syncclass-agent: {exc}", file=sys.stderr)
        return EX_CONFIG
    except PermissionError as exc:  # the config or state_dir of another user: run as it
        print(f"syncclass-agent: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return EX_CONFIG


if __name__ == "__main__":
    sys.exit(main())
