"""Building a run's parts from its config: the network (initialised, frozen, on the device), the module a
training step runs (DDP-wrapped when there are several processes), the optimizer, the sampler, and the
method's loss, mixer, FCC and teacher.

Which class counts each part gets is decided here, once (see fcc_lt.data.class_stats): the loss, the
mixer and FCC take the protocol's training counts; the sampler draws over every training item.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from fcc_lt.config.schema import Config
from fcc_lt.data.class_stats import ClassStats
from fcc_lt.data.datasets import DataSplits
from fcc_lt.engine.speed import compile_training, fused_optimizer, plan_of, plan_speed, remember_plan
from fcc_lt.engine.step import MethodParts, TrainingForward
from fcc_lt.methods.fcc import build_compression
from fcc_lt.methods.samplers import Sampler
from fcc_lt.methods.two_stage import freeze, init_from
from fcc_lt.models.network import Network, build_network
from fcc_lt.util.distributed import DistContext
from fcc_lt.util.errors import ConfigError
from fcc_lt.util.registry import LOSSES, MIXERS, SAMPLERS
from fcc_lt.util.rng import derive_seed


def build_sampler(cfg: Config, splits: DataSplits) -> Sampler:
    """The configured sampler over every training item (extra images included), on the CPU: orders are
    drawn there (see GlobalBatchLoader.epoch_order)."""
    labels = splits.train.labels.cpu()
    return SAMPLERS.build(cfg.sampler.name, cfg.sampler.params, "sampler.params", labels, splits.num_classes,
                          cfg.train.epochs)


log = logging.getLogger("fcc")


def build_training_network(cfg: Config, num_classes: int, ctx: DistContext, *, resuming: bool
                           ) -> tuple[Network, list[nn.Module]]:
    """The network, initialised (seeded, or from ``model.init_from``), frozen where asked, on the device.

    A resumed run restores every weight from its own checkpoint, so ``init_from`` is not re-applied (it
    would be wasted at best, and would fail if the stage-1 run has been moved since).
    """
    torch.manual_seed(derive_seed(cfg.seed, "init"))
    network = build_network(cfg, num_classes)
    if cfg.model.init_from and not resuming:
        init_from(network, cfg)
    if ctx.distributed and cfg.train.sync_bn:
        # before freezing: the conversion replaces BN modules, which train.freeze may name
        network = nn.SyncBatchNorm.convert_sync_batchnorm(network)
    frozen = freeze(network, cfg.train.freeze)
    network.to(ctx.device)
    plan = plan_speed(cfg, ctx.device)
    network.to(memory_format=plan.memory_format)
    remember_plan(network, plan)
    if ctx.is_main:
        log.info("speed: %s", plan.reason)
    return network, frozen


def wrap_for_training(network: nn.Module, ctx: DistContext) -> nn.Module:
    """The module a step calls: TrainingForward around the network, compiled as planned when the network
    was built (fcc_lt.engine.speed.compile_training), inside DDP when distributed.

    Batches reach the network in its memory format whatever the loader made. Under DDP the compiled call
    runs inside DDP's forward, so the trainer's module stays the DDP object (its no_sync and comm hooks);
    gradients are then all-reduced after the compiled backward.
    """
    forward = compile_training(TrainingForward(network), plan_of(network))
    if ctx.distributed:
        ids = [ctx.device] if ctx.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(forward, device_ids=ids)
    return forward


def build_optimizer(cfg: Config, network: nn.Module, *, loss_scaling: bool = False) -> torch.optim.Optimizer:
    """SGD (Nesterov) or Adam(W) over the trainable parameters, fused where the device has the kernel.

    ``loss_scaling`` (fp16 with a GradScaler): SGD's momentum buffers start as zeros instead of at the first
    step. PyTorch's fused SGD makes them with ``torch.empty`` at its first step, and when the scaler skips
    that step (its first scale overflows, as fp16 often does) they keep whatever memory held: training then
    diverged within a few steps (fp16 on the CPU). With zeros the first step computes 0.9 * 0 + g = g,
    exactly what the buffer would have been.
    """
    t = cfg.train
    params = [p for p in network.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("train.freeze: every parameter is frozen; nothing would be trained")
    if t.optimizer == "sgd":
        sgd = fused_optimizer(torch.optim.SGD, params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
                              nesterov=t.nesterov and t.momentum > 0)
        if loss_scaling and t.momentum > 0:
            for p in params:
                sgd.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return sgd
    opt_cls = torch.optim.Adam if t.optimizer == "adam" else torch.optim.AdamW
    return fused_optimizer(opt_cls, params, lr=t.lr, weight_decay=t.weight_decay)


def build_method(cfg: Config, stats: ClassStats, device: torch.device) -> MethodParts:
    """The loss, the mixer, FCC and the optional teacher, all from the protocol's training counts."""
    counts = list(stats.train_counts)
    criterion = LOSSES.build(cfg.loss.name, cfg.loss.params, "loss.params", counts).to(device)
    mixer = MIXERS.build(cfg.mix.name, cfg.mix.params, "mix.params", counts)
    compression = build_compression(cfg, counts)
    if compression is not None:
        compression.to(device)
    teacher = None
    if cfg.distill.teacher:
        from fcc_lt.methods.distill import load_teacher

        teacher = load_teacher(cfg.distill.teacher, stats.num_classes, device, fallback=cfg)
    if getattr(criterion, "needs_teacher", False) and teacher is None:
        raise ConfigError(f"loss.name: {cfg.loss.name!r} distils from a teacher; set distill.teacher "
                          "to a finished run directory or checkpoint")
    return MethodParts(criterion, mixer, compression, teacher)

