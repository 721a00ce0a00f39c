"""`fcc eval` and `fcc predict`: a trained run (or a config with a checkpoint file) -> eval files, predictions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fcc_lt.util import argtypes
from fcc_lt.util.argtypes import int_at_least
from fcc_lt.util.errors import ConfigError


def cmd_eval(args: argparse.Namespace) -> int:
    from fcc_lt.evaluation.evaluate import evaluate_run
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
    cfg = load_run_config(run_dir, overrides)
    if args.tau_sweep is not None:
        from fcc_lt.evaluation.tau_sweep import parse_taus, run_tau_sweep

        if cfg.eval.tau_norm is not None:
            raise ConfigError("--tau-sweep chooses eval.tau_norm itself; do not set it as well")
        run_tau_sweep(run_dir, cfg, parse_taus(args.tau_sweep), checkpoint=args.checkpoint,
                      select_on=args.select_on, report_on=args.split,
                      allow_test_selection=args.select_on == "test")
        return 0
    if args.features:
        from fcc_lt.evaluation.evaluate import feature_stats_run

        feature_stats_run(run_dir, cfg, checkpoint=args.checkpoint, split=args.split)
        return 0
    evaluate_run(run_dir, cfg, checkpoint=args.checkpoint, split=args.split)
    return 0


def _eval_with_config(args: argparse.Namespace, config: Path, overrides: list[str]) -> int:
    """`fcc eval CONFIG --checkpoint FILE`: a checkpoint without a run directory, such as one the original
    FCC / bag-of-tricks code wrote (its key names are converted), evaluated as CONFIG's network and data."""
    from fcc_lt.config.load import load_config, parse_override
    from fcc_lt.evaluation.evaluate import evaluate_run, feature_stats_run

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
                       description="fcc eval RUN_DIR [overrides] | fcc eval CONFIG --checkpoint FILE [overrides] "
                                   "(a checkpoint without a run directory, e.g. the original code's .pth)")
    p.add_argument("run", type=argtypes.path,
                   help="run directory, or a config (a file or a shipped config's name) with --checkpoint FILE")
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
