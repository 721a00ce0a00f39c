"""A sweep spec (``fcc sweep SPEC.yaml``): what it may hold, read and checked with errors naming the spec
file and the key. See docs/sweeps.md for the format."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fcc_lt.config.recipes import shipped_config
from fcc_lt.util import files
from fcc_lt.util.errors import ConfigError
from fcc_lt.util.files import read_input_text
from fcc_lt.util.typecheck import suggest

SPEC_KEYS = ("out", "configs", "seeds", "overrides", "grid", "slurm")
SLURM_KEYS = ("partition", "time", "gpus", "cpus", "mem_gb", "account", "qos", "constraint", "setup",
              "additional", "signal_delay_s")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._+-]+")


@dataclass(frozen=True)
class ConfigEntry:
    """One entry of ``configs:``: a config file and the name its runs start with."""

    path: str
    name: str
    where: str  # "configs[0]", for error messages


@dataclass
class Spec:
    """A validated sweep spec (see docs/sweeps.md)."""

    path: Path
    raw: dict[str, Any]
    out: Path
    configs: list[ConfigEntry]
    seeds: list[int]
    overrides: list[str]
    grid: dict[str, list[Any]]
    slurm: dict[str, Any] = field(default_factory=dict)


def yaml_value(value: Any) -> str:
    """``value`` as the YAML text of a ``key=value`` override that reads back as the same value
    (strings that would read as numbers or booleans are quoted; lists and mappings in flow style)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False).strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")].strip()
    elif text == "...":
        text = ""
    return text


def _spec_error(spec: Path, where: str, message: str) -> ConfigError:
    return ConfigError(f"{spec}: {where}: {message}")


def load_spec(path: Path) -> Spec:
    """Read and validate a sweep spec; every problem is a ConfigError naming the file and the key."""
    from fcc_lt.config.load import parse_override, parse_yaml

    path = Path(path)
    source = read_input_text(path, "sweep spec", ConfigError, files.MAX_YAML_BYTES)
    raw = parse_yaml(source, f"{path}: not valid YAML")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a sweep spec is a mapping with the keys {', '.join(SPEC_KEYS)}, "
                          f"got {type(raw).__name__}")
    for key in raw:
        if key not in SPEC_KEYS:
            raise ConfigError(f"{path}: unknown key {key!r}{suggest(str(key), SPEC_KEYS)} (a sweep spec has "
                              f"{', '.join(SPEC_KEYS)})")

    out = raw.get("out", f"runs/sweeps/{path.stem}")
    if not isinstance(out, str) or not out.strip():
        raise _spec_error(path, "out", f"expected the folder the runs go into, got {out!r}")

    configs = _spec_configs(path, raw.get("configs"))

    seeds = raw.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds:
        raise _spec_error(path, "seeds", f"expected a non-empty list of seeds such as [0, 1, 2], got {seeds!r}")
    for i, seed in enumerate(seeds):
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise _spec_error(path, f"seeds[{i}]", f"expected a non-negative integer, got {seed!r}")
        if seed in seeds[:i]:
            raise _spec_error(path, f"seeds[{i}]", f"seed {seed} is listed twice")

    overrides = raw.get("overrides", [])
    if isinstance(overrides, str):
        overrides = [overrides]
    if overrides is None:
        overrides = []
    if not isinstance(overrides, list):
        raise _spec_error(path, "overrides", "expected a list of key.sub=value strings, e.g. "
                          f"[train.epochs=30, data.root=data/cifar10], got {type(overrides).__name__}")
    override_keys: dict[str, str] = {}
    for i, text in enumerate(overrides):
        where = f"overrides[{i}]"
        if isinstance(text, dict):
            raise _spec_error(path, where, "expected a 'key.sub=value' string, got a mapping (write "
                              "`- train.epochs=30`, not `- train.epochs: 30`)")
        if not isinstance(text, str):
            raise _spec_error(path, where, f"expected a 'key.sub=value' string, got {text!r}")
        try:
            keys, _ = parse_override(text)
        except ConfigError as err:
            raise _spec_error(path, where, str(err)) from None
        key = ".".join(keys)
        _reserved(path, where, key)
        if key in override_keys:
            raise _spec_error(path, where, f"{key} is already set by {override_keys[key]}")
        override_keys[key] = where

    grid = raw.get("grid") or {}
    if not isinstance(grid, dict):
        raise _spec_error(path, "grid", "expected a mapping of key -> list of values, e.g. "
                          f"{{fcc.gamma: [0.5, 1.0]}}, got {type(grid).__name__}")
    for key, values in grid.items():
        where = f"grid[{key!r}]"
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise _spec_error(path, where, "not a dotted config key such as fcc.gamma")
        _reserved(path, where, key)
        if key in override_keys:
            raise _spec_error(path, where, f"{key} is also set by {override_keys[key]}; give it in one place")
        if not isinstance(values, list) or not values:
            raise _spec_error(path, where, f"expected a non-empty list of values, e.g. [0.5, 1.0], got {values!r}")
        texts = []
        for j, value in enumerate(values):
            text = yaml_value(value)
            if parse_yaml(text, f"{path}: {where}[{j}]") != value:
                raise _spec_error(path, f"{where}[{j}]", f"{value!r} cannot be passed as a key=value override")
            if text in texts:
                raise _spec_error(path, f"{where}[{j}]", f"the value {text} is listed twice")
            texts.append(text)

    slurm = raw.get("slurm") or {}
    if not isinstance(slurm, dict):
        raise _spec_error(path, "slurm", f"expected a mapping of SLURM options, got {type(slurm).__name__}")
    if isinstance(slurm.get("time"), int) and ":" in (_plain_scalar(source, "slurm", "time") or ""):
        slurm["time"] = _plain_scalar(source, "slurm", "time")  # YAML 1.1 reads 4:00:00 as the integer 14400
    for key in slurm:
        if key not in SLURM_KEYS:
            raise _spec_error(path, f"slurm.{key}", f"unknown SLURM option{suggest(str(key), SLURM_KEYS)} "
                              f"(known: {', '.join(SLURM_KEYS)})")
    return Spec(path, raw, Path(out), configs, list(seeds), list(overrides), dict(grid), dict(slurm))


def _plain_scalar(text: str, *keys: str) -> str | None:
    """The text of the plain scalar at ``keys`` in a YAML document (composed, never constructed)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            return None
        node = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)
    return node.value if isinstance(node, yaml.ScalarNode) and node.style is None else None


def _reserved(path: Path, where: str, key: str) -> None:
    if key == "seed":
        raise _spec_error(path, where, "seed is set by the sweep: list the seeds under `seeds:`")
    if key == "out":
        raise _spec_error(path, where, "out is set by the sweep: every run goes to OUT/<run name>; set the "
                          "sweep's folder with `out:`")


def _spec_configs(path: Path, entries: Any) -> list[ConfigEntry]:
    if entries is None:
        raise ConfigError(f"{path}: 'configs' is missing: list the config files to train, e.g. "
                          "configs: [cifar10_lt/ce_if100, cifar10_lt/ce_fcc_if100] (shipped names or files)")
    if isinstance(entries, str):
        entries = [entries]
    if not isinstance(entries, list) or not entries:
        raise _spec_error(path, "configs", f"expected a non-empty list of config files, got {entries!r}")
    out: list[ConfigEntry] = []
    names: dict[str, ConfigEntry] = {}
    for i, entry in enumerate(entries):
        where = f"configs[{i}]"
        name = None
        if isinstance(entry, dict):
            for key in entry:
                if key not in ("config", "name"):
                    raise _spec_error(path, f"{where}.{key}", f"unknown key{suggest(str(key), ['config', 'name'])}"
                                      " (an entry is a file name, or {config: FILE, name: NAME})")
            config, name = entry.get("config"), entry.get("name")
        else:
            config = entry
        if not isinstance(config, str) or not config.strip():
            raise _spec_error(path, where, f"expected a config file name, got {config!r}")
        if not Path(config).is_file() and shipped_config(config) is None:
            raise _spec_error(path, where, f"config file {config!r} not found (relative paths are taken from "
                              f"the current directory, {Path.cwd()}), nor a shipped config of that name "
                              "(`fcc configs` lists them)")
        if name is None:
            name = UNSAFE_CHARS.sub("_", Path(config).stem).strip("_") or "config"
        elif not isinstance(name, str) or not _NAME.fullmatch(name):
            raise _spec_error(path, f"{where}.name", f"expected letters, digits and ._+- (it names run "
                              f"directories), got {name!r}")
        if name in names:
            other = names[name]
            raise _spec_error(path, where, f"its runs would be named {name!r} like those of {other.where} "
                              f"({other.path}); give one of them a name: `- {{config: {config}, name: NAME}}`")
        names[name] = ConfigEntry(config, name, where)
        out.append(names[name])
    return out


def run_count(spec: Spec) -> tuple[int, str]:
    """How many runs the spec makes (configs x grid combinations x seeds), from the lengths of its lists
    alone, and the product spelled out."""
    combinations = 1
    for values in spec.grid.values():
        combinations *= len(values)
    total = len(spec.configs) * combinations * len(spec.seeds)
    grid = f" x {combinations} grid combination(s)" if spec.grid else ""
    return total, f"{len(spec.configs)} config(s){grid} x {len(spec.seeds)} seed(s)"
