"""`fcc configs` and `fcc import-config`: the shipped recipes, and the original code's configs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fcc_lt.util import argtypes
from fcc_lt.util.errors import ConfigError


def cmd_configs(args: argparse.Namespace) -> int:
    from fcc_lt.config import recipes

    if args.root is not None:  # a folder of the user's: its configs by path, as `fcc train` takes them
        root = Path(args.root)
        if not root.is_dir():
            raise ConfigError(f"--root {root}: no such folder")
        listed = {(root / name).as_posix() + ".yaml": path for name, path in recipes.configs_in(root).items()}
    elif args.sweeps:
        listed = recipes.shipped_sweeps()
    else:
        listed = recipes.shipped_configs()
    width = max((len(name) for name in listed), default=0)
    for name, path in listed.items():
        print(f"{name:<{width}}  {recipes.title(path)}".rstrip())
    return 0


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
    p = sub.add_parser("configs", help="list the shipped configs (or sweep specs) by name, with their descriptions",
                       description="fcc configs [--sweeps | --root DIR]: each shipped config's name (what `fcc train "
                                   "NAME` takes) and its first comment line; they ship inside the package, so this "
                                   "works from any folder")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--sweeps", action="store_true", help="list the shipped sweep specs (what `fcc sweep NAME` "
                      "takes) instead of the configs")
    what.add_argument("--root", metavar="DIR", type=argtypes.path,
                      help="list the configs in DIR by path instead (default: the configs shipped in the package, "
                           "by name; files named _*.yaml are bases and left out)")
    p.set_defaults(func=cmd_configs)

    p = sub.add_parser("import-config", help="convert a config of the original FCC / bag-of-tricks code")
    p.add_argument("original", type=argtypes.path, help="the original code's YAML config")
    p.add_argument("-o", "--out", type=argtypes.output_file, help="write the fcc config here (default: print it)")
    p.set_defaults(func=cmd_import_config)
