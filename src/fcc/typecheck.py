"""Checking and coercing plain YAML values against type hints, with errors that name the key.

Shared by the config dataclasses and the part registries so that both report bad values alike.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Union

from fcc.errors import ConfigError


def suggest(name: str, options: Iterable[str]) -> str:
    """'; did you mean X?' for the closest option, or '' when nothing is close."""
    match = difflib.get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin in (list, tuple):
        return f"a list of {describe(args[0])}" if args else "a list"
    if origin is dict or annotation is dict:
        return "a mapping"
    if annotation is Any:
        return "any value"
    return getattr(annotation, "__name__", str(annotation))


def coerce(value: Any, annotation: Any, key: str) -> Any:
    """Return ``value`` converted to ``annotation`` or raise ConfigError naming ``key``.

    Accepts what YAML users naturally write: an int where a float is expected, and float strings
    such as ``2e-4`` (which PyYAML reads as a string because it lacks a decimal point).
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    bad = ConfigError(f"{key}: expected {describe(annotation)}, got {value!r} ({type(value).__name__})")

    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError:
                continue
        raise bad
    if origin is Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        if isinstance(value, bool) and ("on" if value else "off") in args:
            return "on" if value else "off"  # YAML 1.1 reads an unquoted off/on as a boolean
        hint = suggest(str(value), [str(a) for a in args]) if isinstance(value, str) else ""
        raise ConfigError(f"{key}: expected {describe(annotation)}, got {value!r}{hint}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if annotation is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float, str)):
            try:
                out = float(value)
            except (ValueError, OverflowError):  # OverflowError: an int beyond the float range
                raise bad from None
        else:
            raise bad
        if not math.isfinite(out):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return out
    if annotation is str:
        if isinstance(value, str):
            return value
        raise bad
    if origin in (list, tuple) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad
        item = args[0] if args else Any
        return [coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or annotation is dict:
        if not isinstance(value, Mapping):
            raise bad
        value_type = args[1] if len(args) == 2 else Any
        out_map = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{key}: keys must be strings, got {k!r}")
            out_map[k] = coerce(v, value_type, f"{key}.{k}")
        return out_map
    if isinstance(annotation, type) and isinstance(value, annotation):
        return value
    raise bad
