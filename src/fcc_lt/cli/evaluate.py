"""`fcc eval` and `fcc predict`: a trained run (or a config with a checkpoint file) -> eval files, predictions."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fcc_lt.util import argtypes
from fcc_lt.util.argtypes import int_at_least
from fcc_lt.util.errors import ConfigError, FccError

if TYPE_CHECKING:
    from fcc_lt.config.schema import Config


def cmd_eval(args: argparse.Namespace) -> int:
    from fcc_lt.evaluation.run_loader import load_run_config

    run_dir = Path(args.run)
    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"device={args.device}")
    if not run_dir.exists() and args.checkpoint not in ("last", "best"):
        from fcc_lt.config.recipes import shipped_config

        run_dir = shipped_config(args.run) or run_dir  # a shipped config's name, with --checkpoint FILE
    if run_dir.is_file():  # a config file: evaluate the --checkpoint file (e.g. the original code's .pth) with it
        return _eval_with_config(args, run_dir, overrides)
    if run_dir.is_dir() and not os.path.lexists(run_dir / "config.yaml"):
        from fcc_lt.experiments.run_folder import find_run_dirs

        if any(p.is_dir() for _, p in zip(range(_MAX_LOOKED_AT), run_dir.iterdir())):
            try:
                runs = find_run_dirs([run_dir])
            except ConfigError:
                runs = []  # none below: load_run_config says what the folder is
            if runs:
                return _eval_folder(args, run_dir, runs, overrides)
    _eval_one(args, run_dir, load_run_config(run_dir, overrides))
    return 0


_MAX_LOOKED_AT = 10_000  # entries of a folder looked at for run directories before searching it


def _eval_one(args: argparse.Namespace, run_dir: Path, cfg: Config) -> str:
    """Evaluate one run as the options ask (plain, --features or --tau-sweep); its summary in one line."""
    from fcc_lt.evaluation.files import format_features, format_summary

    if args.tau_sweep is not None:
        from fcc_lt.evaluation.tau_sweep import parse_taus, run_tau_sweep

        if cfg.eval.tau_norm is not None:
            raise ConfigError("--tau-sweep chooses eval.tau_norm itself; do not set it as well")
        sweep = run_tau_sweep(run_dir, cfg, parse_taus(args.tau_sweep), checkpoint=args.checkpoint,
                              select_on=args.select_on, report_on=args.split,
                              allow_test_selection=args.select_on == "test")
        return f"tau {sweep['best_tau']:g}: {format_summary(sweep['result'])}" if sweep else ""
    if args.features:
        from fcc_lt.evaluation.evaluate import feature_stats_run

        result = feature_stats_run(run_dir, cfg, checkpoint=args.checkpoint, split=args.split)
        return format_features(result) if result else ""
    from fcc_lt.evaluation.evaluate import evaluate_run

    result = evaluate_run(run_dir, cfg, checkpoint=args.checkpoint, split=args.split)
    return format_summary(result) if result else ""


def _eval_folder(args: argparse.Namespace, folder: Path, runs: list[Path], overrides: list[str]) -> int:
    """`fcc eval FOLDER`: every run directory below FOLDER (a sweep), one after the other. Runs that are not
    finished (training elsewhere, stopped, empty, unreadable) are skipped with their state; a run whose
    evaluation fails is reported and the others go on. Exit 2 if any failed or none was evaluated."""
    from fcc_lt.evaluation.run_loader import load_run_config
    from fcc_lt.experiments.run_folder import run_status

    if args.checkpoint not in ("last", "best"):
        raise ConfigError(f"--checkpoint {args.checkpoint}: one checkpoint file cannot be evaluated as every run "
                          f"of {folder}; use last or best, or name one run directory")
    lines: list[tuple[Path, str, str]] = []  # (run, outcome, text)
    for run in runs:
        status = run_status(run)
        if not status.finished:
            lines.append((run, "skipped", f"{status.state}" + (f" ({status.detail})" if status.detail else "")))
            continue
        print(f"== {run}", file=sys.stderr, flush=True)
        try:
            lines.append((run, "evaluated", _eval_one(args, run, load_run_config(run, overrides))))
        except FccError as err:
            print(f"error: {err}", file=sys.stderr)
            lines.append((run, "failed", str(err)))
    counts = {k: sum(1 for _, outcome, _ in lines if outcome == k) for k in ("evaluated", "skipped", "failed")}
    print(f"{folder}: {len(runs)} runs, " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    for run, outcome, text in lines:
        print(f"  {run}: " + (text if outcome == "evaluated" else f"{outcome}: {text}"))
    return 2 if counts["failed"] or not counts["evaluated"] else 0


def _eval_with_config(args: argparse.Namespace, config: Path, overrides: list[str]) -> int:
    """`fcc eval CONFIG --checkpoint FILE`: a checkpoint without a run directory, such as one the original
    FCC / bag-of-tricks code wrote (its key names are converted), evaluated as CONFIG's network and data."""
    from fcc_lt.config.load import load_config, parse_override
    from fcc_lt.evaluation.evaluate import evaluate_run, feature_stats_run

    if config.name == "config.yaml" and (config.parent / "checkpoints").is_dir():  # a run's own config file
        raise ConfigError(f"fcc eval {config}: that is the config of the run directory {config.parent}; evaluate "
                          f"the run: fcc eval {config.parent}"
                          + (f" --checkpoint {args.checkpoint}" if args.checkpoint != "last" else ""))
    if config.suffix in (".pt", ".pth"):  # a checkpoint named where its run (or a config) belongs
        run = config.parent.parent if config.parent.name == "checkpoints" else None
        if run is not None and (run / "config.yaml").is_file():
            which = config.stem if config.stem in ("last", "best") else config
            raise ConfigError(f"fcc eval {config}: that is a checkpoint of the run {run}; evaluate it with: "
                              f"fcc eval {run} --checkpoint {which}")
        raise ConfigError(f"fcc eval {config}: that is a checkpoint file; evaluate it with the config of its network "
                          f"and data: fcc eval CONFIG --checkpoint {config}")
    if args.checkpoint in ("last", "best"):
        raise ConfigError(f"fcc eval {config}: a config file has no checkpoints of its own; name the one to "
                          "evaluate with --checkpoint FILE (an fcc checkpoint or the original code's .pth)")
    if args.tau_sweep is not None:
        raise ConfigError("--tau-sweep works on run directories (it needs the run's validation split)")
    if not any(".".join(parse_override(o)[0]) == "out" for o in overrides):
        overrides = [*overrides, f"out=runs/eval/{config.stem}__{Path(args.checkpoint).stem}"]
    cfg = load_config(config, overrides)
    out = Path(str(cfg.out))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"out: cannot create {out}: {err.strerror or err}") from None
    if args.features:
        feature_stats_run(out, cfg, checkpoint=args.checkpoint, split=args.split, config_mode=True)
    else:
        evaluate_run(out, cfg, checkpoint=args.checkpoint, split=args.split, config_mode=True)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from fcc_lt.evaluation.predict import predict, write_csv
    from fcc_lt.evaluation.run_loader import load_run_config

    run_dir = Path(args.run)
    cfg = load_run_config(run_dir, [f"device={args.device}"] if args.device else [])
    rows = predict(run_dir, cfg, args.images, checkpoint=args.checkpoint, top_k=args.top_k,
                   batch_size=args.batch_size, strict=args.strict)
    out = Path(args.out) if args.out else run_dir / "predictions.csv"
    write_csv(rows, out)
    done = [row for row in rows if not row["error"]]
    skipped = [row for row in rows if row["error"]]
    for row in done[:10]:
        print(f"{row['path']}\t{row['names'][0]}\t{row['probs'][0]:.3f}")
    if len(done) > 10:
        print(f"... {len(done) - 10} more")
    if skipped:
        shown = "; ".join(f"{row['path']}: {row['error']}" for row in skipped[:5])
        more = f"; ... and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        print(f"warning: skipped {len(skipped)} of {len(rows)} images that could not be read (their rows in "
              f"{out} have an empty prediction and the reason in the error column; --strict stops at the "
              f"first instead): {shown}{more}", file=sys.stderr)
    print(f"wrote {len(done)} predictions{f' and {len(skipped)} skipped images' if skipped else ''} to {out}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a run's checkpoint -> eval_<checkpoint>_<split>.json (the run's own "
                       "eval.json, written by training, is never replaced)",
                       description="fcc eval RUN_DIR [overrides] | fcc eval FOLDER [overrides] (every finished "
                                   "run below it, e.g. a sweep; unfinished ones are skipped with a note) | "
                                   "fcc eval CONFIG --checkpoint FILE [overrides] (a checkpoint without a run "
                                   "directory, e.g. the original code's .pth)")
    p.add_argument("run", type=argtypes.path,
                   help="run directory, a folder of them, or a config (a file or a shipped config's name) with "
                        "--checkpoint FILE")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides of the run's config")
    p.add_argument("--checkpoint", default="last", type=argtypes.checkpoint,
                   help="last (default), best, or a checkpoint file")
    p.add_argument("--split", default="test", choices=["test", "val"],
                   help="the split to evaluate on (default test; val needs a validation split in the config)")
    p.add_argument("--device", help="device to evaluate on (default: the run's)")
    p.add_argument("--tau-sweep", metavar="TAUS",
                   help="tau-normalisation sweep: choose tau on --select-on, report it on --split; TAUS is "
                        "a list and/or ranges start:stop:step, e.g. 0:2:0.1 or 0,0.5,1")
    p.add_argument("--features", action="store_true",
                   help="write feature-cluster statistics (norms, within-class spread, centroid separation) "
                        "to features.json instead of accuracies")
    p.add_argument("--select-on", default="val", choices=["val", "test"],
                   help="split that chooses tau (default val; test only when given explicitly)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("predict", help="classify image files with a trained run -> CSV of top-k classes")
    p.add_argument("run", type=argtypes.path, help="run directory")
    p.add_argument("images", nargs="+", type=argtypes.path,
                   help="image files and/or folders (searched recursively)")
    p.add_argument("--checkpoint", default="last", type=argtypes.checkpoint,
                   help="last (default), best, or a checkpoint file")
    p.add_argument("--top-k", type=int_at_least(1), default=5,
                   help="classes per image (default 5; at most the run's number of classes)")
    p.add_argument("--batch-size", type=int_at_least(1), default=64,
                   help="images per forward pass (default 64)")
    p.add_argument("--out", type=argtypes.output_file, help="CSV file (default: RUN/predictions.csv)")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first image that cannot be read (default: skip it, list it in the CSV's "
                        "error column and in the summary)")
    p.add_argument("--device", help="device (default: the run's)")
    p.set_defaults(func=cmd_predict)
