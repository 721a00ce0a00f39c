"""`fcc configs` and `fcc import-config`: the shipped recipes, and the original code's configs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fcc_lt.util import argtypes
from fcc_lt.util.errors import ConfigError


def config_root() -> Path:
    """./configs when run from a checkout, else the configs folder next to the installed sources."""
    here = Path("configs")
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[2] / "configs"


def cmd_configs(args: argparse.Namespace) -> int:
    root = Path(args.root) if args.root else config_root()
    if not root.is_dir():
        raise ConfigError(f"no configs folder at {root}; pass --root")
    files = sorted(p for p in root.rglob("*.yaml") if not p.name.startswith("_"))
    width = max((len(p.as_posix()) for p in files), default=0)
    for p in files:
        print(f"{p.as_posix():<{width}}  {config_title(p)}".rstrip())
    return 0


def config_title(path: Path) -> str:
    """A config's one-line description: its first comment line."""
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("#"):
                return line.lstrip("#").strip()
            if line.strip():
                break
    except (OSError, UnicodeDecodeError):
        pass
    return ""


def cmd_import_config(args: argparse.Namespace) -> int:
    from fcc_lt.config.importer import import_config
    from fcc_lt.util.files import atomic_write_text

    text, notes = import_config(Path(args.original))
    if args.out:
        atomic_write_text(Path(args.out), text)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        print(f"wrote {args.out}; train it with: fcc train {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("configs", help="list the shipped configs")
    p.add_argument("--root", help="configs folder (default: ./configs)")
    p.set_defaults(func=cmd_configs)

    p = sub.add_parser("import-config", help="convert a config of the original FCC / bag-of-tricks code")
    p.add_argument("original", type=argtypes.path, help="the original code's YAML config")
    p.add_argument("-o", "--out", type=argtypes.output_file, help="write the fcc config here (default: print it)")
    p.set_defaults(func=cmd_import_config)
