"""Typed configuration sections from TOML, with errors that name the bad key.

Agent and fleet both describe each config section as a dataclass with defaults; this
module turns a parsed TOML table into one, refusing unknown keys and wrong types so that a
typo in ``/etc/syncclass/*.toml`` stops start-up with the key's full name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from agent.compat import tomllib

__all__ = ["ConfigError", "load_toml", "section"]

T = TypeVar("T")


class ConfigError(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config key {key!r}: {message}")
        self.key = key


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
            return data
    except FileNotFoundError:
        raise ConfigError(str(path), "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None


def _check(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            with contextlib.suppress(ConfigError):
                return _check(value, option, key)
        raise ConfigError(key, f"expected {hint}, got {value!r}")
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"expected a table, got {value!r}")
        return section(hint, value, key)
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"expected a table, got {value!r}")
        _, vhint = typing.get_args(hint) or (str, Any)
        return {str(k): _check(v, vhint, f"{key}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(key, f"expected a list, got {value!r}")
        args = typing.get_args(hint)
        inner = args[0] if args else Any
        items = [_check(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(key, f"expected a number, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected an integer, got {value!r}")
    if hint is Path:
        if isinstance(value, str):
            return Path(value)
        raise ConfigError(key, f"expected a path, got {value!r}")
    if isinstance(hint, type):
        if isinstance(value, hint):
            return value
        try:
            if issubclass(hint, str) and isinstance(value, str):  # StrEnum
                return hint(value)
        except ValueError:
            pass
        raise ConfigError(key, f"expected {hint.__name__}, got {value!r}")
    return value


def section(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; ``prefix`` is the table's dotted name."""
    assert dataclasses.is_dataclass(cls)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(key, f"unknown key (known here: {known})")
        kwargs[name] = _check(value, hints[name], key)
    for name, fld in fields.items():
        if (
            name not in kwargs
            and fld.default is dataclasses.MISSING
            and fld.default_factory is dataclasses.MISSING
        ):
            raise ConfigError(f"{prefix}.{name}" if prefix else name, "is required")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(prefix or cls.__name__, str(exc)) from None
