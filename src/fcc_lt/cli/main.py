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

from fcc_lt import __version__
from fcc_lt.cli import startup
from fcc_lt.util import argtypes
from fcc_lt.util.argtypes import int_at_least, number_at_least
from fcc_lt.util.errors import ConfigError, FccError


def _split_config_and_overrides(items: list[str]) -> tuple[str | None, list[str]]:
    if items and "=" not in items[0]:
        return items[0], items[1:]
    return None, items


def cmd_train(args: argparse.Namespace) -> int:
    from fcc_lt.config.load import load_config
    from fcc_lt.engine.trainer import Trainer
    from fcc_lt.evaluation.run_loader import load_run_config

    config_path, overrides = _split_config_and_overrides(args.items)
    if args.resume:
        if config_path is not None:
            raise ConfigError("--resume takes the run directory; its config.yaml is used, so give only "
                              "key=value overrides after it")
        if args.smoke:
            raise ConfigError("--smoke starts a short throw-away run from a config file; it cannot resume one")
        check_resume_overrides(overrides)
        cfg = load_run_config(Path(args.resume), overrides)
    elif config_path is None and not overrides:
        args.parser.print_usage(sys.stderr)
        print("fcc train: name a config file (`fcc configs` lists the shipped ones), e.g.\n"
              "  fcc train configs/cifar10_lt/ce_fcc_if100.yaml", file=sys.stderr)
        return 2
    elif args.smoke:
        from fcc_lt.config.schedule import ScheduleWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ScheduleWarning)  # a smoke run is short on purpose
            cfg = load_config(config_path, [*overrides, *smoke_overrides(config_path, overrides)])
        print(f"smoke run: {cfg.train.epochs} epochs of at most {cfg.train.max_steps_per_epoch} steps, "
              f"{cfg.eval.max_batches} evaluation batches, in {cfg.out}; it checks that every part of the config "
              "runs, its numbers mean nothing", file=sys.stderr)
    else:
        cfg = load_config(config_path, overrides)
    Trainer(cfg, resume=bool(args.resume), overwrite=args.overwrite or args.smoke).fit()
    return 0


SMOKE_EPOCHS, SMOKE_STEPS, SMOKE_BATCHES = 4, 2, 2


def smoke_overrides(config_path: str | None, overrides: list[str]) -> list[str]:
    """What ``--smoke`` adds: a few epochs (the schedule rescaled onto them, so that every deferred part,
    FCC, DRW, DRS and the LR drops, still acts), a few steps each, a few evaluation batches, its own folder.
    Keys the user gives win."""
    from fcc_lt.config.load import apply_overrides, parse_override, read_yaml

    given = {".".join(parse_override(o)[0]) for o in overrides}
    raw = apply_overrides(read_yaml(Path(config_path)) if config_path else {}, overrides)
    train = raw.get("train") or {}
    epochs = train.get("epochs", 200)
    extra = {"train.epochs": min(epochs, SMOKE_EPOCHS) if isinstance(epochs, int) else SMOKE_EPOCHS,
             "train.max_steps_per_epoch": SMOKE_STEPS, "eval.max_batches": SMOKE_BATCHES, "train.eval_every": 1,
             "out": f"runs/smoke/{Path(config_path).stem if config_path else 'default'}"}
    if train.get("schedule_epochs") is None and isinstance(epochs, int):
        extra["train.schedule_epochs"] = epochs  # rescale the config's epoch keys onto the smoke run
    return [f"{k}={v}" for k, v in extra.items() if k not in given]


RESUME_FIXED = ("data", "model", "seed", "out")


def check_resume_overrides(overrides: list[str]) -> None:
    """Overrides that cannot apply to a run half done: its data and network are in its checkpoint, its
    random streams come from its seed."""
    from fcc_lt.config.load import parse_override

    for text in overrides:
        key = ".".join(parse_override(text)[0])
        if key.split(".")[0] in RESUME_FIXED:
            what = {"data": "its training set", "model": "its network", "seed": "its random streams",
                    "out": "its run directory"}[key.split(".")[0]]
            raise ConfigError(f"override {text!r}: {key} cannot change when resuming (the run's checkpoint "
                              f"holds {what}); start a new run from its config.yaml instead: fcc train "
                              f"RUN/config.yaml {text} out=NEW_RUN")


def cmd_config(args: argparse.Namespace) -> int:
    from fcc_lt.config.explain import explain, render

    config_path, overrides = _split_config_and_overrides(args.items)
    _, rows = explain(config_path, overrides)
    sys.stdout.write(render(rows))
    print(f"# valid: {config_path or 'the defaults'} with {len(overrides)} override(s) passes every check "
          "made before training (data files are read only when training starts)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from fcc_lt.evaluation.evaluate import evaluate_run
    from fcc_lt.evaluation.run_loader import load_run_config

    run_dir = Path(args.run)
    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"device={args.device}")
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
    print(f"wrote {out}/", file=sys.stderr)
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


def cmd_data_cifar_lt(args: argparse.Namespace) -> int:
    from fcc_lt.data.cifar import long_tail_counts

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
    empty = [c for c, n in enumerate(counts) if n == 0]
    if empty:
        print(f"warning: classes {empty} get no images: with {max_per_class} images in the largest class the "
              f"imbalance factor can be at most {max_per_class} (--imbalance)", file=sys.stderr)
    return 0


def cmd_data_cam_generate(args: argparse.Namespace) -> int:
    from fcc_lt.evaluation.run_loader import load_run_config
    from fcc_lt.methods.cam import generate

    run_dir = Path(args.run)
    cfg = load_run_config(run_dir, [f"device={args.device}"] if args.device else [])
    done = generate(run_dir, Path(args.out), cfg=cfg, checkpoint=args.checkpoint, cap=args.cap, seed=args.seed,
                    batch_size=args.batch_size, overwrite=args.overwrite)
    print(f"wrote {done['images']} images and {done['json']} (new images per class: {done['new_counts']})")
    print(f"stage 2: fcc train CONFIG data.extra_train_json={done['json']} "
          f"model.init_from={run_dir / 'checkpoints' / 'last.pt'}")
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


def cmd_sweep(args: argparse.Namespace) -> int:
    from fcc_lt.experiments.sweep.plan import SweepOptions, parse_gpus, run_sweep

    slurm = {"partition": args.slurm_partition, "time": args.slurm_time, "gpus": args.slurm_gpus,
             "cpus": args.slurm_cpus, "mem_gb": args.slurm_mem_gb, "account": args.slurm_account}
    options = SweepOptions(parallel=args.parallel, dry_run=args.dry_run, rerun_changed=args.rerun_changed,
                           executor=args.executor, gpus=parse_gpus(args.gpus), no_wait=args.no_wait, slurm=slurm)
    return run_sweep(Path(args.spec), options)


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
    from fcc_lt.experiments.report import FORMATS, build_report, write_report_dir

    report = build_report(args.runs, args.group_by, args.eval_file)
    sys.stdout.write(FORMATS[args.format](report))
    if args.out:
        from fcc_lt.experiments.plots import plot_report

        for path in [*write_report_dir(report, Path(args.out)), *plot_report(report, Path(args.out))]:
            print(f"wrote {path}", file=sys.stderr)
    return 0


def _plot_out(args: argparse.Namespace) -> Path:
    """--out, or the one folder named (a run directory, or a folder of runs as the report directory)."""
    if args.out:
        return Path(args.out)
    if len(args.runs) == 1:
        if not Path(args.runs[0]).is_dir():
            raise ConfigError(f"{args.runs[0]}: no such directory")
        return Path(args.runs[0])
    raise ConfigError("--out DIR: needed when plotting several run directories (where to write the figures)")


def cmd_plot(args: argparse.Namespace) -> int:
    from fcc_lt.experiments import plots
    from fcc_lt.experiments.report import find_run_dirs

    if not args.runs:
        raise ConfigError(f"fcc plot {args.kind}: name one or more run directories")
    skipped: list[str] = []
    if args.kind in ("per-class", "clusters"):
        written, skipped = plots.grouped_plot(args.kind, args.runs, _plot_out(args), args.group_by, args.eval_file)
    elif args.kind == "curves":
        written, skipped = plots.curves_plot(args.runs, _plot_out(args))
    elif args.kind == "confusion":
        runs = find_run_dirs(args.runs)
        if len(runs) != 1:
            raise ConfigError(f"fcc plot confusion: expected one run directory, found {len(runs)}")
        written = plots.plot_confusion_run(runs[0], Path(args.out) if args.out else runs[0], args.blocks,
                                           args.eval_file)
    else:
        runs = find_run_dirs(args.runs)
        written = plots.plot_feature_projection(runs, _plot_out(args),
                                                args.projection, args.max_points, args.seed)
    for line in skipped:
        print(f"note: {line}", file=sys.stderr)
    for path in written:
        print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fcc", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fcc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train (and finally evaluate) a run",
                       description="fcc train CONFIG [key.sub=value ...] | fcc train --resume RUN_DIR")
    p.add_argument("items", nargs="*", metavar="CONFIG_OR_OVERRIDE",
                   help="a YAML config file, then key.sub=value overrides")
    p.add_argument("--resume", metavar="RUN_DIR", type=argtypes.path,
                   help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start afresh in an existing run directory")
    p.add_argument("--smoke", action="store_true",
                   help=f"a throw-away check that every part of the config runs: {SMOKE_EPOCHS} epochs (the "
                        f"schedule rescaled onto them) of {SMOKE_STEPS} steps, {SMOKE_BATCHES} evaluation "
                        "batches, in runs/smoke/<config name>")
    p.set_defaults(func=cmd_train, parser=p)

    p = sub.add_parser("config", help="print the resolved config with where each value came from, and check it",
                       description="fcc config CONFIG [key.sub=value ...]: the config a `fcc train` with the same "
                                   "arguments would run, validated, without training")
    p.add_argument("items", nargs="*", metavar="CONFIG_OR_OVERRIDE",
                   help="a YAML config file, then key.sub=value overrides")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("eval", help="evaluate a run's checkpoint and write eval.json",
                       description="fcc eval RUN_DIR [overrides] | fcc eval CONFIG --checkpoint FILE [overrides] "
                                   "(a checkpoint without a run directory, e.g. the original code's .pth)")
    p.add_argument("run", type=argtypes.path, help="run directory, or a config file with --checkpoint FILE")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides of the run's config")
    p.add_argument("--checkpoint", default="last", type=argtypes.checkpoint,
                   help="last (default), best, or a checkpoint file")
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
    p.add_argument("run", type=argtypes.path, help="run directory")
    p.add_argument("images", nargs="+", type=argtypes.path,
                   help="image files and/or folders (searched recursively)")
    p.add_argument("--checkpoint", default="last", type=argtypes.checkpoint,
                   help="last (default), best, or a checkpoint file")
    p.add_argument("--top-k", type=int_at_least(1), default=5,
                   help="classes per image (default 5; at most the run's number of classes)")
    p.add_argument("--batch-size", type=int_at_least(1), default=64)
    p.add_argument("--out", type=argtypes.output_file, help="CSV file (default: RUN/predictions.csv)")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first image that cannot be read (default: skip it, list it in the CSV's "
                        "error column and in the summary)")
    p.add_argument("--device", help="device (default: the run's)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="tool", required=True)
    q = data_sub.add_parser("cifar-lt", help="print the per-class training counts of a long-tailed CIFAR")
    q.add_argument("--dataset", choices=["cifar10", "cifar100"], default="cifar10")
    q.add_argument("--imbalance", type=number_at_least(1), default=100.0, help="imbalance factor n_max/n_min")
    q.add_argument("--max-per-class", type=int_at_least(0), default=0,
                   help="images of the largest class (default: all)")
    q.set_defaults(func=cmd_data_cifar_lt)

    q = data_sub.add_parser("cam-generate", help="CAM-based sampling: write CAM-augmented images of the small "
                            "classes from a stage-1 run, for a stage 2 with data.extra_train_json")
    q.add_argument("run", type=argtypes.path, help="the stage-1 run directory")
    q.add_argument("--out", required=True, type=argtypes.path,
                   help="output folder (images/ and cam_train.json)")
    q.add_argument("--checkpoint", default="last", type=argtypes.checkpoint,
                   help="last (default), best, or a checkpoint file")
    q.add_argument("--cap", type=int_at_least(1), help="at most this many new images per class, none for "
                   "classes of at least this many images (default: no cap, n_max + n_min - n_c each)")
    q.add_argument("--seed", type=int_at_least(0), help="seed of the draws (default: the run's seed)")
    q.add_argument("--batch-size", type=int_at_least(1), default=256)
    q.add_argument("--device", help="device (default: the run's)")
    q.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    q.set_defaults(func=cmd_data_cam_generate)

    from fcc_lt.cli.data import add_commands

    add_commands(data_sub)

    p = sub.add_parser("sweep", help="train a grid of configs x overrides x seeds, resumably, several at a time "
                       "or on SLURM", description="fcc sweep SPEC.yaml: every run is an ordinary run directory "
                       "OUT/<config>[__<key>-<value>...]__seed<S>; running it again skips finished runs and resumes "
                       "stopped ones. See docs/sweeps.md.")
    p.add_argument("spec", type=argtypes.path, help="the sweep spec (YAML: out, configs, seeds, overrides, grid, "
                   "slurm)")
    p.add_argument("-j", "--parallel", type=int_at_least(1), metavar="N",
                   help="runs at once (default 1; on SLURM the most jobs running at once, default no limit); "
                        "locally each run gets max(1, cores // N) CPU threads and all share the GPU")
    p.add_argument("--dry-run", action="store_true", help="list the runs, their states and commands; train nothing")
    p.add_argument("--rerun-changed", action="store_true",
                   help="train runs whose directory holds another config than the spec asks for again from "
                        "scratch (default: refuse, naming the differing keys)")
    p.add_argument("--gpus", metavar="IDS", help="comma-separated GPU ids the parallel runs take in turn "
                   "(CUDA_VISIBLE_DEVICES); default: every run sees the GPUs this command sees")
    p.add_argument("--executor", choices=["process", "slurm", "local"], default="process",
                   help="process: child processes here (default); slurm: SLURM jobs through submitit "
                        "(pip install 'fcc-lt[slurm]'); local: submitit's local executor (the SLURM path, on this "
                        "machine)")
    p.add_argument("--no-wait", action="store_true", help="with --executor slurm: submit and return")
    p.add_argument("--slurm-partition", metavar="NAME", help="SLURM partition (over the spec's slurm.partition)")
    p.add_argument("--slurm-time", metavar="TIME", help="time limit per run, e.g. 4:00:00 or 1-00:00:00 (required "
                   "for slurm; a run that reaches it saves a checkpoint and is requeued)")
    p.add_argument("--slurm-gpus", type=int_at_least(0, 1), metavar="N",
                   help="GPUs per run, 0 or 1 (default 1 on SLURM)")
    p.add_argument("--slurm-cpus", type=int_at_least(1), metavar="N",
                   help="CPUs per run (--cpus-per-task; also its OMP_NUM_THREADS)")
    p.add_argument("--slurm-mem-gb", type=number_at_least(0.001), metavar="GB", help="memory per run in GB")
    p.add_argument("--slurm-account", metavar="NAME", help="SLURM account")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("configs", help="list the shipped configs")
    p.add_argument("--root", help="configs folder (default: ./configs)")
    p.set_defaults(func=cmd_configs)

    p = sub.add_parser("import-config", help="convert a config of the original FCC / bag-of-tricks code")
    p.add_argument("original", type=argtypes.path, help="the original code's YAML config")
    p.add_argument("-o", "--out", type=argtypes.output_file, help="write the fcc config here (default: print it)")
    p.set_defaults(func=cmd_import_config)

    p = sub.add_parser("report", help="results of run directories: seeds grouped (mean, sd), FCC's paired gain "
                       "with a 95%% t-interval", description="fcc report DIR... [--group-by KEYS] "
                       "[--format md|csv|json]; DIR is a run directory or a folder of them (see docs/reports.md)")
    p.add_argument("runs", nargs="*", metavar="DIR", help="run directories, or folders searched for them")
    p.add_argument("--group-by", metavar="KEYS",
                   help="group by these comma-separated keys instead of 'everything but the seed': dataset, "
                        "imbalance_factor, backbone, epochs, method, fcc, seed, or config keys such as train.lr")
    p.add_argument("--format", choices=["md", "markdown", "csv", "json"], default="md")
    p.add_argument("--eval-file", default="eval.json", help="the result file of each run (default eval.json)")
    p.add_argument("--out", metavar="DIR", help="also write report.md/.csv/.json and the group figures into DIR")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("plot", help="figures (PNG and PDF) from run directories",
                       description="per-class accuracy, training curves, ranked confusion, feature projection, "
                                   "feature-cluster statistics (see docs/reports.md)")
    plot_sub = p.add_subparsers(dest="kind", required=True)
    kinds = {"per-class": "per-class test accuracy against training count, one line per group, seeds as bands",
             "curves": "training loss, train/test accuracy and learning rate of one or several runs",
             "confusion": "a run's confusion matrix in rank order, row-normalised, blocks above 30 classes",
             "features": "2-D projection of the test features (features.npz) of one or several runs",
             "clusters": "per-class spread / nearest-centre distance and feature norms against class rank"}
    for kind, text in kinds.items():
        q = plot_sub.add_parser(kind, help=text, description=text)
        q.add_argument("runs", nargs="*", metavar="DIR", help="run directories, or folders searched for them")
        q.add_argument("--out", metavar="DIR", help="folder for the figures (default: the one DIR named)")
        if kind in ("per-class", "clusters"):
            q.add_argument("--group-by", metavar="KEYS", help="as for fcc report")
        if kind in ("per-class", "clusters", "confusion"):
            q.add_argument("--eval-file", default="eval.json")
        if kind == "confusion":
            q.add_argument("--blocks", type=int, help="number of blocks of class ranks (default: one per class "
                           "up to 30 classes, else 30)")
        if kind == "features":
            q.add_argument("--projection", choices=["pca", "tsne", "umap"], default="pca",
                           help="pca (default, always available); tsne needs scikit-learn, umap umap-learn")
            q.add_argument("--max-points", type=int, default=5000, help="test samples drawn per run (default 5000)")
            q.add_argument("--seed", type=int, default=0, help="seed of the sample drawn and of t-SNE/UMAP")
        q.set_defaults(func=cmd_plot)
    return parser


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None,
                  line: Any = None) -> None:
    print(f"warning: {message}", file=sys.stderr)


# Commands that never import torch: they start without paying (or guarding) its import.
_WITHOUT_TORCH = {"configs", "report", "plot"}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may follow options (`fcc train cfg.yaml --overwrite train.epochs=3`)
    stray = [e for e in extra if e.startswith("-") or "=" not in e]
    if stray or (extra and args.command not in ("train", "eval", "config")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        if args.command in ("train", "config"):
            args.items = [*args.items, *extra]
        else:
            args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one command; user errors are one line and an exit status, never a traceback.

    Start-up (parsing, and importing torch for the commands that use it) runs under ``fcc_lt.cli.startup``'s
    guard, so Ctrl-C there exits 130 at once instead of interrupting torch's native initialisation
    (which crashes the process); the command itself runs with Python's usual KeyboardInterrupt.
    """
    previous = startup.guard()
    try:
        args = _parse(argv)
        warnings.showwarning = _show_warning
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        if args.command not in _WITHOUT_TORCH:
            import torch  # noqa: F401 - imported here, under the guard, rather than inside the command
    finally:
        startup.release(previous)
    try:
        return int(args.func(args))
    except FccError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return startup.EXIT_INTERRUPTED
    except BrokenPipeError:  # `fcc configs | head`: the reader left; nothing is wrong
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's final flush quiet
        return 0
    finally:
        # after the handlers above dropped the exception (and with it any trainer its frames held);
        # a command that never imported fcc_lt.util.distributed has nothing to clean up, and importing it here
        # could be the first import of torch, outside the start-up guard
        if "fcc_lt.util.distributed" in sys.modules:
            from fcc_lt.util.distributed import cleanup

            cleanup()
