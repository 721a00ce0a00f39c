"""The original FCC / bag-of-tricks code's config (yacs YAML): its schema and defaults, the tables naming fcc's
equivalent of its datasets, backbones, samplers, mixers and losses, and ``Reader``, through which the
importer (``fcc_lt.config.importer``) reads a file merged on those defaults.
"""

from __future__ import annotations

import ast
import math
from typing import Any

from fcc_lt.util.errors import ConfigError, short_repr
from fcc_lt.util.typecheck import suggest

# The original's defaults (lib/config/default.py of the FCC code; bag-of-tricks has the same without the
# FCC node): what an unset key means there.
ORIGINAL_DEFAULTS: dict[str, Any] = {
    "NAME": "default", "OUTPUT_DIR": "/home/cifar10/output", "VALID_STEP": 5, "SAVE_STEP": 5, "SHOW_STEP": 20,
    "PIN_MEMORY": True, "INPUT_SIZE": (224, 224), "COLOR_SPACE": "RGB", "RESUME_MODEL": "", "RESUME_MODE": "all",
    "EVAL_MODE": False,
    "DATASET": {
        "GENERATE_CAM_BASED_DATASET": False, "USE_CAM_BASED_DATASET": False, "CAM_DATA_JSON_SAVE_PATH": "",
        "CAM_DATA_SAVE_PATH": "", "CAM_NUMBER_THRES": 0, "DATASET": "IMBALANCEDCIFAR10",
        "ROOT": "/home/cifar10/data", "TRAIN_JSON": "", "VALID_JSON": "",
        "IMBALANCECIFAR": {"RATIO": 0.01, "RANDOM_SEED": 0},
    },
    "NETWORK": {"PRETRAINED": False, "PRETRAINED_MODEL": ""},
    "BACKBONE": {"TYPE": "res50", "FREEZE": False, "PRETRAINED_MODEL": ""},
    "MODULE": {"TYPE": "GAP"},
    "CLASSIFIER": {"TYPE": "FC", "BIAS": True},
    "LOSS": {
        "LOSS_TYPE": "CrossEntropy",
        "CostSensitiveCE": {"GAMMA": 1.0},
        "ClassBalanceCE": {"BETA": 0.999},
        "ClassBalanceFocal": {"BETA": 0.999, "GAMMA": 0.5},
        "CrossEntropyLabelSmooth": {"EPSILON": 0.1},
        "CrossEntropyLabelAwareSmooth": {"SMOOTH_HEAD": 0.4, "SMOOTH_TAIL": 0.1, "SHAPE": "concave"},
        "FocalLoss": {"GAMMA": 2.0},
        "LDAMLoss": {"SCALE": 30.0, "MAX_MARGIN": 0.5},
        "CDT": {"GAMMA": 0.2},
        "SEQL": {"GAMMA": 0.9, "LAMBDA": 0.005},
        "InfluenceBalancedLoss": {"ALPHA": 1000.0},
        "DiVEKLD": {"POWER_NORM": False, "POWER": 0.5, "TEMPERATURE": 3.0, "ALPHA": 0.5, "BASELOSS": "BSCE"},
    },
    "TRAIN": {
        "BATCH_SIZE": 32, "MAX_EPOCH": 60, "SHUFFLE": True, "NUM_WORKERS": 8, "TENSORBOARD": {"ENABLE": True},
        "COMBINER": {"TYPE": "default", "ALPHA": 1.0, "MANIFOLD_MIX_UP": {"LOCATION": "pool"},
                     "REMIX": {"KAPPA": 3.0, "TAU": 0.5}, "DIVE": {"TEACHER_MODEL": ""}},
        "TWO_STAGE": {"DRW": False, "DRS": False, "START_EPOCH": 1},
        "SAMPLER": {"TYPE": "default", "WEIGHTED_SAMPLER": {"TYPE": "balance"}, "BBN_SAMPLER": {"TYPE": "reverse"}},
        "OPTIMIZER": {"TYPE": "SGD", "BASE_LR": 0.001, "MOMENTUM": 0.9, "WEIGHT_DECAY": 1e-4},
        "LR_SCHEDULER": {"TYPE": "multistep", "LR_STEP": [40, 50], "LR_FACTOR": 0.1, "WARM_EPOCH": 5,
                         "COSINE_DECAY_END": 0},
        "DISTRIBUTED": False, "APEX": True, "SYNCBN": False,
    },
    "TEST": {"BATCH_SIZE": 32, "NUM_WORKERS": 8, "MODEL_FILE": "", "TAU_NORM": {"USE_TAU_NORM": False, "TAU": 1.0}},
    "TRANSFORMS": {
        "TRAIN_TRANSFORMS": ("random_resized_crop", "random_horizontal_flip"),
        "TEST_TRANSFORMS": ("shorter_resize_for_crop", "center_crop"),
        "PROCESS_DETAIL": {"RANDOM_CROP": {"PADDING": 4},
                           "RANDOM_RESIZED_CROP": {"SCALE": (0.08, 1.0), "RATIO": (0.75, 1.333333333)}},
    },
    "FCC": {"WORK": False, "START_EPOCH": 50, "GAMMA": 0.5, "C_TYPE": "edc", "RATIO": 0.0, "DELTA": 0.9,
            "ALPHA": 0.99, "BELTA": 2.0},
}

# Keys that never change what fcc does, whatever their value, and why.
NO_EFFECT = {
    "SAVE_STEP": "fcc writes checkpoints/last.pt every epoch",
    "SHOW_STEP": "fcc logs every train.log_every steps",
    "PIN_MEMORY": "always on for GPU image loading",
    "RESUME_MODEL": "resume a stopped fcc run with fcc train --resume RUN",
    "RESUME_MODE": "fcc train --resume restores everything",
    "DATASET.ROOT": "the original ignored it (CIFAR came from ./dataset/cifar; JSON fpaths are used as written)",
    "DATASET.CAM_DATA_SAVE_PATH": "where the original's CAM generation wrote images (fcc data cam-generate --out)",
    "DATASET.CAM_NUMBER_THRES": "used by CAM generation only (fcc data cam-generate --cap)",
    "MODULE.TYPE": "fcc always pools globally, as the original's 'GAP'",
    "TRAIN.NUM_WORKERS": "see data.workers",
    "TRAIN.APEX": "fcc uses native autocast (train.amp: auto), not apex",
    "TRAIN.SYNCBN": "the original used SyncBN whenever TRAIN.DISTRIBUTED, whatever this key; see train.sync_bn",
    "TEST.NUM_WORKERS": "see data.workers",
    "TEST.MODEL_FILE": "read by the original's valid.py only; use fcc eval RUN --checkpoint last|best|FILE",
    "FCC.C_TYPE": "'edc' (equal-difference) is FCC's only compression, the one fcc implements",
    "FCC.RATIO": "never read by the original", "FCC.DELTA": "never read by the original",
    "FCC.ALPHA": "never read by the original", "FCC.BELTA": "never read by the original",
}

DATASETS = {"IMBALANCECIFAR10": "cifar10", "IMBALANCEDCIFAR10": "cifar10", "IMBALANCECIFAR100": "cifar100"}
JSON_DATASETS = {"iNaturalist", "ImageNet", "CIFAR"}
BACKBONES = {"res32_cifar": "resnet32", "res50": "resnet50", "res10": "resnet10", "resnext50": "resnext50_32x4d"}
SAMPLERS = {"balance": "class_balanced", "square": "square_root", "progressive": "progressive"}
LOCATIONS = {"layer1": "stage1", "layer2": "stage2", "layer3": "stage3", "layer4": "stage4", "pool": "pool",
             "fc": "logits"}
MIXERS = {"default": "none", "fcc": "none", "dive": "none", "mix_up": "mixup", "manifold_mix_up": "manifold_mixup",
          "remix": "remix", "remix_fcc": "remix", "bbn_mix": "bilateral"}
TEST_OPS = ("shorter_resize_for_crop", "center_crop")
# Losses whose original implementation ignores TRAIN.TWO_STAGE.DRW (and fcc's loss name).
DRW_IGNORED = {"CrossEntropy": "its update does nothing in the FCC code (as in the later bag-of-tricks; an older "
                               "bag-of-tricks version weighted it by n_min / n_c, which is cost_sensitive_ce with "
                               "gamma 1 and drw_start_epoch)",
               "CrossEntropyLabelSmooth": "its forward never reads the re-weighting it switches on",
               "CrossEntropyLabelAwareSmooth": "its epsilons do not depend on the epoch",
               "SEQL": "its forward never reads the re-weighting it switches on",
               "EffectiveClassMarginLoss": "its update does nothing"}


def literal(value: Any) -> Any:
    """yacs evaluates strings as Python literals ('(32, 32)', '2e-4'); do the same, safely."""
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):  # not a literal: a plain string
            return value
    if isinstance(value, dict):
        return {k: literal(v) for k, v in value.items()}
    return value


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond the float range
        return False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)


def _pair(test: Any) -> Any:
    return lambda v: len(v) == 2 and all(test(x) for x in v)


# What the importer computes with, checked when it reads the key (``Reader``), beyond the type of the default
# (which ``check_original`` checks for every key up front, as yacs did): (test, what is expected).
VALUES: dict[str, tuple[Any, str]] = {
    "DATASET.IMBALANCECIFAR.RATIO": (lambda v: v > 0, "a ratio > 0 (n_min / n_max, e.g. 0.01)"),
    "DATASET.IMBALANCECIFAR.RANDOM_SEED": (lambda v: 0 <= v < 2**32, "a seed in [0, 2**32)"),
    "DATASET.CAM_NUMBER_THRES": (lambda v: v >= 0, "a count >= 0"),
    "INPUT_SIZE": (_pair(lambda n: _is_int(n) and 1 <= n <= 4096), "a pair (height, width) of integer sizes in "
                   "[1, 4096]"),
    "TRAIN.MAX_EPOCH": (lambda v: 1 <= v <= 100_000, "a number of epochs in [1, 100000]"),
    "TRAIN.BATCH_SIZE": (lambda v: v >= 1, "a batch size >= 1"),
    "TEST.BATCH_SIZE": (lambda v: v >= 1, "a batch size >= 1"),
    "TRAIN.LR_SCHEDULER.LR_STEP": (lambda v: all(_is_int(n) and 0 <= n <= 100_000 for n in v),
                                   "a list of integer epochs in [0, 100000]"),
    "TRAIN.TWO_STAGE.START_EPOCH": (lambda v: 0 <= v <= 100_000, "an epoch in [0, 100000]"),
    "FCC.START_EPOCH": (lambda v: -1 <= v <= 100_000, "an epoch in [-1, 100000]"),
    "VALID_STEP": (lambda v: -1 <= v <= 100_000, "a number of epochs in [-1, 100000] (-1: no validation)"),
    "TRANSFORMS.TRAIN_TRANSFORMS": (lambda v: all(isinstance(x, str) for x in v), "a list of transform names"),
    "TRANSFORMS.TEST_TRANSFORMS": (lambda v: all(isinstance(x, str) for x in v), "a list of transform names"),
    "TRANSFORMS.PROCESS_DETAIL.RANDOM_RESIZED_CROP.SCALE": (_pair(_is_number), "a pair of numbers (min, max)"),
    "TRANSFORMS.PROCESS_DETAIL.RANDOM_RESIZED_CROP.RATIO": (_pair(_is_number), "a pair of numbers (min, max)"),
}


def _expected(default: Any) -> tuple[Any, str]:
    """(a test, its description) of the type of the original's default value, as yacs checked it (a list for
    a tuple and back; here also an integer for a float, which yacs refused)."""
    if isinstance(default, bool):
        return (lambda v: isinstance(v, bool)), "true or false"
    if isinstance(default, int):
        return _is_int, "an integer"
    if isinstance(default, float):
        return _is_number, "a finite number"
    if isinstance(default, str):
        return (lambda v: isinstance(v, str)), "a string"
    if isinstance(default, (list, tuple)):
        return (lambda v: isinstance(v, (list, tuple))), "a list"
    raise AssertionError(f"no type for the default {default!r}")


def check_original(raw: dict[str, Any], source: str, schema: dict[str, Any] = ORIGINAL_DEFAULTS,
                   prefix: str = "") -> None:
    """Every key of an original config file is one of the original's (with "did you mean"), every section a
    mapping, and every value of the type of the original's default, before anything is computed from it;
    ConfigError naming the file and the key otherwise. (What a value must be beyond its type is checked when
    the importer reads it: ``VALUES``.)"""
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            hint = suggest(dotted, flat(ORIGINAL_DEFAULTS)) if len(dotted) <= 200 else ""
            raise ConfigError(f"{source}: {short_repr(dotted)} is not a key of the original code's config{hint}")
        default = schema[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {dotted!r} must be a section (a mapping of keys), got "
                                  f"{short_repr(value)}")
            check_original(value, source, default, dotted + ".")
            continue
        test, what = _expected(default)
        if not test(value):
            raise ConfigError(f"{source}: {dotted}: expected {what} (the original's default is {default!r}), got "
                              f"{short_repr(value)}")


def flat(tree: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k, v in tree.items():
        keys.extend(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"])
    return keys


class Reader:
    """The merged original config. ``get`` reads a key whose value shapes the fcc config; ``unused``
    records why a key has no effect here, so the header can name every such key the file sets."""

    def __init__(self, merged: dict[str, Any], source: str) -> None:
        self.merged = merged
        self.source = source
        self.used: set[str] = set()
        self.reasons: dict[str, str] = {}

    def value(self, dotted: str) -> Any:
        node: Any = self.merged
        for part in dotted.split("."):
            node = node[part]
        return node

    def __call__(self, dotted: str) -> Any:
        """A value the imported config is computed from: checked against ``VALUES`` first."""
        self.used.add(dotted)
        value = self.value(dotted)
        if dotted in VALUES and not VALUES[dotted][0](value):
            raise self.error(f"{dotted}: expected {VALUES[dotted][1]}, got {short_repr(value)}")
        return value

    def unused(self, keys: str | tuple[str, ...], why: str) -> None:
        for key in (keys,) if isinstance(keys, str) else keys:
            self.value(key)  # a typo in a key name here is a bug: fail loudly
            self.reasons.setdefault(key, why)

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {message}")


# LOSS.LOSS_TYPE -> (fcc's loss, {fcc parameter: the original's key under LOSS.<type>})
LOSS_TYPES: dict[str, tuple[str, dict[str, str]]] = {
    "CrossEntropy": ("ce", {}),
    "CostSensitiveCE": ("cost_sensitive_ce", {"gamma": "GAMMA"}),
    "ClassBalanceCE": ("class_balanced_ce", {"beta": "BETA"}),
    "ClassBalanceFocal": ("class_balanced_focal", {"beta": "BETA", "gamma": "GAMMA"}),
    "CrossEntropyLabelSmooth": ("label_smoothing", {"epsilon": "EPSILON"}),
    "CrossEntropyLabelAwareSmooth": ("label_aware_smoothing",
                                     {"head": "SMOOTH_HEAD", "tail": "SMOOTH_TAIL", "shape": "SHAPE"}),
    "FocalLoss": ("focal", {"gamma": "GAMMA"}),
    "LDAMLoss": ("ldam", {"scale": "SCALE", "max_margin": "MAX_MARGIN"}),
    "CDT": ("cdt", {"gamma": "GAMMA"}),
    "SEQL": ("seql", {"gamma": "GAMMA", "tail_ratio": "LAMBDA"}),
    "BalancedSoftmaxCE": ("balanced_softmax", {}),
    "InfluenceBalancedLoss": ("influence_balanced", {"alpha": "ALPHA"}),
    "DiVEKLD": ("dive", {"temperature": "TEMPERATURE", "alpha": "ALPHA", "power_norm": "POWER_NORM",
                         "power": "POWER"}),
    "EffectiveClassMarginLoss": ("ecm", {}),
}
