"""Tau-normalisation at evaluation (Kang et al., "Decoupling representation and classifier"), and the
sweep that chooses tau on a validation split.

tau-normalisation evaluates with class weights W_c / ||W_c||^tau (bias kept): tau = 0 is the plain
classifier, tau = 1 gives every class weight unit norm. The checkpoint is never changed; evaluation
runs the backbone as usual and applies a normalised copy of the head.

The sweep evaluates a list of taus in ONE pass over the selection split (the features of a batch are
computed once and fed to every normalised head), picks the tau with the best top-1 there (the first in
the list on ties), and reports the chosen tau on the report split. Selecting on the test split is refused
unless asked for explicitly: a tau chosen on test numbers makes those numbers optimistic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fcc.config import Config
from fcc.data.loader import EvalLoader
from fcc.distributed import DistContext, barrier
from fcc.errors import ConfigError
from fcc.metrics import ClassificationTally, summarize
from fcc.models.heads import tau_normalize
from fcc.precision import autocast, autocast_dtype


class TauNormalized(nn.Module):
    """Evaluation view of a network with its head replaced by a tau-normalised copy (weights shared)."""

    def __init__(self, network: nn.Module, tau: float) -> None:
        super().__init__()
        self.network = network
        self.head = tau_normalize(network.head, tau)
        self.tau = tau
        self.train(network.training)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.network.features(x))


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def tau_normalized_network(model: nn.Module, tau: float) -> TauNormalized:
    """``model`` (a Network, possibly DDP-wrapped) evaluated with a tau-normalised head."""
    return TauNormalized(_unwrap(model), tau)


def eval_view(network: nn.Module, tau: float | None) -> nn.Module:
    """What evaluation runs: the network itself, or with its head tau-normalised when ``tau`` is set
    (``eval.tau_norm``). One function, so eval.json, `fcc eval` and `fcc predict` agree."""
    return network if tau is None else tau_normalized_network(network, tau)


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
    network = _unwrap(model)
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
    return [tally.all_reduce(ctx) for tally in tallies]


def _check_selection_split(run_dir: Path, cfg: Config, select_on: str) -> None:
    """A tau chosen on 'validation' images the run trained on would be chosen on training data."""
    if select_on != "val":
        return
    from fcc.runs import load_run_config

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
    from fcc.data.build import build_eval_loader, build_splits
    from fcc.distributed import setup
    from fcc.eval_files import format_summary, write_eval_outputs, write_json
    from fcc.runs import load_run

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
