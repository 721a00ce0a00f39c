"""Evaluating runs: a model and a split -> tallies (fcc_lt.evaluation.passes) -> the run directory's files
(fcc_lt.evaluation.files). Used by the trainer's final evaluation and by `fcc eval` (also --features and
--tau-sweep). Only the trainer's final evaluation writes a run's ``eval.json`` (what `fcc report` reads);
`fcc eval` writes files named after what it evaluated (``eval_last_test.json``, ``eval_best_val.json``).

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

from fcc_lt.config.schema import Config
from fcc_lt.data.build import build_eval_loader, build_splits
from fcc_lt.data.class_stats import ClassStats
from fcc_lt.data.datasets import DataSplits
from fcc_lt.data.loader import EvalLoader
from fcc_lt.evaluation.files import (
    format_features,
    format_summary,
    write_eval_outputs,
    write_features_npz,
    write_json,
)
from fcc_lt.evaluation.metrics import feature_summary
from fcc_lt.evaluation.passes import run_eval, run_feature_stats
from fcc_lt.evaluation.run_loader import LoadedRun, load_run, num_classes_of, refuse_while_training
from fcc_lt.models.tau_norm import eval_view
from fcc_lt.util.distributed import DistContext, barrier, setup
from fcc_lt.util.errors import CheckpointError
from fcc_lt.util.precision import autocast_dtype


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


def open_run(run_dir: Path, cfg: Config, checkpoint: str, config_mode: bool = False, command: str = "fcc eval"
             ) -> tuple[DistContext, DataSplits, LoadedRun, ClassStats]:
    """The context, the data, the loaded run (plain network, tau applied by the caller) and its statistics.

    ``config_mode``: ``checkpoint`` is a file evaluated with ``cfg`` (e.g. the original code's .pth, which
    holds no config), and ``run_dir`` only receives the files. ``command`` is what errors name.
    """
    what = f"{command} --checkpoint" if config_mode else command
    refuse_while_training(run_dir, what, checkpoint)
    ctx = setup(cfg.device)
    if config_mode:
        run = load_run(checkpoint, what=what, device=ctx.device, tau_norm=False, config=cfg)
    else:
        run = load_run(run_dir, checkpoint, what=what, device=ctx.device, tau_norm=False)
    run.config = cfg  # the caller's (possibly overridden) config of this run
    splits = build_splits(cfg)
    classes = num_classes_of(run)  # its statistics, else its classifier's rows (the original code's .pth)
    if splits.num_classes != classes:
        source = "the config" if config_mode else f"{run_dir}/config.yaml"
        raise CheckpointError(f"{what}: {run.path} holds a classifier for {classes} classes, but the data of "
                              f"{source} ({splits.name}) has {splits.num_classes}; evaluate it with the data "
                              "(and config) it was trained for")
    return ctx, splits, run, run.stats or splits.stats


def eval_file_stem(checkpoint: str, split: str, tau_norm: float | None = None) -> str:
    """The name of what `fcc eval` writes: ``eval_<checkpoint>_<split>[_tau<t>]``, named after what it
    evaluated. ``eval.json`` is the training run's own result (what `fcc report` reads) and only the trainer's
    final evaluation writes it, so no `fcc eval` can replace a run's numbers with others."""
    return f"eval_{Path(checkpoint).stem}_{split}" + (f"_tau{tau_norm:g}" if tau_norm is not None else "")


def evaluate_run(run_dir: Path, cfg: Config, checkpoint: str = "last", split: str = "test",
                 config_mode: bool = False) -> dict[str, Any]:
    """`fcc eval`: load a run's checkpoint, evaluate it, write ``eval_<checkpoint>_<split>[_tau<t>].json``
    and its confusion files (``eval_file_stem``), and say what it wrote. Never ``eval.json``: that is the
    run's own result, written by training with its ``eval.checkpoint`` / ``eval.split`` / ``eval.tau_norm``.

    In ``config_mode`` (a checkpoint file evaluated with a config, into a folder of its own) the checkpoint
    part of the name is the file's stem (``eval_best_model_test.json``).
    """
    ctx, splits, run, stats = open_run(run_dir, cfg, checkpoint, config_mode)
    stem = eval_file_stem(checkpoint, split, cfg.eval.tau_norm)
    loader = build_eval_loader(cfg, splits, splits.split(split), ctx)
    info = {"checkpoint": run.shown_path(), "epoch": run.epoch}
    result = evaluate_to_files(run_dir, cfg, run.network, stats, run.class_names or splits.class_names, loader,
                               ctx, split=split, info=info, amp_dtype=autocast_dtype(cfg.train.amp, ctx.device),
                               stem=stem)
    if ctx.is_main:
        others = ", ".join(result.get("confusion_files", []))
        tqdm.write(f"wrote {run_dir / (stem + '.json')}" + (f" (and {others})" if others else ""))
    return result


def feature_stats_run(run_dir: Path, cfg: Config, checkpoint: str = "last", split: str = "test",
                      config_mode: bool = False) -> dict[str, Any]:
    """`fcc eval --features`: cluster statistics of a checkpoint's features -> features[_<ckpt>_<split>].json,
    and the features themselves -> features[...].npz."""
    ctx, splits, run, stats = open_run(run_dir, cfg, checkpoint, config_mode)
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
        tqdm.write(f"{split} features ({result['checkpoint']}): {format_features(result)}")
        tqdm.write(f"wrote {run_dir / (stem + '.json')} (and {stem}.npz, the features themselves)")
    barrier(ctx)
    return result
