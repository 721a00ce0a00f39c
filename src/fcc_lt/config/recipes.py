"""The shipped recipes: configs and sweep specs that are package data (``fcc_lt/configs/``), found by name.

``fcc train cifar10_lt/ce_fcc_if100`` and ``fcc sweep cifar10_lt_ce_vs_fcc`` work from any folder of an
installed package, not only from a checkout. A path that exists always wins over a name, so a user's own
``cifar10_lt/ce_fcc_if100.yaml`` is never shadowed. Files whose name starts with ``_`` are the bases the
recipes build on (``base:``); they resolve like the others but are not listed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from fcc_lt.util.errors import ConfigError, short_repr
from fcc_lt.util.files import MAX_YAML_BYTES, open_input
from fcc_lt.util.typecheck import suggest

RECIPES = Path(__file__).resolve().parents[1] / "configs"
SWEEPS = RECIPES / "sweeps"
_MAX_RECIPES = 10_000  # the package ships a few hundred; a limit keeps a broken install from walking forever
_NAME_PART = re.compile(r"[A-Za-z0-9_.+-]+")


def _names(root: Path, *, exclude: Path | None = None, bases: bool = False) -> dict[str, Path]:
    """name (path below ``root`` without .yaml) -> file, sorted by name."""
    found: dict[str, Path] = {}
    if not root.is_dir():
        return found
    for path in root.rglob("*.yaml"):
        if exclude is not None and exclude in path.parents:
            continue
        if path.name.startswith("_") and not bases:
            continue
        found[path.relative_to(root).as_posix().removesuffix(".yaml")] = path
        if len(found) > _MAX_RECIPES:
            raise ConfigError(f"{root}: more than {_MAX_RECIPES} YAML files; is this the right folder?")
    return dict(sorted(found.items()))


def shipped_configs() -> dict[str, Path]:
    """Every shipped config a run can start from (bases left out), by name: ``cifar10_lt/ce_fcc_if100``."""
    return _names(RECIPES, exclude=SWEEPS)


def configs_in(root: Path) -> dict[str, Path]:
    """The configs in a folder of the user's (bases left out), by path below ``root`` without .yaml."""
    return _names(root)


def shipped_sweeps() -> dict[str, Path]:
    """Every shipped sweep spec, by name: ``cifar10_lt_ce_vs_fcc``."""
    return _names(SWEEPS)


def shown_name(path: Path) -> str:
    """How messages name a config or sweep file: a shipped one by its recipe name (``cifar10_lt/ce_fcc_if100``,
    ``cifar10_lt_ce_vs_fcc``: the path inside an installed package means nothing to a user), any other by its
    path."""
    for root in (SWEEPS, RECIPES):
        try:
            return Path(path).resolve().relative_to(root).as_posix().removesuffix(".yaml")
        except (OSError, ValueError):
            continue
    return str(path)


def title(path: Path) -> str:
    """A recipe's one-line description: its first comment line (before any key)."""
    try:
        with open_input(path, "recipe", ConfigError, MAX_YAML_BYTES) as handle:  # not a FIFO, not huge
            head = handle.read(64 * 1024).decode("utf-8", errors="replace")
    except (ConfigError, OSError, UnicodeDecodeError):
        return ""
    for line in head.splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def _shipped(text: str, root: Path, exclude: Path | None) -> Path | None:
    """The shipped file ``text`` names under ``root`` (with or without .yaml), or None."""
    name = text.removesuffix(".yaml")
    parts = name.split("/")
    if not name or not all(_NAME_PART.fullmatch(p) and p not in (".", "..") for p in parts):
        return None
    path = root.joinpath(*parts[:-1], parts[-1] + ".yaml")
    if exclude is not None and exclude in path.parents:
        return None
    return path if path.is_file() else None


def shipped_config(name: str) -> Path | None:
    """The shipped config ``name`` names (``cifar10_lt/ce_if100``, ``.yaml`` optional), or None."""
    return _shipped(name, RECIPES, SWEEPS)


def _resolve(source: str | os.PathLike[str], what: str, root: Path, exclude: Path | None,
             listed: dict[str, Path], command: str) -> Path:
    if os.path.lexists(source):
        return Path(source)  # a path the user has wins; reading it reports what is wrong with it
    text = os.fspath(source)
    found = _shipped(text, root, exclude)
    if found is not None:
        return found
    name = text.removesuffix(".yaml")
    if name.startswith("configs/"):  # the 0.1.0 README's repository path of a recipe
        hint = suggest(name.removeprefix("configs/"), listed) or suggest(name, listed)
    else:
        hint = suggest(name, listed)
    shown = text if len(text) <= 200 and text.isprintable() else short_repr(text, 200)
    raise ConfigError(f"{shown}: {what} not found, nor a shipped {what.split()[0]} of that name{hint} "
                      f"(`{command}` lists the shipped ones)")


def resolve_config(source: str | os.PathLike[str]) -> Path:
    """The config file ``source`` means: the path itself when it exists, else the shipped config of that
    name (``cifar10_lt/ce_fcc_if100``, ``.yaml`` optional); a ConfigError that suggests the nearest name
    otherwise."""
    return _resolve(source, "config file", RECIPES, SWEEPS, shipped_configs(), "fcc configs")


def resolve_sweep(source: str | os.PathLike[str]) -> Path:
    """The sweep spec ``source`` means: the path when it exists, else the shipped spec of that name."""
    return _resolve(source, "sweep spec", SWEEPS, None, shipped_sweeps(), "fcc configs --sweeps")
