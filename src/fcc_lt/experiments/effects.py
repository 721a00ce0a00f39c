"""Which config keys change what a run computes: the keys that never do (where a run ran, how fast), and
the keys that do nothing given the others (``fcc.gamma`` with FCC off, milestones under a cosine schedule).

A report treats runs that differ only in such keys as the same experiment (fcc_lt.experiments.report), and
a sweep does not train a grid point twice when its values differ only there (fcc_lt.experiments.sweep.plan).
Each rule follows the code that reads the key: FCC acts only when ``fcc.enabled``
(fcc_lt.methods.fcc), the LR schedule reads ``milestones`` / ``lr_factor`` for ``multistep`` and ``min_lr``
for ``cosine`` and ``warmup_start_factor`` only with warm-up epochs (fcc_lt.engine.lr_schedule), and the
optimizer passes ``momentum`` and ``nesterov`` to SGD only, Nesterov only with momentum
(fcc_lt.engine.build). Parameters of a part that does not have them are refused when the config is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Config keys that say where or how fast a run ran, not what it computed
IGNORED_KEYS = frozenset({
    "out", "device", "data.root", "data.image_root", "data.download", "data.workers", "data.prefetch",
    "data.loader", "data.preload_max_mb", "train.progress", "train.log_every", "train.tensorboard",
    "train.keep_every", "train.keep_best", "eval.batch_size", "eval.confusion_png_max_classes",
    # speed settings: how fast the same computation runs (compiled or not, memory format, precision)
    "train.compile", "train.compile_mode", "train.channels_last", "train.amp",
    "train.tracker", "train.tracker_uri", "train.tracker_project",
})
FCC_KEYS = ("fcc.gamma", "fcc.start_epoch", "fcc.rank_by", "fcc.round_decimals")


def ineffective_keys(cfg: Mapping[str, Any]) -> dict[str, str]:
    """{dotted key: why it does nothing} for the keys of a resolved config that have no effect given its other
    keys (a key is listed whether or not the config sets it)."""
    fcc = cfg.get("fcc") or {}
    train = cfg.get("train") or {}
    out: dict[str, str] = {}
    if not fcc.get("enabled"):
        out.update(dict.fromkeys(FCC_KEYS, "FCC is off (fcc.enabled: false)"))
    scheduler = train.get("scheduler", "multistep")
    if scheduler != "multistep":
        out.update(dict.fromkeys(("train.milestones", "train.lr_factor"),
                                 f"train.scheduler is {scheduler}, not multistep"))
    if scheduler != "cosine":
        out["train.min_lr"] = f"train.scheduler is {scheduler}, not cosine"
    if train.get("warmup_epochs", 5) == 0:
        out["train.warmup_start_factor"] = "there is no warm-up (train.warmup_epochs: 0)"
    if train.get("optimizer", "sgd") != "sgd":
        out.update(dict.fromkeys(("train.momentum", "train.nesterov"),
                                 f"train.optimizer is {train.get('optimizer')}, not sgd"))
    elif train.get("momentum", 0.9) == 0:
        out["train.nesterov"] = "train.momentum is 0"
    return out
