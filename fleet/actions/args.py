"""Checking an action's arguments before anything is signed (the agent checks again)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from agent.contract import ContractError, check_expected
from fleet.actions.outcomes import ActionRefused, RefusalCode

__all__ = ["ACTIONS", "validate_args"]

ACTIONS = frozenset({"reboot", "restart-service", "run-check", "set-expected", "set-interval"})

_CHECK_TYPES: dict[str, tuple[type, ...]] = {
    "targets": (dict,),
    "need_up_mbps": (int, float, type(None)),
    "need_down_mbps": (int, float, type(None)),
    "uplink": (bool,),
    "bandwidth_url": (str, type(None)),
    "lesson_id": (int, type(None)),
}


def _bad(zh: str, en: str) -> ActionRefused:
    return ActionRefused(RefusalCode.BAD_ARGS, zh, en)


def validate_args(name: str, args: Any, allowed_units: Collection[str]) -> None:
    """Raise ActionRefused when ``args`` do not suit action ``name``."""
    if name not in ACTIONS:
        raise ActionRefused(
            RefusalCode.UNKNOWN_ACTION,
            f"未知操作 {name!r}，可用：{', '.join(sorted(ACTIONS))}",
            f"unknown action {name!r}; known: {', '.join(sorted(ACTIONS))}",
        )
    if not isinstance(args, dict):
        raise _bad("参数必须是 JSON 对象", "args must be a JSON object")
    if name == "reboot" and args:
        raise _bad("重启不带参数", "reboot takes no args")
    if name == "set-interval":
        seconds = args.get("seconds")
        if set(args) != {"seconds"} or not isinstance(seconds, int) or isinstance(
            seconds, bool
        ) or not 1 <= seconds <= 3600:
            raise _bad("set-interval 需要 seconds（1–3600 的整数）",
                       "set-interval needs seconds, an integer 1-3600")
    if name == "set-expected":
        try:
            check_expected(args)
        except ContractError as exc:
            raise _bad(f"set-expected 参数有误：{exc.message}",
                       f"set-expected: {exc.message}") from None
    if name == "restart-service":
        unit = args.get("unit")
        if set(args) != {"unit"} or not isinstance(unit, str) or not unit:
            raise _bad("restart-service 需要 unit（服务名）", "restart-service needs unit")
        if unit not in allowed_units:
            raise ActionRefused(
                RefusalCode.UNIT_NOT_ALLOWED,
                f"不允许重启服务 {unit!r}，允许：{', '.join(allowed_units) or '无'}",
                f"unit {unit!r} is not allowed; allowed: {', '.join(allowed_units) or 'none'}",
            )
    if name == "run-check":
        for key, value in args.items():
            types = _CHECK_TYPES.get(key)
            if types is None:
                raise _bad(f"run-check 不认识参数 {key!r}", f"run-check has no arg {key!r}")
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise _bad(f"run-check 参数 {key!r} 类型错误", f"run-check arg {key!r}: bad type")
        targets = args.get("targets", {})
        if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in targets.items()):
            raise _bad("targets 须为 名称→地址 的映射", "targets must map names to hosts")
