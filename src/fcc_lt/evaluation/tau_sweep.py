"""Tau sweeps (tau-normalisation, Kang et al. 2020): every tau of a list evaluated in one pass over a split
(the features are computed once; only the head's row norms change), and the ``fcc eval --tau-sweep``
command that chooses tau on a validation split and writes the table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fcc_lt.config.schema import Config
from fcc_lt.data.build import build_eval_loader, build_splits
from fcc_lt.data.loader import EvalLoader
from fcc_lt.evaluation.files import format_summary, write_eval_outputs, write_json
from fcc_lt.evaluation.metrics import ClassificationTally, summarize
from fcc_lt.evaluation.passes import nonfinite_hint
from fcc_lt.evaluation.run_loader import load_run, load_run_config, refuse_while_training
from fcc_lt.models.heads import tau_normalize
from fcc_lt.models.network import unwrap_ddp
from fcc_lt.util.distributed import DistContext, barrier, setup
from fcc_lt.util.errors import ConfigError
from fcc_lt.util.precision import autocast, autocast_dtype

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def parse_taus(text: str) -> list[float]:
    """'0,0.5,1' or 'start:stop:step' (stop included), or a comma list mixing both; sorted, unique.

    '0:2:0.1' gives 0, 0.1, ..., 2.0 (21 values, each rounded to 10 decimals so that 0.3 is 0.3).
    """
    values: list[float] = []
    for item in (part.strip() for part in str(text).split(",")):
        if re.fullmatch(_NUMBER, item):
            values.append(float(item))
            continue
        m = re.fullmatch(rf"({_NUMBER}):({_NUMBER}):({_NUMBER})", item)
        if not m:
            raise ConfigError(f"--tau-sweep: {item!r} is neither a number nor a range start:stop:step "
                              "(e.g. 0:2:0.1 or 0,0.5,1)")
        start, stop, step = (float(g) for g in m.groups())
        if step <= 0 or stop < start:
            raise ConfigError(f"--tau-sweep: range {item!r} needs step > 0 and stop >= start")
        count = (stop - start) / step
        if abs(count - round(count)) > 1e-6:
            raise ConfigError(f"--tau-sweep: range {item!r}: {stop:g} - {start:g} is not a multiple of {step:g}")
        values.extend(round(start + i * step, 10) for i in range(round(count) + 1))
    if not values:
        raise ConfigError("--tau-sweep: no tau values given")
    bad = [v for v in values if v < 0 or not math.isfinite(v)]
    if bad:
        raise ConfigError(f"--tau-sweep: tau must be a non-negative number, got {bad[0]:g}")
    return sorted(set(values))


@torch.no_grad()
def sweep_tallies(model: nn.Module, loader: EvalLoader, taus: Sequence[float], num_classes: int,
                  ctx: DistContext, amp_dtype: torch.dtype | None = None) -> list[ClassificationTally]:
    """One tally per tau from a single pass: features once per batch, then every normalised head."""
    network = unwrap_ddp(model)
    heads = [tau_normalize(network.head, tau) for tau in taus]
    tallies = [ClassificationTally(num_classes, ctx.device) for _ in taus]
    was_training = network.training
    network.eval()
    try:
        for images, labels in loader:
            with autocast(ctx.device, amp_dtype):
                features = network.features(images)
            features = features.float()
            for head, tally in zip(heads, tallies):
                tally.update(head(features), labels)
    finally:
        network.train(was_training)
    for tally in tallies:
        tally.all_reduce(ctx).check_finite(nonfinite_hint(amp_dtype))
    return tallies


def validation_problem(run_dir: Path, cfg: Config) -> tuple[str, str] | None:
    """Why the validation split of ``cfg`` is not held out from the training images of the run in ``run_dir``:
    (kind, reason) with kind 'none' (trained without one) or 'changed' (the split's keys were overridden);
    None when it is held out. Anything chosen on such 'validation' images would be chosen on training data."""
    own = load_run_config(run_dir).data
    d = cfg.data
    if own.val_per_class == 0 and own.val_json is None:
        return "none", (f"{run_dir} was trained without a validation split, so a validation split drawn now "
                        "(data.val_per_class) would take images it trained on")
    if (own.val_per_class, own.val_json, own.subset_seed) != (d.val_per_class, d.val_json, d.subset_seed):
        return "changed", ("data.val_per_class / data.val_json / data.subset_seed differ from the run's own; the "
                           "validation split would then overlap its training images. Leave them as trained")
    return None


def _check_selection_split(run_dir: Path, cfg: Config, select_on: str) -> None:
    """A tau chosen on 'validation' images the run trained on would be chosen on training data."""
    if select_on != "val":
        return
    problem = validation_problem(run_dir, cfg)
    if problem is None:
        return
    kind, reason = problem
    if kind == "none":
        raise ConfigError(f"--tau-sweep: {reason}; train with data.val_per_class > 0 (or data.val_json) to choose "
                          "tau on held-out images, or choose on the test split explicitly with --select-on test")
    raise ConfigError(f"--tau-sweep: {reason}")


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
    refuse_while_training(run_dir, "fcc eval --tau-sweep", checkpoint)
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
