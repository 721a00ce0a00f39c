"""`fcc sweep`, `fcc report` and `fcc plot`: many runs at once."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fcc_lt.util import argtypes
from fcc_lt.util.argtypes import int_at_least, number_at_least
from fcc_lt.util.errors import ConfigError

SHORT_HELP = ("also count (and plot) runs whose schedule cannot mean what their config means: steps capped by "
              "train.max_steps_per_epoch, or a schedule too short for its LR drops and deferred parts (marked †)")


def eval_file_name(text: str) -> str:
    """--eval-file: the name of a result file inside each run directory (eval_last_test.json), not a path."""
    argtypes.path(text)
    if "/" in text or "\\" in text or text in (".", "..") or not text.endswith(".json"):
        raise argparse.ArgumentTypeError(f"expected the name of a result file in each run directory, such as "
                                         f"eval_last_test.json, got {text!r}")
    return text


def cmd_sweep(args: argparse.Namespace) -> int:
    from fcc_lt.config.recipes import resolve_sweep
    from fcc_lt.experiments.sweep.command import SweepOptions, parse_gpus, run_sweep

    slurm = {"partition": args.slurm_partition, "time": args.slurm_time, "gpus": args.slurm_gpus,
             "cpus": args.slurm_cpus, "mem_gb": args.slurm_mem_gb, "account": args.slurm_account}
    options = SweepOptions(parallel=args.parallel, dry_run=args.dry_run, rerun_changed=args.rerun_changed,
                           executor=args.executor, gpus=parse_gpus(args.gpus), no_wait=args.no_wait, slurm=slurm,
                           max_runs=args.max_runs)
    return run_sweep(resolve_sweep(args.spec), options)


def cmd_report(args: argparse.Namespace) -> int:
    from fcc_lt.experiments.report import FORMATS, build_report, write_report_dir

    report = build_report(args.runs, args.group_by, args.eval_file, args.include_short)
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
    from fcc_lt.experiments.run_folder import find_run_dirs

    if not args.runs:
        raise ConfigError(f"fcc plot {args.kind}: name one or more run directories")
    skipped: list[str] = []
    if args.kind in ("per-class", "clusters", "margins", "scale"):
        written, skipped = plots.grouped_plot(args.kind, args.runs, _plot_out(args), args.group_by, args.eval_file,
                                              args.include_short)
    elif args.kind == "curves":
        written, skipped = plots.curves_plot(args.runs, _plot_out(args), args.include_short)
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


def add_sweep_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="train a grid of configs x overrides x seeds, resumably, several at a time "
                       "or on SLURM", description="fcc sweep SPEC: every run is an ordinary run directory "
                       "OUT/<config>[__<key>-<value>...]__seed<S>; running it again skips finished runs and resumes "
                       "stopped ones. See docs/sweeps.md.")
    p.add_argument("spec", type=argtypes.path,
                   help="the sweep spec: a YAML file (out, configs, seeds, overrides, grid, slurm), or the name of a "
                        "shipped one such as cifar10_lt_ce_vs_fcc (`fcc configs --sweeps` lists "
                        "them; a file of that path wins)")
    p.add_argument("-j", "--parallel", type=int_at_least(1), metavar="N",
                   help="runs at once (default 1; on SLURM the most jobs running at once, default no limit); "
                        "locally each run gets max(1, cores // N) CPU threads and all share the GPU")
    p.add_argument("--dry-run", action="store_true", help="list the runs, their states and commands; train nothing")
    p.add_argument("--max-runs", type=int_at_least(1), default=1000, metavar="N",
                   help="refuse a spec that makes more than N runs (default 1000), counted before anything is "
                        "expanded")
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


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="results of run directories: seeds grouped (mean, sd), FCC's paired gain "
                       "with a 95%% t-interval", description="fcc report DIR... [--group-by KEYS] "
                       "[--format md|csv|json]; DIR is a run directory or a folder of them (see docs/reports.md)")
    p.add_argument("runs", nargs="*", metavar="DIR", type=argtypes.path,
                   help="run directories, or folders searched for them")
    p.add_argument("--group-by", metavar="KEYS",
                   help="group by these comma-separated keys instead of 'everything but the seed': dataset, "
                        "imbalance_factor, backbone, epochs, method, fcc, seed, or config keys such as train.lr")
    p.add_argument("--format", choices=["md", "markdown", "csv", "json"], default="md",
                   help="what goes to stdout: a markdown table (default md), CSV or JSON")
    p.add_argument("--eval-file", default="eval.json", type=eval_file_name,
                   help="the result file of each run (default eval.json, the run's own; e.g. eval_last_test.json "
                        "for what `fcc eval RUN` wrote)")
    p.add_argument("--out", metavar="DIR", help="also write report.md/.csv/.json and the group figures into DIR")
    p.add_argument("--include-short", action="store_true", help=SHORT_HELP)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("plot", help="figures (PNG and PDF) from run directories",
                       description="per-class accuracy, training curves, ranked confusion, feature projection, "
                                   "feature-cluster statistics (see docs/reports.md)")
    plot_sub = p.add_subparsers(dest="kind", required=True)
    kinds = {"per-class": "per-class test accuracy against training count, one line per group, seeds as bands",
             "curves": "training loss, train/test accuracy and learning rate of one or several runs",
             "confusion": "a run's confusion matrix in rank order, row-normalised, blocks above 30 classes",
             "features": "2-D projection of the test features (features.npz) of one or several runs",
             "clusters": "per-class spread / nearest-centre distance and feature norms against class rank",
             "margins": "margin distributions by shot group (analysis.json of `fcc analyze`), one line per group",
             "scale": "test accuracy against a common feature scale, with and without the bias (analysis.json)"}
    for kind, text in kinds.items():
        q = plot_sub.add_parser(kind, help=text, description=text)
        q.add_argument("runs", nargs="*", metavar="DIR", type=argtypes.path,
                       help="run directories, or folders searched for them")
        q.add_argument("--out", metavar="DIR", help="folder for the figures (default: the one DIR named)")
        if kind in ("per-class", "clusters", "margins", "scale"):
            q.add_argument("--group-by", metavar="KEYS", help="as for fcc report")
        if kind in ("per-class", "clusters", "curves", "margins", "scale"):
            q.add_argument("--include-short", action="store_true", help=SHORT_HELP)
        if kind in ("per-class", "clusters", "confusion", "margins", "scale"):
            q.add_argument("--eval-file", default="eval.json", type=eval_file_name,
                           help="the result file of each run (default eval.json; as for fcc report)")
        if kind == "confusion":
            q.add_argument("--blocks", type=int_at_least(1), help="number of blocks of class ranks (default: one "
                           "per class up to 30 classes, else 30)")
        if kind == "features":
            q.add_argument("--projection", choices=["pca", "tsne", "umap"], default="pca",
                           help="pca (default, always available); tsne needs scikit-learn, umap umap-learn")
            q.add_argument("--max-points", type=int_at_least(3), default=5000,
                           help="test samples drawn per run (default 5000)")
            q.add_argument("--seed", type=int_at_least(0), default=0, help="seed of the sample drawn and of t-SNE/UMAP")
        q.set_defaults(func=cmd_plot)
