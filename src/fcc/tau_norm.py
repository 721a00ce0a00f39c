"""Tau-normalisation at evaluation (Kang et al., "Decoupling representation and classifier"), and the
sweep that chooses tau on a validation split.

tau-normalisation evaluates with class weights W_c / ||W_c||^tau (bias kept): tau = 0 is the plain
classifier, tau = 1 gives every class weight unit norm. The checkpoint is never changed; evaluation
runs the backbone as usual and applies a normalised copy of the head.

The sweep pass (``sweep_tallies``) evaluates a list of taus in ONE pass over a split (the features of a
batch are computed once and fed to every normalised head); the `fcc eval --tau-sweep` command that picks
tau on a validation split and reports it is ``fcc.eval_run.run_tau_sweep``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fcc.data.loader import EvalLoader
from fcc.distributed import DistContext
from fcc.errors import ConfigError
from fcc.metrics import ClassificationTally
from fcc.models.heads import tau_normalize
from fcc.precision import autocast


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
