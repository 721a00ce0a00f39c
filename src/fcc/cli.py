"""The `fcc` command: train, eval, predict, data, configs, report.

Errors meant for the user (bad config, missing data, unusable checkpoint) print one message and exit
with status 2 (3 for a diverged run, 128+N when stopped by signal N); anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from fcc import __version__
from fcc.errors import ConfigError, FccError


def _split_config_and_overrides(items: list[str]) -> tuple[str | None, list[str]]:
    if items and "=" not in items[0]:
        return items[0], items[1:]
    return None, items


def cmd_train(args: argparse.Namespace) -> int:
    from fcc.config import load_config
    from fcc.train import Trainer, load_run_config

    config_path, overrides = _split_config_and_overrides(args.items)
    if args.resume:
        if config_path is not None:
            raise ConfigError("--resume takes the run directory; its config.yaml is used, so give only "
                              "key=value overrides after it")
        cfg = load_run_config(Path(args.resume), overrides)
    else:
        cfg = load_config(config_path, overrides)
    Trainer(cfg, resume=bool(args.resume), overwrite=args.overwrite).fit()
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from fcc.evaluate import evaluate_run
    from fcc.train import load_run_config

    run_dir = Path(args.run)
    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"device={args.device}")
    cfg = load_run_config(run_dir, overrides)
    if args.tau_sweep is not None:
        from fcc.tau_norm import parse_taus, run_tau_sweep

        if cfg.eval.tau_norm is not None:
            raise ConfigError("--tau-sweep chooses eval.tau_norm itself; do not set it as well")
        run_tau_sweep(run_dir, cfg, parse_taus(args.tau_sweep), checkpoint=args.checkpoint,
                      select_on=args.select_on, report_on=args.split,
                      allow_test_selection=args.select_on == "test")
        return 0
    if args.features:
        from fcc.evaluate import feature_stats_run

        feature_stats_run(run_dir, cfg, checkpoint=args.checkpoint, split=args.split)
        return 0
    evaluate_run(run_dir, cfg, checkpoint=args.checkpoint, split=args.split)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from fcc.predict import predict, write_csv
    from fcc.train import load_run_config

    run_dir = Path(args.run)
    cfg = load_run_config(run_dir, [f"device={args.device}"] if args.device else [])
    rows = predict(run_dir, cfg, args.images, checkpoint=args.checkpoint, top_k=args.top_k,
                   batch_size=args.batch_size)
    out = Path(args.out) if args.out else run_dir / "predictions.csv"
    write_csv(rows, out)
    for row in rows[:10]:
        print(f"{row['path']}\t{row['names'][0]}\t{row['probs'][0]:.3f}")
    if len(rows) > 10:
        print(f"... {len(rows) - 10} more")
    print(f"wrote {len(rows)} predictions to {out}")
    return 0


def cmd_data_cifar_lt(args: argparse.Namespace) -> int:
    from fcc.data.cifar import long_tail_counts

    classes = {"cifar10": 10, "cifar100": 100}[args.dataset]
    max_per_class = args.max_per_class or 50000 // classes
    if args.imbalance < 1:
        raise ConfigError(f"--imbalance: expected a number >= 1, got {args.imbalance}")
    counts = long_tail_counts(classes, args.imbalance, max_per_class)
    print(f"# {args.dataset}-LT, imbalance factor {args.imbalance:g}, {max_per_class} images in the largest class")
    print("class\timages")
    for c, n in enumerate(counts):
        print(f"{c}\t{n}")
    print(f"total\t{sum(counts)}")
    return 0


def cmd_data_cam_generate(args: argparse.Namespace) -> int:
    from fcc.cam import generate
    from fcc.train import load_run_config

    run_dir = Path(args.run)
    cfg = load_run_config(run_dir, [f"device={args.device}"] if args.device else [])
    done = generate(run_dir, Path(args.out), cfg=cfg, checkpoint=args.checkpoint, cap=args.cap, seed=args.seed,
                    batch_size=args.batch_size, overwrite=args.overwrite)
    print(f"wrote {done['images']} images and {done['json']} (new images per class: {done['new_counts']})")
    print(f"stage 2: fcc train CONFIG data.extra_train_json={done['json']} "
          f"model.init_from={run_dir / 'checkpoints' / 'last.pt'}")
    return 0


def cmd_import_config(args: argparse.Namespace) -> int:
    from fcc.checkpoint import atomic_write_text
    from fcc.importer import import_config

    text, notes = import_config(Path(args.original))
    if args.out:
        atomic_write_text(Path(args.out), text)
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        print(f"wrote {args.out}; train it with: fcc train {args.out}")
    else:
        sys.stdout.write(text)
    return 0


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


def cmd_report(args: argparse.Namespace) -> int:
    from fcc.report import table

    sys.stdout.write(table([Path(r) for r in args.runs], fmt=args.format, eval_file=args.eval_file))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fcc", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fcc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train (and finally evaluate) a run",
                       description="fcc train CONFIG [key.sub=value ...] | fcc train --resume RUN_DIR")
    p.add_argument("items", nargs="*", metavar="CONFIG_OR_OVERRIDE",
                   help="a YAML config file, then key.sub=value overrides")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start afresh in an existing run directory")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a run's checkpoint and write eval.json")
    p.add_argument("run", help="run directory")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides of the run's config")
    p.add_argument("--checkpoint", default="last", help="last (default), best, or a checkpoint file")
    p.add_argument("--split", default="test", choices=["test", "val"])
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
    p.add_argument("run", help="run directory")
    p.add_argument("images", nargs="+", help="image files and/or folders (searched recursively)")
    p.add_argument("--checkpoint", default="last", help="last (default), best, or a checkpoint file")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", help="CSV file (default: RUN/predictions.csv)")
    p.add_argument("--device", help="device (default: the run's)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="tool", required=True)
    q = data_sub.add_parser("cifar-lt", help="print the per-class training counts of a long-tailed CIFAR")
    q.add_argument("--dataset", choices=["cifar10", "cifar100"], default="cifar10")
    q.add_argument("--imbalance", type=float, default=100.0, help="imbalance factor n_max/n_min")
    q.add_argument("--max-per-class", type=int, default=0, help="images of the largest class (default: all)")
    q.set_defaults(func=cmd_data_cifar_lt)

    q = data_sub.add_parser("cam-generate", help="CAM-based sampling: write CAM-augmented images of the small "
                            "classes from a stage-1 run, for a stage 2 with data.extra_train_json")
    q.add_argument("run", help="the stage-1 run directory")
    q.add_argument("--out", required=True, help="output folder (images/ and cam_train.json)")
    q.add_argument("--checkpoint", default="last", help="last (default), best, or a checkpoint file")
    q.add_argument("--cap", type=int, help="at most this many new images per class, none for classes of at "
                   "least this many images (default: no cap, n_max + n_min - n_c each)")
    q.add_argument("--seed", type=int, help="seed of the draws (default: the run's seed)")
    q.add_argument("--batch-size", type=int, default=256)
    q.add_argument("--device", help="device (default: the run's)")
    q.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    q.set_defaults(func=cmd_data_cam_generate)

    from fcc.data.commands import add_commands

    add_commands(data_sub)

    p = sub.add_parser("configs", help="list the shipped configs")
    p.add_argument("--root", help="configs folder (default: ./configs)")
    p.set_defaults(func=cmd_configs)

    p = sub.add_parser("import-config", help="convert a config of the original FCC / bag-of-tricks code")
    p.add_argument("original", help="the original code's YAML config")
    p.add_argument("-o", "--out", help="write the fcc config here (default: print it)")
    p.set_defaults(func=cmd_import_config)

    p = sub.add_parser("report", help="a results table from run directories")
    p.add_argument("runs", nargs="+")
    p.add_argument("--format", choices=["markdown", "csv"], default="markdown")
    p.add_argument("--eval-file", default="eval.json")
    p.set_defaults(func=cmd_report)
    return parser


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None,
                  line: Any = None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may follow options (`fcc train cfg.yaml --overwrite train.epochs=3`)
    stray = [e for e in extra if e.startswith("-") or "=" not in e]
    if stray or (extra and args.command not in ("train", "eval")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        if args.command == "train":
            args.items = [*args.items, *extra]
        else:
            args.overrides = [*args.overrides, *extra]
    warnings.showwarning = _show_warning
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return int(args.func(args))
    except FccError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `fcc configs | head`: the reader left; nothing is wrong
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's final flush quiet
        return 0
    finally:
        # after the handlers above dropped the exception (and with it any trainer its frames held)
        from fcc.distributed import cleanup

        cleanup()
