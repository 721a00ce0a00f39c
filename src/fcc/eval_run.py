"""Evaluating runs: a model and a split -> tallies (fcc.evaluate) -> the run directory's files
(fcc.eval_files). Used by the trainer's final evaluation and by `fcc eval` (also --features and
--tau-sweep).

The tau sweep evaluates a list of taus in one pass over the selection split, picks the tau with the best
top-1 there (the first in the list on ties), and reports the chosen tau on the report split. Selecting on
the test split is refused unless asked for explicitly: a tau chosen on test numbers makes those numbers
optimistic; a run trained without a validation split cannot draw one afterwards (it would overlap its
training images)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from fcc.class_stats import ClassStats
from fcc.config import Config
from fcc.data.build import build_eval_loader, build_splits
from fcc.data.datasets import DataSplits
from fcc.data.loader import EvalLoader
from fcc.distributed import DistContext, barrier, setup
from fcc.errors import ConfigError, DataError, OutputError
from fcc.eval_files import format_summary, write_eval_outputs, write_features_npz, write_json
from fcc.evaluate import run_eval, run_feature_stats
from fcc.metrics import ClassificationTally, feature_summary, summarize
from fcc.precision import autocast_dtype
from fcc.run_status import is_locked
from fcc.runs import LoadedRun, load_run, load_run_config
from fcc.tau_norm import eval_view, sweep_tallies


def evaluate_to_files(run_dir: Path, cfg: Config, network: nn.Module, stats: ClassStats, class_names: Sequence[str],
                      loader: EvalLoader, ctx: DistContext, *, split: str, info: dict[str, Any],
                      amp_dtype: torch.dtype | None = None, stem: str = "eval") -> dict[str, Any]:
    """Evaluate ``network`` (tau-normalised when ``eval.tau_norm`` is set) on ``loader``'s split and write
    ``<stem>.json`` plus confusion files (rank 0); shot groups come from the protocol's counts."""
    model = eval_view(network, cfg.eval.tau_norm)
    if cfg.eval.tau_norm is not None:
        info = {**info, "tau_norm": cfg.eval.tau_norm}
    if cfg.eval.max_batches is not None:  # a smoke run: the numbers cover part of the split only
        info = {**info, "max_batches": cfg.eval.max_batches, "smoke": True}
    tally = run_eval(model, loader, stats.num_classes, ctx, amp_dtype, max_batches=cfg.eval.max_batches)
    result: dict[str, Any] = {}
    if ctx.is_main:
        e = cfg.eval
        selected = "validation split (best.pt)" if info.get("checkpoint", "").endswith("best.pt") else \
            "none: the checkpoint's own epoch"
        info = {**info, "split": split, "selected_on": selected, "units": "percent"}
        result = write_eval_outputs(run_dir, tally, stats.train_counts, class_names, info,
                                    many_min=e.many_shot_min, few_max=e.few_shot_max,
                                    png_max_classes=e.confusion_png_max_classes, stem=stem)
        tqdm.write(f"{split} ({info['checkpoint']}, epoch {info.get('epoch')}): {format_summary(result)}")
    barrier(ctx)
    return result


def _check_not_training(run_dir: Path) -> None:
    if is_locked(run_dir):
        raise OutputError(f"{run_dir} is in use by another fcc process (training or resuming); its checkpoint "
                          "changes under you and an eval.json written now would be reported as the run's "
                          "result: wait for it to finish (or stop it) and evaluate then")


def _open_run(run_dir: Path, cfg: Config, checkpoint: str, config_mode: bool = False
              ) -> tuple[DistContext, DataSplits, LoadedRun, ClassStats]:
    """The context, the data, the loaded run (plain network, tau applied by the caller) and its statistics.

    ``config_mode``: ``checkpoint`` is a file evaluated with ``cfg`` (e.g. the original code's .pth, which
    holds no config), and ``run_dir`` only receives the files.
    """
    _check_not_training(run_dir)
    ctx = setup(cfg.device)
    if config_mode:
        run = load_run(checkpoint, what="fcc eval --checkpoint", device=ctx.device, tau_norm=False, config=cfg)
    else:
        run = load_run(run_dir, checkpoint, what="fcc eval", device=ctx.device, tau_norm=False)
    run.config = cfg  # the caller's (possibly overridden) config of this run
    splits = build_splits(cfg)
    stats = run.stats or splits.stats
    if splits.num_classes != stats.num_classes:
        raise DataError(f"{run_dir}: the checkpoint was trained for {stats.num_classes} classes, but the data of "
                        f"its config ({splits.name}) has {splits.num_classes}")
    return ctx, splits, run, stats


def evaluate_run(run_dir: Path, cfg: Config, checkpoint: str = "last", split: str = "test",
                 config_mode: bool = False) -> dict[str, Any]:
    """`fcc eval`: load a run's checkpoint, evaluate it, write the eval files.

    The default (last checkpoint, test split, the run's own tau-normalisation) writes eval.json; any other
    choice writes eval_<checkpoint>_<split>[_tau<t>].json so the run's own final numbers are never overwritten.
    In ``config_mode`` (a checkpoint file evaluated with a config, into a folder of its own) it is eval.json.
    """
    ctx, splits, run, stats = _open_run(run_dir, cfg, checkpoint, config_mode)
    tau = cfg.eval.tau_norm
    default = config_mode or (checkpoint == "last" and split == "test" and tau == _saved_tau(run_dir))
    stem = "eval" if default else f"eval_{Path(checkpoint).stem}_{split}" + (f"_tau{tau:g}" if tau is not None else "")
    loader = build_eval_loader(cfg, splits, splits.split(split), ctx)
    info = {"checkpoint": run.shown_path(), "epoch": run.epoch}
    return evaluate_to_files(run_dir, cfg, run.network, stats, run.class_names or splits.class_names, loader, ctx,
                             split=split, info=info, amp_dtype=autocast_dtype(cfg.train.amp, ctx.device), stem=stem)


def _saved_tau(run_dir: Path) -> float | None:
    return load_run_config(run_dir).eval.tau_norm


def feature_stats_run(run_dir: Path, cfg: Config, checkpoint: str = "last", split: str = "test",
                      config_mode: bool = False) -> dict[str, Any]:
    """`fcc eval --features`: cluster statistics of a checkpoint's features -> features[_<ckpt>_<split>].json,
    and the features themselves -> features[...].npz."""
    ctx, splits, run, stats = _open_run(run_dir, cfg, checkpoint, config_mode)
    loader = build_eval_loader(cfg, splits, splits.split(split), ctx)
    tally, kept = run_feature_stats(run.network, loader, stats.num_classes, ctx,
                                    autocast_dtype(cfg.train.amp, ctx.device), keep=True)
    result: dict[str, Any] = {}
    if ctx.is_main:
        e = cfg.eval
        names = run.class_names or splits.class_names
        result = {"checkpoint": run.shown_path(), "epoch": run.epoch, "split": split,
                  **feature_summary(tally, stats.train_counts, e.many_shot_min, e.few_shot_max)}
        default = config_mode or (checkpoint == "last" and split == "test")
        stem = "features" if default else f"features_{Path(checkpoint).stem}_{split}"
        write_json(run_dir / f"{stem}.json", result)
        assert kept is not None
        write_features_npz(run_dir / f"{stem}.npz", kept[0], kept[1], stats.train_counts, names)
        tqdm.write(f"{split} features ({result['checkpoint']}): mean norm {result['mean_norm']:.4g}, within-class "
                   f"spread {result['within_class_spread']:.4g}, centroid separation "
                   f"{result['centroid_separation']:.4g}, compactness {result['compactness']:.4g}; "
                   f"features in {stem}.npz")
    barrier(ctx)
    return result


# ------------------------------------------------------------------------------------------ tau sweep


def _check_selection_split(run_dir: Path, cfg: Config, select_on: str) -> None:
    """A tau chosen on 'validation' images the run trained on would be chosen on training data."""
    if select_on != "val":
        return
    own = load_run_config(run_dir).data
    d = cfg.data
    if own.val_per_class == 0 and own.val_json is None:
        raise ConfigError(f"--tau-sweep: {run_dir} was trained without a validation split, so a validation split "
                          "drawn now (data.val_per_class) would take images it trained on; train with "
                          "data.val_per_class > 0 (or data.val_json) to choose tau on held-out images, or choose "
                          "on the test split explicitly with --select-on test")
    if (own.val_per_class, own.val_json, own.subset_seed) != (d.val_per_class, d.val_json, d.subset_seed):
        raise ConfigError("--tau-sweep: data.val_per_class / data.val_json / data.subset_seed differ from the run's "
                          "own; the validation split would then overlap its training images. Leave them as trained")


def run_tau_sweep(run_dir: Path, cfg: Config, taus: Sequence[float], *, checkpoint: str = "last",
                  select_on: str = "val", report_on: str = "test", allow_test_selection: bool = False
                  ) -> dict[str, Any]:
    """`fcc eval RUN --tau-sweep ...`: choose tau on ``select_on``, report it on ``report_on``.

    Writes ``tau_sweep.json`` (every tau's metrics on the selection split, the chosen tau and the
    reported result) and ``eval_tau_sweep.json`` plus confusion files (the report split at the chosen
    tau). Returns the content of tau_sweep.json.
    """
    if select_on == "test" and not allow_test_selection:
        raise ConfigError("--tau-sweep: choosing tau on the test split makes the test numbers optimistic; "
                          "select on a validation split (data.val_per_class > 0 for CIFAR), or pass "
                          "--select-on test explicitly to do it anyway")
    _check_selection_split(run_dir, cfg, select_on)
    taus = list(taus)
    ctx = setup(cfg.device)
    run = load_run(run_dir, checkpoint, what="fcc eval --tau-sweep", device=ctx.device, tau_norm=False)
    splits = build_splits(cfg)
    stats = run.stats or splits.stats
    counts = stats.train_counts
    names = run.class_names or splits.class_names
    info = {"checkpoint": run.shown_path(), "epoch": run.epoch}
    amp_dtype = autocast_dtype(cfg.train.amp, ctx.device)
    e = cfg.eval

    def tally_for(split: str, values: Sequence[float]) -> list[ClassificationTally]:
        loader = build_eval_loader(cfg, splits, splits.split(split), ctx)
        return sweep_tallies(run.network, loader, values, stats.num_classes, ctx, amp_dtype)

    tallies = tally_for(select_on, taus)
    sweep = []
    for tau, tally in zip(taus, tallies):
        s = summarize(tally, counts, e.many_shot_min, e.few_shot_max)
        sweep.append({"tau": tau, **{k: s[k] for k in ("top1", "top5", "many", "medium", "few")}})
    best = max(range(len(taus)), key=lambda i: (sweep[i]["top1"] if sweep[i]["top1"] is not None else -1.0, -i))
    best_tau = taus[best]
    report_tally = tallies[best] if report_on == select_on else tally_for(report_on, [best_tau])[0]
    out: dict[str, Any] = {}
    if ctx.is_main:
        report_info = {**info, "split": report_on, "tau_norm": best_tau,
                       "selected_on": f"tau chosen by top-1 on the {select_on} split", "units": "percent"}
        result = write_eval_outputs(run_dir, report_tally, counts, names, report_info,
                                    many_min=e.many_shot_min, few_max=e.few_shot_max,
                                    png_max_classes=e.confusion_png_max_classes, stem="eval_tau_sweep")
        out = {**info, "selected_on": select_on, "reported_on": report_on, "criterion": "top1",
               "taus": taus, "sweep": sweep, "best_tau": best_tau,
               "result": {k: result[k] for k in ("top1", "top5", "many", "medium", "few")},
               "result_file": "eval_tau_sweep.json", "units": "percent"}
        write_json(run_dir / "tau_sweep.json", out)
        rows = "  ".join(f"{r['tau']:g}:{r['top1']:.2f}" for r in sweep)
        print(f"tau sweep on {select_on} (top1): {rows}")
        print(f"best tau {best_tau:g}; {report_on}: {format_summary(result)}")
    barrier(ctx)
    return out
