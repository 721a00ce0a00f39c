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

from fcc_lt.config.load import apply_overrides, from_dict, load_config, parse_override, read_yaml
from fcc_lt.config.recipes import resolve_config
from fcc_lt.config.schedule import rescale_schedule
from fcc_lt.config.schema import Config, flat_keys
from fcc_lt.util.errors import path_problem


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
    sources: dict[str, str] = {}
    given = {".".join(parse_override(o)[0]): o for o in overrides}
    raw = apply_overrides({} if path is None else read_yaml(Path(path), sources=sources), overrides)
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


def render(rows: Sequence[tuple[str, Any, str]]) -> str:
    """The resolved config as YAML that loads back as a config, each value's source as a comment on its line:
    `fcc config X > mine.yaml` then `fcc train mine.yaml` trains the same run. ``out`` is written as a comment
    (unless an override gave it), so that the copy runs in a folder of its own name (runs/mine), not in X's."""
    lines: list[tuple[str, str | None]] = []
    opened: list[str] = []  # the sections the previous key was in
    for key, value, source in rows:
        *sections, name = key.split(".")
        depth = 0
        while depth < min(len(opened), len(sections)) and opened[depth] == sections[depth]:
            depth += 1
        for level in range(depth, len(sections)):
            lines.append((f"{'  ' * level}{sections[level]}:", None))
        opened = sections
        flow = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip().removesuffix("...").strip()
        text = f"{'  ' * len(sections)}{name}: {flow}"
        if key == "out" and not source.startswith("override"):
            text, source = f"# {text}", (f"{source}; a comment here, so that a copy of this output runs in a "
                                         "folder of its own name")
        lines.append((text, source))
    width = max((len(text) for text, source in lines if source is not None), default=0)
    return "".join(f"{text:<{width}}  # {source}\n" if source is not None else f"{text}\n" for text, source in lines)
