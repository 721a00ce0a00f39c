"""`fcc analyze`: the analyses that test FCC's mechanism on trained runs -> analysis.json in each run directory.

A command of its own rather than an `fcc eval` option: it reads three splits at once (test, the training
images, validation), takes several runs or a sweep folder as `fcc report` does, and writes a file that only
`fcc report` and `fcc plot` read; `fcc eval`'s --split / --select-on / --tau-sweep do not apply to it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fcc_lt.util import argtypes


def split_items(items: list[str]) -> tuple[list[str], list[str]]:
    """(run folders, key=value overrides): an item with '=' that is not an existing path is an override."""
    runs = [i for i in items if "=" not in i or Path(i).exists()]
    return runs, [i for i in items if i not in runs]


def cmd_analyze(args: argparse.Namespace) -> int:
    from fcc_lt.evaluation.analyze_run import analyze_run
    from fcc_lt.evaluation.run_loader import load_run_config
    from fcc_lt.experiments.run_folder import find_run_dirs, run_status
    from fcc_lt.util.errors import ConfigError

    named, overrides = split_items(args.items)
    if not named:
        raise ConfigError("fcc analyze: name one or more run directories (or folders that contain them)")
    if args.device:
        overrides.append(f"device={args.device}")
    runs = find_run_dirs(named)
    done = 0
    for run_dir in runs:
        status = run_status(run_dir)
        if not status.finished and args.checkpoint == "last":
            print(f"note: {run_dir}: {status.state}{f' ({status.detail})' if status.detail else ''}; not analysed "
                  "(analyse a finished run, or name --checkpoint to analyse one of its checkpoints anyway)",
                  file=sys.stderr)
            continue
        analyze_run(run_dir, load_run_config(run_dir, overrides), checkpoint=args.checkpoint)
        done += 1
    if not done:
        raise ConfigError(f"fcc analyze: none of the {len(runs)} run director{'y' if len(runs) == 1 else 'ies'} "
                          "named is finished; nothing was analysed")
    if len(runs) > 1:
        print(f"analysed {done} of {len(runs)} runs", file=sys.stderr)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="margins, norm ratios, scale sweep, oracle factor and logit adjustment of "
                       "trained runs -> analysis.json", description="fcc analyze RUN... [overrides]: the analyses "
                       "that tell FCC's readings apart (docs/analyses.md), on every finished run named or found "
                       "below the folders named; each run gets analysis.json (its other files are not touched).")
    p.add_argument("items", nargs="+", type=argtypes.path, metavar="RUN_OR_OVERRIDE",
                   help="run directories, or folders that contain them; then key.sub=value overrides of each run's "
                        "config (e.g. data.root=... when the data moved)")
    p.add_argument("--checkpoint", default="last", type=argtypes.checkpoint,
                   help="last (default: analysis.json), best (analysis_best.json), or a checkpoint file")
    p.add_argument("--device", help="device to compute the features on (default: the run's)")
    p.set_defaults(func=cmd_analyze)

