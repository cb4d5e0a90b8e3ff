"""Typed configuration sections from TOML, with errors that name the bad key.

Each config table is a dataclass with defaults.  :func:`section` refuses keys the
dataclass does not have (a typo in ``/etc/syncclass/fleet.toml`` stops start-up with the
key's full name), then lets msgspec (already the wire contract's decoder) build it, so
that a wrong type, a missing key or a ``__post_init__`` refusal names its key too.
The fleet reads its own config: of the agent it imports the wire contract only.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec

__all__ = ["ConfigError", "load_toml", "section"]

T = TypeVar("T")

_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`")


class ConfigError(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config key {key!r}: {message}")
        self.key = key


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(str(path), "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def _unknown_keys(hint: Any, value: Any, key: str) -> None:
    """Raise ConfigError for the first key of ``value`` that ``hint`` has no field for."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            if dataclasses.is_dataclass(option) or typing.get_origin(option) in (
                    dict, Mapping, list, tuple):
                _unknown_keys(option, value, key)
        return
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, Mapping):
            return  # msgspec names the wrong type
        hints = typing.get_type_hints(hint)
        fields = {f.name for f in dataclasses.fields(hint) if f.init}
        for name, item in value.items():
            if name not in fields:
                known = ", ".join(sorted(fields))
                raise ConfigError(_join(key, name), f"unknown key (known here: {known})")
            _unknown_keys(hints[name], item, _join(key, name))
    elif origin in (dict, Mapping) and isinstance(value, Mapping):
        args = typing.get_args(hint)
        for name, item in value.items():
            _unknown_keys(args[1] if args else Any, item, _join(key, str(name)))
    elif origin in (list, tuple) and isinstance(value, list):
        args = typing.get_args(hint)
        for i, item in enumerate(value):
            _unknown_keys(args[0] if args else Any, item, f"{key}[{i}]")


def _decode_path(kind: type, value: Any) -> Any:
    if kind is Path:
        if isinstance(value, str):
            return Path(value)
        raise ValueError(f"expected a path, got {value!r}")
    raise NotImplementedError


def section(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; ``prefix`` is the table's dotted name."""
    assert dataclasses.is_dataclass(cls)
    _unknown_keys(cls, data, prefix)
    try:
        return msgspec.convert(dict(data), cls, dec_hook=_decode_path)
    except msgspec.ValidationError as exc:
        found = _AT.match(str(exc))
        assert found is not None  # the pattern matches any text
        message, path = found["message"], found["path"] or ""
        # "$.alerts.up_delays[...]": msgspec does not name a mapping's key; its table does.
        key = _join(prefix, path.lstrip(".").replace("[...]", ""))
        if missing := _MISSING.match(message):
            key = _join(key, missing["field"])
            message = "is required"
        raise ConfigError(key or cls.__name__, message) from None
