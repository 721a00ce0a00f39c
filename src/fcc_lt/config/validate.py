"""Validation: the one place where a config's ranges and combinations are checked.

Types are checked while loading (``fcc_lt.config.load``); here go the checks a type cannot express:
ranges, keys that only make sense together, and the names and parameters of registered parts (their
constructors' signatures, through ``fcc_lt.util.registry``), all before any data is loaded.
"""

from __future__ import annotations

import re
import warnings

from fcc_lt.config.schedule import PART_SECTIONS, check_start_epochs
from fcc_lt.config.schema import Config, DataConfig, PartConfig
from fcc_lt.util.argtypes import DEVICE_PATTERN
from fcc_lt.util.errors import ConfigError, require, short_repr


class ConfigWarning(UserWarning):
    """A config that runs but is probably not what its author meant (LDAM on a linear head)."""


def validate(cfg: Config) -> None:
    """Range and consistency checks a type cannot express; raises ConfigError naming the key."""
    t, d, f = cfg.train, cfg.data, cfg.fcc
    require(cfg.seed >= 0, "seed", "a non-negative integer", cfg.seed)
    if not re.fullmatch(DEVICE_PATTERN, cfg.device):
        hint = f"; did you mean {cfg.device.lower()!r}?" if re.fullmatch(DEVICE_PATTERN, cfg.device.lower()) else ""
        raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {short_repr(cfg.device)}{hint}")
    if cfg.device == "mps":
        raise ConfigError("device: 'mps' is not supported: the samplers, mixers and losses compute in float64 on the "
                          "training device, which Apple's MPS backend cannot do; use cpu (or a CUDA machine)")
    require(d.imbalance_factor >= 1, "data.imbalance_factor", "a number >= 1", d.imbalance_factor)
    require(0 <= d.subset_seed < 2**32, "data.subset_seed", "an integer in [0, 2**32)", d.subset_seed)
    require(d.val_per_class >= 0, "data.val_per_class", "a non-negative integer", d.val_per_class)
    _validate_image_data(d)
    require(t.epochs >= 1, "train.epochs", "an integer >= 1", t.epochs)
    require(t.batch_size >= 1, "train.batch_size", "an integer >= 1", t.batch_size)
    require(t.lr > 0, "train.lr", "a positive number", t.lr)
    require(0 <= t.momentum < 1, "train.momentum", "a number in [0, 1)", t.momentum)
    require(t.weight_decay >= 0, "train.weight_decay", "a non-negative number", t.weight_decay)
    require(0 < t.lr_factor <= 1, "train.lr_factor", "a number in (0, 1]", t.lr_factor)
    require(0 <= t.warmup_epochs <= t.epochs, "train.warmup_epochs", f"an integer in [0, {t.epochs}]",
             t.warmup_epochs)
    require(0 < t.warmup_start_factor <= 1, "train.warmup_start_factor", "a number in (0, 1]",
             t.warmup_start_factor)
    require(0 <= t.min_lr < t.lr, "train.min_lr", "a number in [0, train.lr)", t.min_lr)
    require(list(t.milestones) == sorted(t.milestones), "train.milestones",
             "epochs in increasing order", t.milestones)
    require(all(1 <= m <= t.epochs for m in t.milestones), "train.milestones",
             f"epochs in [1, {t.epochs}]", t.milestones)
    require(t.grad_accum_steps >= 1, "train.grad_accum_steps", "an integer >= 1", t.grad_accum_steps)
    require(t.batch_size % t.grad_accum_steps == 0, "train.grad_accum_steps",
             f"a divisor of train.batch_size ({t.batch_size})", t.grad_accum_steps)
    require(t.eval_every >= 1, "train.eval_every", "an integer >= 1", t.eval_every)
    require(t.log_every >= 1, "train.log_every", "an integer >= 1", t.log_every)
    require(t.max_nonfinite_steps >= 0, "train.max_nonfinite_steps", "a non-negative integer",
             t.max_nonfinite_steps)
    require(t.keep_every is None or 1 <= t.keep_every <= t.epochs, "train.keep_every",
            f"null or an integer in [1, train.epochs={t.epochs}] (keep every N-th epoch's checkpoint)", t.keep_every)
    require(0 <= t.keep_best <= 1000, "train.keep_best",
            "an integer in [0, 1000] (keep the checkpoints of the best K epochs by validation top-1)", t.keep_best)
    if t.tracker_uri is not None and t.tracker != "mlflow":
        raise ConfigError(f"train.tracker_uri: an MLflow tracking URI, but train.tracker is {t.tracker!r}; set "
                          "train.tracker=mlflow or remove it")
    require(bool(t.tracker_project.strip()), "train.tracker_project", "a non-empty name", t.tracker_project)
    require(t.max_steps_per_epoch is None or t.max_steps_per_epoch >= 1, "train.max_steps_per_epoch",
             "null or an integer >= 1", t.max_steps_per_epoch)
    if t.compile == "off" and t.compile_mode != "auto":
        raise ConfigError(f"train.compile_mode: {t.compile_mode} does nothing with train.compile=off; remove it, "
                          "or set train.compile=on (or auto)")
    if t.freeze_bn is not None and not t.freeze:
        raise ConfigError(f"train.freeze_bn: {str(t.freeze_bn).lower()} does nothing without train.freeze (it says "
                          "whether the BatchNorm statistics of the FROZEN modules keep updating); remove it or "
                          "name the modules to freeze in train.freeze")
    if cfg.model.init_exclude and not cfg.model.init_from:
        raise ConfigError("model.init_exclude: lists weights not to take from model.init_from, but model.init_from "
                          "is not set; remove it or set model.init_from to a run directory or checkpoint")
    if d.dataset in ("json", "image_folder") and d.val_per_class:
        raise ConfigError(f"data.val_per_class: holds out images of CIFAR's training set; dataset {d.dataset!r} "
                          "takes its validation split from " +
                          ("data.val_json" if d.dataset == "json" else "a val/ folder next to train/ and test/"))
    require(f.gamma >= 0, "fcc.gamma", "a non-negative number", f.gamma)
    require(f.round_decimals is None or 0 <= f.round_decimals <= 8, "fcc.round_decimals",
             "null or an integer in [0, 8]", f.round_decimals)
    e = cfg.eval
    require(e.batch_size >= 1, "eval.batch_size", "an integer >= 1", e.batch_size)
    require(e.max_batches is None or e.max_batches >= 1, "eval.max_batches", "null or an integer >= 1",
             e.max_batches)
    require(e.tau_norm is None or e.tau_norm >= 0, "eval.tau_norm", "null or a non-negative number", e.tau_norm)
    require(0 <= e.few_shot_max < e.many_shot_min, "eval.few_shot_max",
             "a non-negative integer below eval.many_shot_min", e.few_shot_max)
    _validate_parts(cfg)


def _validate_image_data(d: DataConfig) -> None:
    """Keys of the image-file datasets (json, image_folder)."""
    require(8 <= d.image_size <= 4096, "data.image_size", "an integer in [8, 4096] (pixels)", d.image_size)
    require(0 < d.test_crop_ratio <= 1, "data.test_crop_ratio", "a number in (0, 1]", d.test_crop_ratio)
    require(len(d.rrc_scale) == 2 and 0 < d.rrc_scale[0] <= d.rrc_scale[1] <= 1, "data.rrc_scale",
             "[min, max] area fractions with 0 < min <= max <= 1", d.rrc_scale)
    require(len(d.rrc_ratio) == 2 and 0 < d.rrc_ratio[0] <= d.rrc_ratio[1], "data.rrc_ratio",
             "[min, max] aspect ratios with 0 < min <= max", d.rrc_ratio)
    require(0 <= d.color_jitter < 1, "data.color_jitter", "a number in [0, 1)", d.color_jitter)
    for key, value in (("data.mean", d.mean), ("data.std", d.std)):
        require(value is None or len(value) == 3, key, "null or three numbers (R, G, B)", value)
    require(d.std is None or all(s > 0 for s in d.std), "data.std", "positive numbers", d.std)
    require(d.preload_max_mb >= 0, "data.preload_max_mb", "a non-negative integer (MiB)", d.preload_max_mb)
    require(d.workers is None or d.workers >= 0, "data.workers", "null (automatic) or an integer >= 0",
             d.workers)
    require(d.prefetch >= 1, "data.prefetch", "an integer >= 1", d.prefetch)
    if d.dataset == "json":
        for key in ("train_json", "test_json"):
            require(bool(getattr(d, key)), f"data.{key}", "an annotation file (dataset 'json' needs "
                     "data.train_json and data.test_json)", getattr(d, key))


def _validate_parts(cfg: Config) -> None:
    """Check names and params of registered parts now, before any data is loaded."""
    from fcc_lt.util.registry import BACKBONES, DATASETS, HEADS, LOSSES, MIXERS, SAMPLERS

    DATASETS.get(cfg.data.dataset, "data.dataset")
    BACKBONES.get(cfg.model.backbone, "model.backbone")  # an unknown name is the name's error, not its params'
    BACKBONES.check_params(cfg.model.backbone, cfg.model.backbone_params, "model.backbone_params")
    HEADS.get(cfg.model.head, "model.head")
    HEADS.check_params(cfg.model.head, cfg.model.head_params, "model.head_params")
    if cfg.eval.tau_norm is not None and not hasattr(HEADS.get(cfg.model.head), "tau_normalized"):
        raise ConfigError(f"eval.tau_norm: model.head {cfg.model.head!r} cannot be tau-normalised; "
                          "it rescales the rows of a linear classifier (model.head: linear)")
    for section, registry in zip(PART_SECTIONS, (LOSSES, SAMPLERS, MIXERS), strict=True):
        part: PartConfig = getattr(cfg, section)
        registry.get(part.name, f"{section}.name")
        part.params = registry.check_params(part.name, part.params, f"{section}.params", rules=False)
    check_start_epochs(cfg)
    for section, registry in zip(PART_SECTIONS, (LOSSES, SAMPLERS, MIXERS), strict=True):
        part = getattr(cfg, section)
        registry.check_rules(part.name, part.params, f"{section}.params")
    if cfg.loss.name == "ldam" and cfg.model.head != "cosine":
        warnings.warn(f"loss.name: ldam with model.head {cfg.model.head!r}: LDAM is meant for the cosine head "
                      "(model.head: cosine, as every shipped ldam config sets), whose logits are cosines in [-1, 1]; "
                      f"on a {cfg.model.head} head its margins and its scale ({cfg.loss.params.get('scale', 30.0)}) "
                      "act on unbounded logits", ConfigWarning, stacklevel=4)
    needs_teacher = getattr(LOSSES.get(cfg.loss.name), "needs_teacher", False)
    if cfg.distill.teacher and not needs_teacher:
        raise ConfigError(f"distill.teacher: loss {cfg.loss.name!r} does not use a teacher, so its forward pass "
                          "every step would be thrown away; use a distillation loss (loss.name: dive) or remove "
                          "distill.teacher")
    if needs_teacher and not cfg.distill.teacher:
        raise ConfigError(f"loss.name: {cfg.loss.name!r} distils from a teacher; set distill.teacher to a finished "
                          "run directory or checkpoint")
