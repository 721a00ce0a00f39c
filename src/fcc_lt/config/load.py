"""Loading a config: YAML files with their ``base:`` chains, ``key.sub=value`` overrides, type coercion.

A file may start from others with ``base: other.yaml`` (or a list), resolved relative to the file (or, when
no such file is there, a shipped config's name such as ``cifar10_lt/ce_fcc_if100``);
later files and then command-line overrides win. Unknown keys and wrong types are errors that name the
key (and the override that set it) and suggest the nearest valid one. ``load_config`` then rescales
the schedule (``fcc_lt.config.schedule``) and validates (``fcc_lt.config.validate``).
"""

from __future__ import annotations

import copy
import logging
import os
import re
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from fcc_lt.config.recipes import resolve_config, shipped_config, shown_name
from fcc_lt.config.schedule import _schedule_length, rescale_schedule
from fcc_lt.config.schema import PATH_KEYS, Config, _hints, _is_section, all_keys, flat_keys
from fcc_lt.config.validate import validate
from fcc_lt.util import files
from fcc_lt.util.errors import ConfigError, path_problem, require, short_repr
from fcc_lt.util.files import read_input_text
from fcc_lt.util.typecheck import check_config_size, coerce, suggest

log = logging.getLogger("fcc")


def _unknown_key(dotted: str, source: str) -> ConfigError:
    leaf_hint = suggest(dotted, all_keys()) if len(dotted) <= 200 else ""
    return ConfigError(f"{source}: unknown key {short_repr(dotted)}{leaf_hint}")


class OverriddenConfig(dict):
    """A raw config mapping that remembers which keys command-line overrides set (``origins``: dotted key
    -> the override's text), so that ``from_dict`` blames a bad value on the override that gave it, not
    on the config file."""

    origins: dict[str, str]

    def __init__(self, *args: Any, origins: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.origins = dict(origins or {})


def _blame(dotted: str, source: str, origins: Mapping[str, str]) -> str:
    """The override that set ``dotted`` or a section above it (the last one wins), else ``source``."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        text = origins.get(".".join(parts[:n]))
        if text is not None:
            return f"override {short_repr(text)}"
    return source


def from_dict(raw: Mapping[str, Any], source: str = "config", cls: type = Config, prefix: str = "",
              origins: Mapping[str, str] | None = None) -> Any:
    """Build the dataclass ``cls`` from a nested mapping, coercing and naming any bad key.

    Errors name ``source`` (the file) or, for keys that ``origins`` (or an ``OverriddenConfig``) says a
    command-line override set, that override. The whole mapping is first checked to be of a config's
    size (``check_config_size``), so that nothing below can be made to expand a huge alias graph.
    """
    if origins is None:
        origins = getattr(raw, "origins", None) or {}
    if not isinstance(raw, Mapping):
        where = prefix.rstrip(".") or "the top level"
        raise ConfigError(f"{_blame(where, source, origins)}: {where} must be a mapping of keys, got "
                          f"{type(raw).__name__}")
    if not prefix:
        check_config_size(raw, source)
    hints = _hints(cls)
    values = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}" if isinstance(key, str) else f"{prefix}{short_repr(key)}"
        if not isinstance(key, str) or key not in hints:
            raise _unknown_key(dotted, _blame(dotted, source, origins))
        annotation = hints[key]
        if _is_section(annotation):
            values[key] = from_dict(value if value is not None else {}, source, annotation, dotted + ".", origins)
        else:
            try:
                values[key] = coerce(value, annotation, dotted)
            except ConfigError as err:
                raise ConfigError(f"{_blame(dotted, source, origins)}: {err}") from None
    return cls(**values)


def deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge; mappings merge key by key, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class DuplicateKeyError(yaml.YAMLError):
    """A mapping of a YAML text names one key twice (PyYAML would keep the last value silently)."""


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key written twice in one mapping, naming both lines.

    A merge (``<<: *base``) may still be overridden by the mapping's own keys: that is what it is for.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}  # key -> the line it is first written on
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the constructor below refuses it
                    continue
                if first is not None:
                    raise DuplicateKeyError(
                        f"key {short_repr(key)} is written twice in one mapping, on line {first} and on line "
                        f"{line}; YAML would keep only the second silently: write it once")
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, what: str, source: str | None = None) -> Any:
    """The one YAML parser of fcc: yaml.safe_load that refuses duplicate keys, with every failure as a
    ConfigError, and the result checked to be of a config's size.

    PyYAML raises more than YAMLError on bad input: ValueError for an impossible date ("2001-02-30") or
    "!!int abc", AttributeError for "!!timestamp x", RecursionError for very deep nesting. ``what``
    prefixes parse errors ("x.yaml: not valid YAML"); ``source`` names the input in the size check and
    for a duplicate key (by default ``what`` without its "not valid YAML" ending).
    """
    if source is None:
        source = re.sub(r":( value is)? not valid YAML$", "", what)
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no Python objects
    except DuplicateKeyError as err:
        raise ConfigError(f"{source}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{what}: {err}") from None
    except (ValueError, TypeError, AttributeError, OverflowError, RecursionError, MemoryError) as err:
        raise ConfigError(f"{what}: {type(err).__name__}: {short_repr(str(err), 300)}") from None
    check_config_size(data, source)
    return data


def load_yaml_file(path: str | Path, what: str) -> Any:
    """A YAML file a user names or a run folder holds (``what`` it is: "config file", "sweep spec", ...),
    read through the bounded reader and ``parse_yaml``; every failure is a ConfigError naming the file."""
    text = read_input_text(path, what, ConfigError, files.MAX_YAML_BYTES)
    return parse_yaml(text, f"{path}: not valid YAML", str(path))


def read_yaml(path: Path, _seen: tuple[Path, ...] = (), sources: dict[str, str] | None = None) -> dict[str, Any]:
    """Read a config file with its ``base`` chain resolved into one nested mapping.

    Later files win, key by key. A base's ``out`` is dropped: a run's folder comes from the file the user
    named (its own ``out``, else runs/<its name>), so a variant of a shipped config never writes into the
    shipped config's run directory. ``sources``, when given, receives dotted key -> the file that set it
    (for `fcc config`).
    """
    path = Path(path)
    try:
        resolved = path.resolve()
    except (OSError, ValueError, RuntimeError) as err:  # a NUL byte in the name, a symlink loop
        raise ConfigError(f"{path}: not a usable config file name ({err})") from None
    if resolved in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, resolved))
        raise ConfigError(f"{path}: circular 'base' chain: {chain}")
    data = load_yaml_file(path, "config file")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    bases = data.pop("base", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: 'base' must be a file name or a list of file names")
    merged: dict[str, Any] = {}
    for base in bases:
        base_sources: dict[str, str] | None = {} if sources is not None else None
        base_path = path.parent / base
        if not os.path.lexists(base_path):  # a file beside this one wins; else a shipped config's name
            base_path = shipped_config(base) or base_path
        base_data = read_yaml(base_path, (*_seen, resolved), base_sources)
        base_data.pop("out", None)
        merged = deep_merge(merged, base_data)
        if sources is not None and base_sources is not None:
            sources.update({k: v for k, v in base_sources.items() if k != "out"})
    if sources is not None:
        for key in flat_keys(data):  # a value set here replaces whatever the bases set below it
            for below in [k for k in sources if k.startswith(key + ".")]:
                del sources[below]
            sources[key] = str(path)
    return deep_merge(merged, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.epochs=30' -> (['train', 'epochs'], 30); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {short_repr(text)}: expected key.sub=value")
    key, _, value_text = text.partition("=")
    key = key.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*", key):
        raise ConfigError(f"override {short_repr(text)}: {short_repr(key)} is not a dotted key such as train.epochs")
    what = f"override {short_repr(text)}"
    value = parse_yaml(value_text, f"{what}: value is not valid YAML", what) if value_text.strip() else None
    return key.split("."), value


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> OverriddenConfig:
    """``raw`` with the overrides applied, their keys checked against the schema; the result remembers
    which override set which key, for the messages of ``from_dict``."""
    out = OverriddenConfig(copy.deepcopy(dict(raw)), origins=getattr(raw, "origins", None))
    for text in overrides:
        path, value = parse_override(text)
        _check_override_key(path, text)
        node: dict[str, Any] = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {short_repr(text)}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
        dotted = ".".join(path)
        for key in [k for k in out.origins if k.startswith(dotted + ".")]:
            del out.origins[key]  # replaced along with the section it was in
        out.origins[dotted] = text
    return out


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load, override, type-check and validate a config (a file, or a shipped config's name such as
    ``cifar10_lt/ce_fcc_if100``); ``out`` defaults to runs/<file stem>."""
    if path is not None:
        problem = path_problem(path)
        if problem is not None:
            raise ConfigError(f"config file {short_repr(str(path))} {problem}")
        path = resolve_config(path)  # a file, else a shipped config's name
    raw = read_yaml(Path(path)) if path is not None else {}
    source = str(path) if path is not None else "config"
    raw = apply_overrides(raw, overrides)
    cfg = from_dict(raw, source)
    if cfg.out is None:
        cfg.out = str(Path("runs") / (Path(path).stem if path is not None else "default"))
    # the one check rescaling depends on, before it says anything about a schedule of 0 epochs
    require(cfg.train.epochs >= 1, "train.epochs", "an integer >= 1", cfg.train.epochs)
    changed = rescale_schedule(cfg, set(raw.origins))
    if changed:
        shown = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
        log.info("train.epochs=%d differs from the %d-epoch schedule of %s; rescaled: %s",
                 cfg.train.epochs, _schedule_length(raw), shown_name(Path(path)) if path is not None else source, shown)
    check_paths(cfg)
    validate(cfg)
    return cfg


def check_paths(cfg: Config) -> None:
    """Path-valued keys (``PATH_KEYS``) that no file can have, a NUL byte or a name over 255 bytes, are a
    ConfigError naming the key now, instead of an OSError from deep inside the run that needs them."""
    for key in PATH_KEYS:
        node: Any = cfg
        for part in key.split("."):
            node = getattr(node, part)
        if isinstance(node, str):
            problem = path_problem(node)
            if problem is not None:
                raise ConfigError(f"{key}: {short_repr(node, 80)} {problem}")


def _check_override_key(keys: list[str], text: str) -> None:
    cls: Any = Config
    for depth, key in enumerate(keys):
        hints = _hints(cls)
        if key not in hints:
            dotted = ".".join(keys)
            raise ConfigError(f"override {short_repr(text)}: unknown key {short_repr(dotted)}"
                              f"{suggest(dotted, all_keys()) if len(dotted) <= 200 else ''}")
        annotation = hints[key]
        if _is_section(annotation):
            cls = annotation
            continue
        if depth < len(keys) - 1 and typing.get_origin(annotation) is not dict:
            raise ConfigError(f"override {short_repr(text)}: {'.'.join(keys[: depth + 1])!r} has no sub-keys")
        return
