"""The learning rate as a pure function of the epoch (set at the start of each epoch).

Every boundary follows the one start-epoch rule (fcc_lt.config.schedule.is_active): a milestone m
lowers the LR from epoch m on, and warm-up ends at epoch W.

- warm-up: for epochs e < W the factor is s + (1 - s) * e / W (s = warmup_start_factor, 1/3 by default:
  0.467, 0.6, 0.733, 0.867 for W = 5), reaching 1 at epoch W, exactly as the original code.
- multistep: times lr_factor for every milestone m <= e, so ``milestones: [160, 180]`` lowers the LR
  from epoch 160 on and again from 180 on.
- cosine: min_lr + (lr - min_lr) * (1 + cos(pi * e / E)) / 2, reaching min_lr in the last epoch.
"""

from __future__ import annotations

import math

from fcc_lt.config.schedule import is_active
from fcc_lt.config.schema import TrainConfig


def warmup_factor(epoch: int, cfg: TrainConfig) -> float:
    if cfg.warmup_epochs > 0 and not is_active(epoch, cfg.warmup_epochs):
        s = cfg.warmup_start_factor
        return s + (1.0 - s) * epoch / cfg.warmup_epochs
    return 1.0


def learning_rate(epoch: int, cfg: TrainConfig) -> float:
    """The base learning rate in effect during ``epoch`` (1-based)."""
    if cfg.scheduler == "multistep":
        decay = cfg.lr * cfg.lr_factor ** sum(1 for m in cfg.milestones if is_active(epoch, m))
    elif cfg.scheduler == "cosine":
        decay = cfg.min_lr + (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * epoch / cfg.epochs)) / 2
    else:
        decay = cfg.lr
    return decay * warmup_factor(epoch, cfg)
