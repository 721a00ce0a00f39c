"""Checking and coercing plain YAML values against type hints, with errors that name the key.

Shared by the config dataclasses and the part registries so that both report bad values alike.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from fcc_lt.util.errors import ConfigError, format_size, short_repr

# A config, expanded as if every YAML alias were written out, is refused beyond this size (in bytes of
# YAML text, roughly) or nesting depth: real configs are a few KB deep in 4 levels, while a 500-byte file of
# nested aliases can stand for billions of values that every later step (type checks, copies, dumps,
# error messages) would expand. Files larger than the cap may expand to a few times their own size.
MAX_CONFIG_BYTES = 4 << 20
MAX_CONFIG_DEPTH = 64
_END = object()


class RangeError(ConfigError):
    """A value of the right type outside its range: a union of types reports it as it is, instead of
    trying the other types of the union."""


@dataclass(frozen=True)
class Range:
    """The range of a number, as metadata of ``Annotated[float, Range(...)]`` in a part's signature, so that
    the registry checks it with the type, before any part is built, with the message ``expected {text}``.

    ``low``/``high`` are inclusive bounds unless ``low_open``/``high_open``; ``finite`` refuses inf and nan.
    """

    text: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def holds(self, value: float) -> bool:
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))


def _range_of(annotation: Any) -> tuple[Any, Range | None]:
    """(the type, its Range) of ``Annotated[type, Range(...)]``; (annotation, None) for anything else."""
    if typing.get_origin(annotation) is Annotated:
        base, *extras = typing.get_args(annotation)
        return base, next((e for e in extras if isinstance(e, Range)), None)
    return annotation, None


def suggest(name: str, options: Iterable[str]) -> str:
    """'; did you mean X?' for the closest option, or '' when nothing is close. Case does not count as a
    difference: 'CE' finds 'ce', 'FCC.GAMA' finds 'FCC.GAMMA'."""
    by_lower: dict[str, str] = {}
    for option in options:
        by_lower.setdefault(str(option).lower(), str(option))
    wanted = str(name).lower()
    match = [wanted] if wanted in by_lower else difflib.get_close_matches(wanted, list(by_lower), n=1, cutoff=0.6)
    return f"; did you mean {by_lower[match[0]]!r}?" if match else ""


def describe(annotation: Any) -> str:
    base, bounds = _range_of(annotation)
    if bounds is not None:
        return bounds.text
    annotation = base
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


def _got(value: Any) -> str:
    return f"{short_repr(value)} ({type(value).__name__})"


def coerce(value: Any, annotation: Any, key: str) -> Any:
    """Return ``value`` converted to ``annotation`` or raise ConfigError naming ``key``.

    Accepts what YAML users naturally write: an int where a float is expected, and float strings
    such as ``2e-4`` (which PyYAML reads as a string because it lacks a decimal point). The message of
    a wrong value is built only when it is raised, with a bounded repr of the value.
    """
    annotation, bounds = _range_of(annotation)
    if bounds is not None:
        out = coerce(value, annotation, key)
        if not bounds.holds(out):
            raise RangeError(f"{key}: expected {bounds.text}, got {short_repr(out)}")
        return out
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)

    def bad() -> ConfigError:
        return ConfigError(f"{key}: expected {describe(annotation)}, got {_got(value)}")

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
            except RangeError:
                raise
            except ConfigError:
                continue
        raise bad()
    if origin is Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        if isinstance(value, bool) and ("on" if value else "off") in args:
            return "on" if value else "off"  # YAML 1.1 reads an unquoted off/on as a boolean
        hint = suggest(value, [str(a) for a in args]) if isinstance(value, str) and len(value) < 200 else ""
        raise ConfigError(f"{key}: expected {describe(annotation)}, got {short_repr(value)}{hint}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad()
    if annotation is float:
        if isinstance(value, bool):
            raise bad()
        if isinstance(value, (int, float, str)):
            try:
                out = float(value)
            except (ValueError, OverflowError):  # OverflowError: an int beyond the float range
                raise bad() from None
        else:
            raise bad()
        if not math.isfinite(out):
            raise ConfigError(f"{key}: expected a finite number, got {short_repr(value)}")
        return out
    if annotation is str:
        if isinstance(value, str):
            return value
        raise bad()
    if origin in (list, tuple) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise bad()
        item = args[0] if args else Any
        return [coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or annotation is dict:
        if not isinstance(value, Mapping):
            raise bad()
        value_type = args[1] if len(args) == 2 else Any
        out_map = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{key}: keys must be strings, got {_got(k)}")
            out_map[k] = coerce(v, value_type, f"{key}.{k}")
        return out_map
    if isinstance(annotation, type) and isinstance(value, annotation):
        return value
    raise bad()


def _shown_key(path: list[Any]) -> str:
    text = "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in path[:8]).lstrip(".")
    return text or "the top level"


def _children(value: Any) -> Iterator[tuple[Any, Any]]:
    """(label, child) pairs of a container; a mapping's keys are children too (they may be containers)."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield "(a key)", k
            yield k, v
    else:
        yield from enumerate(value)


def check_config_size(raw: Any, source: str, input_size: int = 0) -> None:
    """Refuse a raw config (a parsed YAML file, an override's value, the config saved in a checkpoint)
    whose expanded size or nesting is beyond any real config: YAML aliases (and pickled references)
    let a few hundred bytes stand for a graph of billions of values, shared or even cyclic, that type
    checking, copying, dumping or an error message would expand, for minutes and gigabytes.

    The work is bounded by the limit, not by the graph: each value is counted once per place it appears
    (as if written out), the walk holds one iterator per level, and it stops at the first excess. The
    limit is ``MAX_CONFIG_BYTES``, or four times ``input_size`` (the length of the text the config was
    parsed from) when that is larger.
    """
    limit = max(MAX_CONFIG_BYTES, 4 * input_size)
    total = 0
    stack: list[Iterator[tuple[Any, Any]]] = [iter([("", raw)])]
    labels: list[Any] = []  # labels[d]: the key or index being walked at depth d
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
            if labels:
                labels.pop()
            continue
        label, value = item
        depth = len(stack) - 1
        del labels[depth:]
        labels.append(label)
        if isinstance(value, (str, bytes)):
            total += len(value) + 2
        elif isinstance(value, (Mapping, list, tuple, set, frozenset)):
            total += 2 + 2 * len(value)
            if depth >= MAX_CONFIG_DEPTH:
                raise ConfigError(f"{source}: nested more than {MAX_CONFIG_DEPTH} levels deep (at "
                                  f"{_shown_key(labels[1:])}); a config is a few levels of keys (a YAML "
                                  "alias inside what it refers to nests without end)")
            stack.append(_children(value))
        else:
            total += 8
        if total > limit:
            raise ConfigError(f"{source}: the config expands to more than {format_size(limit)} (at "
                              f"{_shown_key(labels[1:])}), far beyond any real config; YAML aliases (*name) "
                              "repeat what they refer to, and nested ones multiply: write the values out")
