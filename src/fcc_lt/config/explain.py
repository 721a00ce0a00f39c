"""`fcc config CONFIG [overrides]`: the fully resolved config, where each value came from, and whether it
is valid, without training anything.

Sources: the config file that set a key (a file of the ``base:`` chain, the named file last), a
command-line override, the rescaling of a shortened schedule (``train.schedule_epochs``), or the
built-in default.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from fcc_lt.config.load import apply_overrides, from_dict, load_config, load_yaml_file, parse_override
from fcc_lt.config.recipes import resolve_config
from fcc_lt.config.schedule import rescale_schedule
from fcc_lt.config.schema import Config, flat_keys
from fcc_lt.util.errors import path_problem


def file_sources(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, str]:
    """dotted key -> the file of ``path``'s base chain that set it last (later files win, as in loading)."""
    resolved = path.resolve()
    if resolved in _seen:  # load_config has already refused the loop; stay finite anyway
        return {}
    data = load_yaml_file(path, "config file") or {}
    if not isinstance(data, dict):
        return {}
    bases = data.pop("base", [])
    sources: dict[str, str] = {}
    for base in [bases] if isinstance(bases, str) else bases or []:
        sources.update(file_sources(path.parent / base, (*_seen, resolved)))
    for key in flat_keys(data):
        # a value set here replaces whatever the bases set below it
        sources = {k: v for k, v in sources.items() if not k.startswith(key + ".")}
        sources[key] = str(path)
    return sources


def _source_of(key: str, sources: Mapping[str, str]) -> str | None:
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        found = sources.get(".".join(parts[:i]))
        if found is not None:
            return found
    return None


def explain(path: str | Path | None, overrides: Sequence[str] = ()) -> tuple[Config, list[tuple[str, Any, str]]]:
    """The validated config and (key, value, source) for every leaf key."""
    if path is not None and path_problem(path) is None:
        path = resolve_config(path)  # a file, else a shipped config's name
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = load_config(path, overrides)  # every check a training start would do (ConfigError otherwise)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    sources = file_sources(Path(path)) if path is not None else {}
    given = {".".join(parse_override(o)[0]): o for o in overrides}
    raw = apply_overrides({} if path is None else _raw(Path(path)), overrides)
    unscaled = from_dict(raw, str(path or "config"))
    unscaled_length = unscaled.train.schedule_epochs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rescaled = rescale_schedule(unscaled, set(given))
    rows = []
    for key, value in flat_keys(cfg.to_dict()).items():
        if key in rescaled:
            old, _ = rescaled[key]
            source = f"rescaled from {old!r} (train.schedule_epochs -> train.epochs)"
        elif _source_of(key, {k: f"override {v}" for k, v in given.items()}):
            source = _source_of(key, {k: f"override {v}" for k, v in given.items()})  # type: ignore[assignment]
        elif key == "train.schedule_epochs" and rescaled:
            source = (f"set to train.epochs: {_source_of(key, sources) or 'the config'} wrote its epoch keys for "
                      f"{unscaled_length} epochs")
        elif key == "out" and path is not None and "out" not in sources:
            source = "default: runs/<config file name>"
        else:
            source = _source_of(key, sources) or "default"
        rows.append((key, value, source))
    return cfg, rows


def _raw(path: Path) -> dict[str, Any]:
    from fcc_lt.config.load import read_yaml

    return read_yaml(path)


def render(rows: Sequence[tuple[str, Any, str]]) -> str:
    """One line per key (``section.key: value``, values in YAML flow style) with its source as a comment."""
    shown = [(key, yaml.safe_dump(value, default_flow_style=True, width=10**9).strip().removesuffix("...").strip(),
              source) for key, value, source in rows]
    width = max((len(k) + len(v) + 2 for k, v, _ in shown), default=0)
    return "".join(f"{f'{k}: {v}':<{width}}  # {src}\n" for k, v, src in shown)
