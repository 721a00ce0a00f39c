"""`fcc import-config`: original (yacs) configs become fcc configs with the original's behaviour.

The configs here are written in the original's format, from its two galleries (lijian16/FCC and
zhangyongshun/BagofTricks-LT): one representative of every group of configs that runs in the original,
each checked against the values the original's code gives it (worked out by hand from its schedule,
loss, sampler and FCC rules), plus the few that cannot run and must be refused.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fcc_lt.cli.main import main
from fcc_lt.config.importer import convert
from fcc_lt.config.load import from_dict, load_config
from fcc_lt.config.original import ORIGINAL_DEFAULTS, flat
from fcc_lt.config.validate import validate
from fcc_lt.util.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

# The shape every CIFAR config of the two galleries shares (here configs/cao_cifar/baseline/cifar10_im100.yaml).
CIFAR = """
NAME: 'baseline'
OUTPUT_DIR: './output/cifar10_im100'
SHOW_STEP: 100
SAVE_STEP: 5
VALID_STEP: 1
INPUT_SIZE: (32, 32)
COLOR_SPACE: 'RGB'

DATASET:
  DATASET: 'IMBALANCECIFAR10'
  IMBALANCECIFAR:
    RATIO: 0.01

BACKBONE:
  TYPE: 'res32_cifar'

MODULE:
  TYPE: 'GAP'

CLASSIFIER:
  TYPE: 'FC'
  BIAS: True

LOSS:
  LOSS_TYPE: 'CrossEntropy'

TRAIN:
  BATCH_SIZE: 128
  MAX_EPOCH: 200
  NUM_WORKERS: 16
  COMBINER:
    TYPE: 'default'
  OPTIMIZER:
    TYPE: 'SGD'
    BASE_LR: 0.1
    MOMENTUM: 0.9
    WEIGHT_DECAY: 2e-4
  LR_SCHEDULER:
    TYPE: 'warmup'
    LR_STEP: [160, 180]
    LR_FACTOR: 0.01
    WARM_EPOCH: 5
  TENSORBOARD:
    ENABLE: True
  SAMPLER:
    TYPE: 'default'

  DISTRIBUTED: False
  SYNCBN: True

TRANSFORMS:
  TRAIN_TRANSFORMS: ('random_crop', 'random_horizontal_flip')
  TEST_TRANSFORMS: ()

TEST:
  BATCH_SIZE: 64
  NUM_WORKERS: 8
  MODEL_FILE: 'best_model.pth'
"""

# The FCC gallery's ImageNet-LT shape (configs/FCC/imageNet_LT/imagenetlt_baseline_fcc.yaml).
IMAGENET = """
NAME: 'baseline_fcc'
OUTPUT_DIR: './output/ImageNet_LT/'
SHOW_STEP: 50
SAVE_STEP: 1
VALID_STEP: 1
INPUT_SIZE: (224, 224)
COLOR_SPACE: 'RGB'

FCC:
  WORK: True
  C_TYPE: 'edc'
  START_EPOCH: 50
  GAMMA: 0.1

DATASET:
  DATASET: 'iNaturalist'
  TRAIN_JSON: 'ImageNet_LT_train.json'
  VALID_JSON: 'ImageNet_LT_val.json'

BACKBONE:
  TYPE: 'res10'

MODULE:
  TYPE: 'GAP'

CLASSIFIER:
  TYPE: 'FC'
  BIAS: True

LOSS:
  LOSS_TYPE: 'CrossEntropy'

TRAIN:
  BATCH_SIZE: 64
  MAX_EPOCH: 200
  NUM_WORKERS: 4
  COMBINER:
    TYPE: 'fcc'
  OPTIMIZER:
    TYPE: 'SGD'
    BASE_LR: 0.2
    MOMENTUM: 0.9
    WEIGHT_DECAY: 1e-4
  LR_SCHEDULER:
    TYPE: 'multistep'
    LR_STEP: [160, 180]
    LR_FACTOR: 0.1
  TENSORBOARD:
    ENABLE: True
  SAMPLER:
    TYPE: 'default'

  DISTRIBUTED: False
  SYNCBN: False

TRANSFORMS:
  TRAIN_TRANSFORMS: ("random_resized_crop", "random_horizontal_flip", "color_jitter")
  TEST_TRANSFORMS: ("shorter_resize_for_crop", "center_crop")

TEST:
  BATCH_SIZE: 64
  NUM_WORKERS: 4
  MODEL_FILE: 'best_model.pth'
"""

# The FCC gallery's iNaturalist 2018 shape (configs/FCC/iNat18/baseline_fcc.yaml): default transforms.
INAT = """
NAME: 'baseline_fcc'
OUTPUT_DIR: './output/iNat18/'
SHOW_STEP: 50
SAVE_STEP: 5
VALID_STEP: 1
INPUT_SIZE: (224, 224)
COLOR_SPACE: 'RGB'
FCC: {WORK: True, C_TYPE: 'edc', START_EPOCH: 0, GAMMA: 0.1}
DATASET: {DATASET: 'iNaturalist', TRAIN_JSON: './iNat18_train.json', VALID_JSON: './iNat18_val.json'}
BACKBONE: {TYPE: 'res32_cifar'}
MODULE: {TYPE: 'GAP'}
CLASSIFIER: {TYPE: 'FC', BIAS: True}
LOSS: {LOSS_TYPE: 'CrossEntropy'}
TRAIN:
  BATCH_SIZE: 128
  MAX_EPOCH: 100
  NUM_WORKERS: 8
  COMBINER: {TYPE: 'fcc'}
  OPTIMIZER: {TYPE: 'SGD', BASE_LR: 0.2, MOMENTUM: 0.9, WEIGHT_DECAY: 1e-4}
  LR_SCHEDULER: {TYPE: 'multistep', LR_STEP: [60, 80], LR_FACTOR: 0.1}
  TENSORBOARD: {ENABLE: True}
  SAMPLER: {TYPE: 'default'}
  DISTRIBUTED: False
  SYNCBN: True
TEST: {BATCH_SIZE: 512, NUM_WORKERS: 8, MODEL_FILE: 'best_model.pth'}
"""

TEMPLATES = {"cifar": CIFAR, "imagenet": IMAGENET, "inat": INAT}


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def original(template: str, changes: dict[str, Any] | None = None) -> str:
    """An original-format file: a gallery shape with some keys changed (None removes a key)."""
    if not changes:
        return TEMPLATES[template]
    return yaml.safe_dump(merged(yaml.safe_load(TEMPLATES[template]), changes), sort_keys=False)


def cifar(ds: int, ratio: float, **changes: Any) -> dict[str, Any]:
    return {"DATASET": {"DATASET": f"IMBALANCECIFAR{ds}", "IMBALANCECIFAR": {"RATIO": ratio}}, **changes}


def fcc_block(gamma: float, start: int = 50) -> dict[str, Any]:
    return {"WORK": True, "C_TYPE": "edc", "START_EPOCH": start, "GAMMA": gamma}


FCC_ON = {"COMBINER": {"TYPE": "fcc"}}
WEIGHTED = {"TYPE": "weighted sampler", "WEIGHTED_SAMPLER": {"TYPE": "balance"}}
SQUARE = {**WEIGHTED, "WEIGHTED_SAMPLER": {"TYPE": "square"}}
PROGRESSIVE = {**WEIGHTED, "WEIGHTED_SAMPLER": {"TYPE": "progressive"}}
DRW160 = {"TWO_STAGE": {"DRW": True, "START_EPOCH": 160}}
DRS160 = {"TWO_STAGE": {"DRS": True, "START_EPOCH": 160}}
FCNORM = {"TYPE": "FCNorm", "BIAS": True}
LDAM = {"LOSS_TYPE": "LDAMLoss", "LDAMLoss": {"SCALE": 30.0, "MAX_MARGIN": 0.5}}
CELS = {"LOSS_TYPE": "CrossEntropyLabelSmooth", "CrossEntropyLabelSmooth": {"EPSILON": 0.1}}
MIX400 = {"MAX_EPOCH": 400, "LR_SCHEDULER": {"LR_STEP": [320, 360]}}
STAGE2 = {"MAX_EPOCH": 30, "OPTIMIZER": {"BASE_LR": 0.1, "WEIGHT_DECAY": "5e-4"}, "SAMPLER": WEIGHTED,
          "LR_SCHEDULER": {"LR_STEP": [10, 20], "LR_FACTOR": 0.1}}
PRETRAINED = {"PRETRAINED": True, "PRETRAINED_MODEL": "./output/cifar10_im100/baseline/models/epoch_200.pth"}
CAM_STAGE2 = {"USE_CAM_BASED_DATASET": True, "CAM_DATA_JSON_SAVE_PATH": "./output/cifar10_im100_CAM.json"}
LAS = {"LOSS_TYPE": "CrossEntropyLabelAwareSmooth",
       "CrossEntropyLabelAwareSmooth": {"SMOOTH_HEAD": 0.4, "SMOOTH_TAIL": 0.1, "SHAPE": "concave"}}
DIVE = {"LOSS_TYPE": "DiVEKLD", "DiVEKLD": {"TEMPERATURE": 2.0, "POWER_NORM": True, "POWER": 0.5, "ALPHA": 0.5,
                                            "BASELOSS": "BalancedSoftmaxCE"}}
PROTOCOL = {"train.epochs": 200, "train.lr": 0.1, "train.milestones": [160, 180], "train.lr_factor": 0.01,
            "train.warmup_epochs": 5, "train.weight_decay": 2e-4, "train.batch_size": 128, "train.momentum": 0.9}
INDEX_TAU = {"fcc.rank_by": "index", "fcc.round_decimals": 2}

# (group, template, changes, expected fcc values): what the original's code gives each group.
RUNNABLE: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    # --- the FCC gallery (configs/FCC/...)
    ("fcc/baseline", "cifar", cifar(10, 0.01, FCC=fcc_block(0.5), TRAIN=FCC_ON),
     {**PROTOCOL, "fcc.enabled": True, "fcc.gamma": 0.5, "fcc.start_epoch": 51, **INDEX_TAU, "loss.name": "ce"}),
    ("fcc/re_sampling/square", "cifar", cifar(100, 0.02, FCC=fcc_block(1.0),
                                               TRAIN={**FCC_ON, "SAMPLER": SQUARE}),
     {"data.dataset": "cifar100", "data.imbalance_factor": 50, "sampler.name": "square_root", "fcc.gamma": 1.0}),
    ("fcc/re_weighting/cbce", "cifar", cifar(100, 0.01, FCC=fcc_block(1.0), TRAIN=FCC_ON,
                                              LOSS={"LOSS_TYPE": "ClassBalanceCE", "ClassBalanceCE": {"BETA": 0.9}}),
     {"loss.name": "class_balanced_ce", "loss.params": {"beta": 0.9}, "fcc.enabled": True}),
    ("fcc/re_weighting/focal", "cifar", cifar(10, 0.01, FCC=fcc_block(0.5), TRAIN=FCC_ON,
                                               LOSS={"LOSS_TYPE": "FocalLoss", "FocalLoss": {"GAMMA": 2.0}}),
     {"loss.name": "focal", "loss.params": {"gamma": 2.0}}),
    ("fcc/drs/square", "cifar", cifar(100, 0.01, FCC=fcc_block(0.5), TRAIN={
        **FCC_ON, **DRS160, "SAMPLER": SQUARE}),
     {"sampler.name": "square_root", "sampler.params": {"drs_start_epoch": 161}, "fcc.gamma": 0.5, **INDEX_TAU}),
    ("fcc/drw/bsce", "cifar", cifar(10, 0.01, FCC=fcc_block(0.5), LOSS={"LOSS_TYPE": "BalancedSoftmaxCE"},
                                     TRAIN={**FCC_ON, **DRW160}),
     {"loss.name": "balanced_softmax", "loss.params": {"drw_start_epoch": 161}}),
    ("fcc/drw/celas (LAS ignored DRW)", "cifar", cifar(10, 0.01, FCC=fcc_block(0.5), LOSS=LAS,
                                                       TRAIN={**FCC_ON, **DRW160}),
     {"loss.name": "label_aware_smoothing", "loss.params": {"head": 0.4, "tail": 0.1, "shape": "concave"}}),
    ("fcc/DiVE teacher", "cifar", cifar(10, 0.02, FCC=fcc_block(0.5), LOSS={"LOSS_TYPE": "BalancedSoftmaxCE"},
                                         TRAIN={**FCC_ON, "LR_SCHEDULER": {"LR_STEP": [120, 160]}}),
     {"train.milestones": [120, 160], "loss.name": "balanced_softmax", "fcc.enabled": True}),
    ("fcc/DiVE student", "cifar", cifar(10, 0.02, LOSS=DIVE, TRAIN={
        "COMBINER": {"TYPE": "dive", "DIVE": {"TEACHER_MODEL": "./output/t/models/epoch_200.pth"}},
        "LR_SCHEDULER": {"LR_STEP": [120, 160]}}),
     {"loss.name": "dive", "loss.params": {"temperature": 2.0, "alpha": 0.5, "power_norm": True, "power": 0.5,
                                           "base": "balanced_softmax"},
      "distill.teacher": "./output/t/models/epoch_200.pth", "fcc.enabled": False}),
    ("fcc/remix_fcc (400 epochs)", "cifar", cifar(100, 0.01, FCC=fcc_block(1.0), TRAIN={
        **MIX400, "COMBINER": {"TYPE": "remix_fcc", "ALPHA": 1.0, "REMIX": {"KAPPA": 3.0, "TAU": 0.5}}}),
     {"train.epochs": 400, "train.milestones": [320, 360], "mix.name": "remix",
      "mix.params": {"alpha": 1.0, "kappa": 3.0, "tau": 0.5, "reproduce_original": True},
      "fcc.enabled": True, "fcc.start_epoch": 51}),
    ("fcc/ImageNet-LT baseline", "imagenet", {},
     {"data.dataset": "json", "data.augment": "rrc_flip", "data.color_jitter": 0.4, "data.image_size": 224,
      "model.backbone": "resnet10", "train.batch_size": 64, "train.lr": 0.2, "train.warmup_epochs": 0,
      "train.lr_factor": 0.1, "fcc.gamma": 0.1, "fcc.start_epoch": 51, **INDEX_TAU}),
    ("fcc/ImageNet-LT tau", "imagenet", {"TRAIN": {"LR_SCHEDULER": {"LR_FACTOR": 0.01}},
                                         "TEST": {"TAU_NORM": {"USE_TAU_NORM": True, "TAU": 1.0}}},
     {"eval.tau_norm": 1.0, "train.lr_factor": 0.01}),
    ("fcc/ImageNet-LT cRT (START_EPOCH 0)", "imagenet", {
        "FCC": {"START_EPOCH": 0}, "CLASSIFIER": {"TYPE": "cRT"},
        "NETWORK": {"PRETRAINED": True, "PRETRAINED_MODEL": "./output/ImageNet_LT/baseline_fcc/models/epoch_200.pth"},
        "TRAIN": {**STAGE2, "LR_SCHEDULER": {"LR_STEP": [10, 20], "LR_FACTOR": 0.1}}},
     {"train.epochs": 30, "train.lr": 0.1, "train.warmup_epochs": 0, "model.init_exclude": ["head"],
      "train.freeze": ["backbone"],
      "fcc.start_epoch": 1, "sampler.name": "class_balanced"}),
    ("ImageNet-LT cRT without FCC", "imagenet", {
        "FCC": None, "CLASSIFIER": {"TYPE": "cRT"}, "NETWORK": PRETRAINED,
        "TRAIN": {**STAGE2, "COMBINER": {"TYPE": "default"}}},
     {"train.epochs": 30, "fcc.enabled": False, "model.head": "linear"}),
    ("fcc/iNat18 (res32, all epochs)", "inat", {},
     {"model.backbone": "resnet32", "data.augment": "rrc_flip", "data.color_jitter": 0.0, "train.epochs": 100,
      "train.milestones": [60, 80], "fcc.start_epoch": 1, "eval.batch_size": 512}),
    ("cao_cifar ECM", "cifar", cifar(100, 0.01, LOSS={"LOSS_TYPE": "EffectiveClassMarginLoss"}),
     {"loss.name": "ecm", "loss.params": {}}),
    # --- bag of tricks (configs/cao_cifar/..., configs/ImageNet_LT/..., configs/iNat18/...)
    ("bot/baseline", "cifar", cifar(10, 0.01), {**PROTOCOL, "fcc.enabled": False, "mix.name": "none"}),
    ("bot/re_weighting/cbfocal", "cifar", cifar(10, 0.02, LOSS={"LOSS_TYPE": "ClassBalanceFocal",
                                                                "ClassBalanceFocal": {"BETA": 0.9999, "GAMMA": 2.0}}),
     {"loss.name": "class_balanced_focal", "loss.params": {"beta": 0.9999, "gamma": 2.0}}),
    ("bot/re_weighting/csce square", "cifar", cifar(100, 0.01, LOSS={"LOSS_TYPE": "CostSensitiveCE",
                                                                     "CostSensitiveCE": {"GAMMA": 0.5}}),
     {"loss.name": "cost_sensitive_ce", "loss.params": {"gamma": 0.5}}),
    ("bot/re_weighting/ldam", "cifar", cifar(10, 0.01, CLASSIFIER=FCNORM,
                                             LOSS=LDAM),
     {"model.head": "cosine", "loss.name": "ldam", "loss.params": {"scale": 30.0, "max_margin": 0.5}}),
    ("bot/re_weighting/seql", "cifar", cifar(100, 0.02, LOSS={"LOSS_TYPE": "SEQL",
                                                            "SEQL": {"GAMMA": 0.9, "LAMBDA": 0.006}}),
     {"loss.name": "seql", "loss.params": {"gamma": 0.9, "tail_ratio": 0.006}}),
    ("bot/re_weighting/cels", "cifar", cifar(10, 0.01, LOSS=CELS),
     {"loss.name": "label_smoothing", "loss.params": {"epsilon": 0.1}}),
    ("bot/re_sampling/progressive", "cifar", cifar(10, 0.01, TRAIN={"SAMPLER": PROGRESSIVE}),
     {"sampler.name": "progressive", "sampler.params": {}}),
    ("bot/mixup/input_mixup", "cifar", cifar(10, 0.01, TRAIN={**MIX400, "COMBINER": {"TYPE": "mix_up", "ALPHA": 1.0}}),
     {"train.epochs": 400, "train.milestones": [320, 360], "mix.name": "mixup", "mix.params": {"alpha": 1.0}}),
    ("bot/mixup/manifold_mixup", "cifar", cifar(100, 0.02, TRAIN={**MIX400, "COMBINER": {
        "TYPE": "manifold_mix_up", "ALPHA": 1.0, "MANIFOLD_MIX_UP": {"LOCATION": "pool"}}}),
     {"mix.name": "manifold_mixup", "mix.params": {"alpha": 1.0, "location": "pool"}}),
    ("bot/mixup/remix", "cifar", cifar(10, 0.02, TRAIN={**MIX400, "COMBINER": {
        "TYPE": "remix", "ALPHA": 1.0, "REMIX": {"KAPPA": 3.0, "TAU": 0.5}}}),
     {"mix.params": {"alpha": 1.0, "kappa": 3.0, "tau": 0.5, "reproduce_original": True}, "fcc.enabled": False}),
    ("bot/cRT", "cifar", cifar(10, 0.01, NETWORK=PRETRAINED, CLASSIFIER={"TYPE": "cRT", "BIAS": True}, TRAIN=STAGE2),
     {"train.epochs": 30, "train.warmup_epochs": 5, "train.milestones": [10, 20], "train.lr_factor": 0.1,
      "train.weight_decay": 5e-4, "model.head": "linear", "model.init_exclude": ["head"],
      "model.init_from": PRETRAINED["PRETRAINED_MODEL"], "train.freeze": ["backbone"], "sampler.name": "class_balanced",
      "fcc.enabled": False}),
    ("bot/LWS", "cifar", cifar(100, 0.02, NETWORK=PRETRAINED, CLASSIFIER={"TYPE": "LWS", "BIAS": True}, TRAIN=STAGE2),
     {"train.warmup_epochs": 5, "model.head": "lws", "model.init_exclude": ["head.scales"],
      "train.freeze": ["backbone"]}),
    ("bot/tau_norm", "cifar", cifar(10, 0.01, TEST={"MODEL_FILE": "./output/x/best_model.pth",
                                                    "TAU_NORM": {"USE_TAU_NORM": True, "TAU": 1.0}}),
     {**PROTOCOL, "eval.tau_norm": 1.0}),
    ("bot/drs/progressive", "cifar", cifar(100, 0.02, TRAIN={**DRS160, "SAMPLER": PROGRESSIVE}),
     {"sampler.name": "progressive", "sampler.params": {"drs_start_epoch": 161}}),
    ("bot/drw/ce (DRW had no effect: the FCC code's CrossEntropy ignores it)", "cifar", cifar(10, 0.01, TRAIN=DRW160),
     {"loss.name": "ce", "loss.params": {}}),
    ("bot/drw/cels (DRW had no effect)", "cifar", cifar(10, 0.01, TRAIN=DRW160,
                                                        LOSS=CELS),
     {"loss.name": "label_smoothing", "loss.params": {"epsilon": 0.1}}),
    ("bot/drw/csce", "cifar", cifar(10, 0.01, TRAIN=DRW160,
                                    LOSS={"LOSS_TYPE": "CostSensitiveCE", "CostSensitiveCE": {"GAMMA": 1.0}}),
     {"loss.name": "cost_sensitive_ce", "loss.params": {"gamma": 1.0, "drw_start_epoch": 161}}),
    ("bot/drw/cbfocal", "cifar", cifar(100, 0.01, TRAIN=DRW160,
                                       LOSS={"LOSS_TYPE": "ClassBalanceFocal",
                                             "ClassBalanceFocal": {"BETA": 0.9, "GAMMA": 1.0}}),
     {"loss.name": "class_balanced_focal", "loss.params": {"beta": 0.9, "gamma": 1.0, "drw_start_epoch": 161}}),
    ("bot/drw/focal", "cifar", cifar(10, 0.01, TRAIN=DRW160,
                                     LOSS={"LOSS_TYPE": "FocalLoss", "FocalLoss": {"GAMMA": 2.0}}),
     {"loss.params": {"gamma": 2.0, "reweight": True, "drw_start_epoch": 161}}),
    ("bot/drw/ldam (switches at S)", "cifar", cifar(10, 0.01, TRAIN=DRW160,
                                                    CLASSIFIER=FCNORM,
                                                    LOSS=LDAM),
     {"loss.params": {"scale": 30.0, "max_margin": 0.5, "reweight": True, "drw_start_epoch": 160}}),
    ("bot/drw/ibloss", "cifar", cifar(100, 0.02, TRAIN={"TWO_STAGE": {"DRW": True, "START_EPOCH": 100},
                                                        "LR_SCHEDULER": {"LR_STEP": [100, 160, 180]}},
                                      LOSS={"LOSS_TYPE": "InfluenceBalancedLoss",
                                            "InfluenceBalancedLoss": {"ALPHA": "1000."}}),
     {"loss.name": "influence_balanced", "loss.params": {"alpha": 1000.0, "drw_start_epoch": 101},
      "train.milestones": [100, 160, 180]}),
    ("bot/cam first stage (drop at 180 never fires)", "cifar",
     cifar(10, 0.01, NAME="first_stage", TRAIN={"MAX_EPOCH": 160}),
     {"train.epochs": 160, "train.milestones": [160], "train.warmup_epochs": 5}),
    ("bot/cam second stage", "cifar", cifar(10, 0.01, DATASET={**CAM_STAGE2, "DATASET": "IMBALANCECIFAR10"},
                                           NETWORK=PRETRAINED, TRAIN={
        "MAX_EPOCH": 40, "OPTIMIZER": {"BASE_LR": 0.001}, "LR_SCHEDULER": {"TYPE": "multistep", "LR_STEP": [20]},
        "SAMPLER": WEIGHTED}),
     {"train.epochs": 40, "train.lr": 0.001, "train.milestones": [20], "train.lr_factor": 0.01,
      "train.warmup_epochs": 0, "data.extra_train_json": "./output/cifar10_im100_CAM.json",
      "model.init_exclude": [], "train.freeze": [], "sampler.name": "class_balanced", "fcc.enabled": False}),
    ("bot/DiVE student", "cifar", cifar(100, 0.01, LOSS=DIVE, TRAIN={
        "COMBINER": {"TYPE": "dive", "DIVE": {"TEACHER_MODEL": "./output/t.pth"}},
        "LR_SCHEDULER": {"LR_STEP": [120, 160]}}),
     {"distill.teacher": "./output/t.pth", "data.dataset": "cifar100"}),
    ("bot/ImageNet-LT first stage", "imagenet", {
        "FCC": None, "TRAIN": {"BATCH_SIZE": 512, "MAX_EPOCH": 160, "COMBINER": {"TYPE": "mix_up", "ALPHA": 1.0},
                               "LR_SCHEDULER": {"LR_STEP": [120, 160]}}},
     {"train.batch_size": 512, "train.epochs": 160, "train.milestones": [120, 160], "mix.name": "mixup",
      "fcc.enabled": False}),
    ("bot/ImageNet-LT second stage", "imagenet", {
        "FCC": None,
        "DATASET": {"USE_CAM_BASED_DATASET": True, "CAM_DATA_JSON_SAVE_PATH": "./output/imagenetlt_CAM.json"},
        "NETWORK": {"PRETRAINED": True, "PRETRAINED_MODEL": "./output/first/models/epoch_160.pth"},
        "TRAIN": {"BATCH_SIZE": 512, "MAX_EPOCH": 40, "COMBINER": {"TYPE": "mix_up", "ALPHA": 1.0},
                  "OPTIMIZER": {"BASE_LR": 0.002}, "LR_SCHEDULER": {"LR_STEP": [40]}, "SAMPLER": WEIGHTED}},
     {"train.epochs": 40, "train.lr": 0.002, "train.milestones": [40], "sampler.name": "class_balanced",
      "data.extra_train_json": "./output/imagenetlt_CAM.json", "fcc.enabled": False}),
    ("bot/ImageNet-LT third stage", "imagenet", {
        "FCC": None, "NETWORK": {"PRETRAINED": True, "PRETRAINED_MODEL": "./output/second/models/epoch_40.pth"},
        "TRAIN": {"BATCH_SIZE": 512, "MAX_EPOCH": 20, "COMBINER": {"TYPE": "default"}, "OPTIMIZER": {"BASE_LR": 0.002},
                  "LR_SCHEDULER": {"LR_STEP": [8, 16]}, "SAMPLER": WEIGHTED, "SYNCBN": True, "APEX": False}},
     {"train.epochs": 20, "train.milestones": [8, 16], "fcc.enabled": False}),
    ("bot/iNat18 (distributed res50)", "inat", {
        "FCC": None, "BACKBONE": {"TYPE": "res50"}, "TRAIN": {"COMBINER": {"TYPE": "default"}, "DISTRIBUTED": True}},
     {"model.backbone": "resnet50", "train.sync_bn": True, "fcc.enabled": False}),
]


def imported(tmp_path: Path, text: str) -> tuple[Any, str]:
    src = tmp_path / "original.yaml"
    src.write_text(text)
    out = tmp_path / "ours.yaml"
    assert main(["import-config", str(src), "-o", str(out)]) == 0
    return load_config(out), out.read_text()


def value(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


@pytest.mark.parametrize(("template", "changes", "expected"), [c[1:] for c in RUNNABLE], ids=[c[0] for c in RUNNABLE])
def test_every_runnable_group_imports_with_the_originals_behaviour(template: str, changes: dict[str, Any],
                                                                    expected: dict[str, Any], tmp_path: Path) -> None:
    cfg, _ = imported(tmp_path, original(template, changes))
    for key, want in expected.items():
        got = value(cfg, key)
        assert got == pytest.approx(want) if isinstance(want, float) else got == want, (key, got, want)


def test_the_drs_config_matches_the_shipped_gallery(tmp_path: Path) -> None:
    text = original("cifar", cifar(10, 0.01, NAME="cbs-drs_fcc", FCC=fcc_block(0.5), TRAIN={
        **FCC_ON, "TWO_STAGE": {"DRS": True, "START_EPOCH": 160}, "SAMPLER": WEIGHTED}))
    cfg, _ = imported(tmp_path, text)
    ours = load_config("cifar10_lt/drs_balanced_fcc_if100")
    for section in ("loss", "sampler", "mix"):
        assert getattr(cfg, section) == getattr(ours, section)
    for key in ("epochs", "batch_size", "lr", "momentum", "weight_decay", "nesterov", "milestones", "lr_factor",
                "warmup_epochs"):
        assert getattr(cfg.train, key) == getattr(ours.train, key), key
    assert (cfg.fcc.enabled, cfg.fcc.gamma, cfg.fcc.start_epoch) == (True, 0.5, 51) == (
        ours.fcc.enabled, ours.fcc.gamma, ours.fcc.start_epoch)
    assert cfg.out == "output/cifar10_im100/cbs-drs_fcc" and cfg.train.eval_every == 1


def test_the_header_says_why_it_differs_from_a_literal_reading(tmp_path: Path) -> None:
    _, text = imported(tmp_path, original("cifar", cifar(10, 0.01, TRAIN=DRW160, LOSS=CELS)))
    assert "TRAIN.TWO_STAGE.DRW: no effect here (the original's CrossEntropyLabelSmooth ignores it" in text
    assert "imported as plain label_smoothing" in text and "TRAIN.TWO_STAGE.START_EPOCH: no effect here" in text
    _, text = imported(tmp_path, original("cifar", cifar(10, 0.01, TRAIN={"MAX_EPOCH": 160})))
    assert "epoch 180 lies past the last epoch 160, so the original never dropped the LR there" in text
    _, text = imported(tmp_path, original("cifar", cifar(100, 0.01, FCC=fcc_block(1.0), TRAIN={
        "COMBINER": {"TYPE": "remix_fcc", "ALPHA": 1.0}})))
    assert "mix.params.reproduce_original: true" in text and "label a's factor" in text
    assert "fcc.rank_by: index" in text
    _, text = imported(tmp_path, original("cifar", cifar(10, 0.01, NETWORK=PRETRAINED, CLASSIFIER={"TYPE": "cRT"},
                                                         TRAIN=STAGE2)))
    assert "model.init_from './output/cifar10_im100/baseline/models/epoch_200.pth' is the original's checkpoint" in text


def no_effect_keys(notes: list[str]) -> list[str]:
    return [n.split(":", 1)[0] for n in notes if ": no effect here (" in n]


# Keys with no alternative value that runs in the original (another value is an error there and here).
ONLY_VALUE = {"MODULE.TYPE", "FCC.C_TYPE"}


def mutate(v: Any) -> Any:
    if isinstance(v, bool):
        return not v
    if isinstance(v, (int, float)):
        return v + 3
    if isinstance(v, str):  # a yacs literal such as '(32, 32)' stays a literal
        return "('random_resized_crop',)" if v.startswith("(") else v + "_other"
    if isinstance(v, (list, tuple)):
        return [*v, 7]
    raise AssertionError(v)


def leaf(tree: dict[str, Any], dotted: str) -> tuple[dict[str, Any], str]:
    *parents, last = dotted.split(".")
    for p in parents:
        tree = tree[p]
    return tree, last


@pytest.mark.parametrize("case", ["fcc/baseline", "bot/cRT", "bot/cam second stage", "fcc/ImageNet-LT baseline",
                                  "fcc/iNat18 (res32, all epochs)", "fcc/DiVE student", "fcc/remix_fcc (400 epochs)",
                                  "bot/drw/cels (DRW had no effect)", "bot/iNat18 (distributed res50)"])
def test_keys_listed_without_effect_really_have_none(case: str) -> None:
    """Every key of the file that the header lists as without effect: any other value gives the same fcc
    config; and the list names exactly the keys of the file that the mapping does not read."""
    template, changes, _ = next(c[1:] for c in RUNNABLE if c[0] == case)
    tree = yaml.safe_load(original(template, changes))
    mapping, notes = convert(copy.deepcopy(tree), case)
    listed = no_effect_keys(notes)
    assert listed and len(listed) == len(set(listed))
    for key in listed:
        assert ":" not in key
        if key in ONLY_VALUE:
            continue
        changed = copy.deepcopy(tree)
        node, name = leaf(changed, key)
        node[name] = mutate(node[name])
        assert convert(changed, case)[0] == mapping, key


def test_keys_with_an_effect_are_not_listed() -> None:
    tree = yaml.safe_load(original("cifar", cifar(10, 0.01, FCC=fcc_block(0.5), TRAIN=FCC_ON)))
    _, notes = convert(tree)
    listed = set(no_effect_keys(notes))
    assert {"SHOW_STEP", "SAVE_STEP", "INPUT_SIZE", "COLOR_SPACE", "MODULE.TYPE", "TRAIN.NUM_WORKERS",
            "TRAIN.SYNCBN", "TRANSFORMS.TRAIN_TRANSFORMS", "TRANSFORMS.TEST_TRANSFORMS",
            "TEST.NUM_WORKERS", "TEST.MODEL_FILE", "FCC.C_TYPE"} == listed
    mapping = convert(copy.deepcopy(tree))[0]
    for effective in ("TRAIN.MAX_EPOCH", "FCC.GAMMA", "TRAIN.LR_SCHEDULER.WARM_EPOCH", "TEST.BATCH_SIZE",
                      "VALID_STEP", "DATASET.IMBALANCECIFAR.RATIO", "CLASSIFIER.BIAS", "TRAIN.TENSORBOARD.ENABLE"):
        changed = copy.deepcopy(tree)
        node, name = leaf(changed, effective)
        node[name] = mutate(node[name])
        assert convert(changed)[0] != mapping, effective


def test_drw_and_drs_switches_with_the_originals_epochs() -> None:
    drw = {"TWO_STAGE": {"DRW": True, "START_EPOCH": 160}}
    out, _ = convert(yaml.safe_load(original("cifar", cifar(100, 0.02, TRAIN=drw, LOSS={"LOSS_TYPE": "CDT"}))))
    assert out["loss"] == {"name": "cdt", "params": {"gamma": 0.2, "drw_start_epoch": 161}}  # (e - 1) // 160 >= 1
    assert out["data"]["imbalance_factor"] == 50
    late = {"TWO_STAGE": {"DRS": True, "START_EPOCH": 200}, "SAMPLER": WEIGHTED}
    out, notes = convert(yaml.safe_load(original("cifar", cifar(10, 0.01, TRAIN=late))))
    assert out["sampler"] == {"name": "instance", "params": {}}  # epoch > 200 never comes in a 200-epoch run
    assert any("never ran in the original" in n for n in notes)
    out, notes = convert(yaml.safe_load(original("cifar", cifar(10, 0.01, TRAIN={"TWO_STAGE": {"DRS": True,
                                                                                              "START_EPOCH": 160}}))))
    assert out["sampler"] == {"name": "instance", "params": {}}  # DRS without a weighted sampler did nothing
    assert any("TRAIN.TWO_STAGE.DRS: no effect" in n for n in notes)


def test_fcc_only_where_the_combiner_ran_it() -> None:
    out, notes = convert(yaml.safe_load(original("cifar", cifar(10, 0.01, FCC=fcc_block(0.5), TRAIN={
        "COMBINER": {"TYPE": "mix_up"}}))))
    assert out["fcc"] == {"enabled": False} and out["mix"] == {"name": "mixup", "params": {"alpha": 1.0}}
    assert any("never ran FCC" in n for n in notes)
    out, _ = convert(yaml.safe_load(original("cifar", cifar(10, 0.01, FCC=fcc_block(0.5, start=200), TRAIN=FCC_ON))))
    assert out["fcc"] == {"enabled": False}  # epoch > 200 never comes
    out, _ = convert(yaml.safe_load(original("cifar", cifar(10, 0.01, TRAIN={
        "COMBINER": {"TYPE": "manifold_mix_up", "MANIFOLD_MIX_UP": {"LOCATION": "fc"}}}))))
    assert out["mix"]["params"]["location"] == "logits"


@pytest.mark.parametrize(("template", "changes", "message"), [
    ("cifar", {"TRAIN": {"SAMPLER": {"TYPE": "bbn sampler", "BBN_SAMPLER": {"TYPE": "reverse"}}, "BATCH_SIZE": 64}},
     "'bbn sampler' with the 'default' combiner: .* sampler.name: reverse .* mix.name: bilateral"),
    ("cifar", {"TRAIN": {"COMBINER": {"TYPE": "dataspread"}}}, "'dataspread' does not exist in the original either"),
    ("cifar", {"DATASET": {"GENERATE_CAM_BASED_DATASET": True, "CAM_DATA_SAVE_PATH": "/mnt/ramdisk/CAM/c10",
                           "CAM_DATA_JSON_SAVE_PATH": "./output/c10_CAM.json"},
               "NETWORK": {"PRETRAINED": True, "PRETRAINED_MODEL": "./output/first_stage/models/best_model.pth"}},
     r"fcc data cam-generate STAGE1_RUN --out /mnt/ramdisk/CAM/c10, .*first_stage/models/best_model.pth.*"
     r"data.extra_train_json: /mnt/ramdisk/CAM/c10/cam_train.json"),
    ("imagenet", {"DATASET": {"GENERATE_CAM_BASED_DATASET": True, "CAM_DATA_SAVE_PATH": "/mnt/CAM/",
                              "CAM_NUMBER_THRES": 100}},
     "fcc data cam-generate STAGE1_RUN --out /mnt/CAM/ --cap 100"),
    ("cifar", {"TRAIN": {"LR": 0.1}}, "'TRAIN.LR' is not a key of the original"),
    ("cifar", {"LOSS": {"LOSS_TYPE": "Mystery"}}, "LOSS.LOSS_TYPE 'Mystery' has no fcc equivalent"),
    ("cifar", {"FCC": {"WORK": True, "C_TYPE": "other"}, "TRAIN": FCC_ON}, "FCC.C_TYPE"),
    ("cifar", {"MODULE": {"TYPE": "Identity"}}, "MODULE.TYPE 'Identity'"),
    ("imagenet", {"TRANSFORMS": {"TRAIN_TRANSFORMS": "('random_resized_crop',)"}}, "TRANSFORMS.TRAIN_TRANSFORMS"),
])
def test_what_cannot_run_or_be_reproduced_is_named(template: str, changes: dict[str, Any], message: str,
                                                   tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        convert(yaml.safe_load(original(template, changes)), "original.yaml")


@pytest.mark.parametrize(("text", "message"), [
    ("TRAIN:\n  BATCH_SIZE: !!int abc\n", "not valid YAML: ValueError"),  # PyYAML raises ValueError here
    ("TRAIN: [unclosed\n", "not valid YAML"),
    (b"NAME: caf\xe9\n", "cannot read original config: not UTF-8"),
])
def test_unreadable_original_files_are_config_errors(text: str | bytes, message: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "original.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert main(["import-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err and "Traceback" not in err


@pytest.mark.parametrize(("changes", "message"), [
    # each of these was a traceback: arithmetic on the value before its type or range was checked
    ({"DATASET": {"IMBALANCECIFAR": {"RATIO": 0}}},
     "DATASET.IMBALANCECIFAR.RATIO: expected a ratio > 0 (n_min / n_max, e.g. 0.01), got 0"),  # ZeroDivisionError
    ({"DATASET": {"IMBALANCECIFAR": {"RATIO": "abc"}}},
     "DATASET.IMBALANCECIFAR.RATIO: expected a finite number (the original's default is 0.01), got 'abc'"),
    ({"TRAIN": {"MAX_EPOCH": "abc"}}, "TRAIN.MAX_EPOCH: expected an integer (the original's default is 60), got 'abc'"),
    ({"TRAIN": {"MAX_EPOCH": 0}}, "TRAIN.MAX_EPOCH: expected a number of epochs in [1, 100000], got 0"),
    ({"TRAIN": {"LR_SCHEDULER": {"LR_STEP": 160}}},
     "TRAIN.LR_SCHEDULER.LR_STEP: expected a list (the original's default is [40, 50]), got 160"),
    ({"TRAIN": {"LR_SCHEDULER": {"LR_STEP": "(160, 'x')"}}},
     "TRAIN.LR_SCHEDULER.LR_STEP: expected a list of integer epochs in [0, 100000], got (160, 'x')"),
    ({"TRAIN": {"TWO_STAGE": {"DRW": True, "START_EPOCH": "abc"}}},
     "TRAIN.TWO_STAGE.START_EPOCH: expected an integer (the original's default is 1), got 'abc'"),
    ({"VALID_STEP": "abc"}, "VALID_STEP: expected an integer (the original's default is 5), got 'abc'"),
    ({"NAME": [1, 2]}, "NAME: expected a string (the original's default is 'default'), got [1, 2]"),
    ({"LOSS": {"LOSS_TYPE": [1, 2]}}, "LOSS.LOSS_TYPE: expected a string"),  # TypeError: unhashable
    ({"TRAIN": {"COMBINER": {"TYPE": {"a": 1}}}}, "TRAIN.COMBINER.TYPE: expected a string"),
    ({"TRAIN": {"BATCH_SIZE": {"a": 1}}}, "TRAIN.BATCH_SIZE: expected an integer"),  # KeyError
    ({"TRAIN": {"OPTIMIZER": {"BASE_LR": 10**400}}}, "TRAIN.OPTIMIZER.BASE_LR: expected a finite number"),
    ({"FCC": {"GAMMA": 10**400}}, "FCC.GAMMA: expected a finite number"),  # OverflowError
    ({"TRAIN": 5}, "'TRAIN' must be a section (a mapping of keys), got 5"),
    ({"FCC": {"GAMA": 0.5}}, "'FCC.GAMA' is not a key of the original code's config; did you mean 'FCC.GAMMA'?"),
])
def test_original_values_are_checked_against_the_originals_defaults_first(
        changes: dict[str, Any], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "original.yaml"
    path.write_text(original("cifar", changes))
    assert main(["import-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and message in err and "Traceback" not in err, err


@pytest.mark.parametrize(("changes", "message"), [
    ({"INPUT_SIZE": [224]}, "INPUT_SIZE: expected a pair (height, width) of integer sizes in [1, 4096], got [224]"),
    ({"INPUT_SIZE": "abc"}, "INPUT_SIZE: expected a list (the original's default is (224, 224)), got 'abc'"),
    ({"TRANSFORMS": {"TEST_TRANSFORMS": 5}},
     "TRANSFORMS.TEST_TRANSFORMS: expected a list (the original's default is ('shorter_resize_for_crop', "),
    ({"TRANSFORMS": {"TRAIN_TRANSFORMS": [1, 2]}}, "TRANSFORMS.TRAIN_TRANSFORMS: expected a list of transform names"),
    ({"TRANSFORMS": {"PROCESS_DETAIL": {"RANDOM_RESIZED_CROP": {"SCALE": [0.08]}}}},
     "TRANSFORMS.PROCESS_DETAIL.RANDOM_RESIZED_CROP.SCALE: expected a pair of numbers (min, max), got [0.08]"),
])
def test_image_dataset_values_are_checked_before_use(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        convert(yaml.safe_load(original("imagenet", changes)), "original.yaml")
    assert str(err.value).startswith("original.yaml: ") and message in str(err.value)


def test_the_header_says_where_crossentropy_drw_and_the_cosine_head_differ(tmp_path: Path) -> None:
    """CE under DRW stays plain CE, as the FCC code's CrossEntropy (its update does nothing), and the header says
    so and what the older bag-of-tricks did; an imported FCNorm / LDAM config's header names the initialisation
    and the precision that differ from the original's (issue 21)."""
    _, text = imported(tmp_path, original("cifar", cifar(10, 0.01, TRAIN=DRW160)))
    assert "TRAIN.TWO_STAGE.DRW: no effect here (the original's CrossEntropy ignores it: its update does nothing in " \
           "the FCC code" in text and "cost_sensitive_ce with gamma 1 and drw_start_epoch" in text
    assert "name: ce\n" in text and "cost_sensitive_ce\n" not in text
    for changes in ({"CLASSIFIER": {"TYPE": "FCNorm"}}, {"LOSS": {"LOSS_TYPE": "LDAMLoss"}}):
        cfg, text = imported(tmp_path, original("cifar", cifar(10, 0.01, **changes)))
        assert cfg.model.head == "cosine" and "init_norm" not in cfg.model.head_params  # fcc's class init
        assert "model.head_params.init_norm: class), where the original's FCNorm normalised each feature column" in text
        assert "train.amp: auto" in text and "apex O1 fp16" in text
    _, text = imported(tmp_path, original("cifar", cifar(10, 0.01)))
    assert "init_norm" not in text  # a linear head: nothing to say


def test_tensorboard_enable_maps_to_train_tensorboard(tmp_path: Path) -> None:
    """TRAIN.TENSORBOARD.ENABLE is train.tensorboard (issue 23), on by default as in the original."""
    cfg, text = imported(tmp_path, original("cifar", cifar(10, 0.01)))  # the gallery file says True
    assert cfg.train.tensorboard is True and "pip install 'fcc-lt[tensorboard]'" in text
    cfg, text = imported(tmp_path, original("cifar", cifar(10, 0.01, TRAIN={"TENSORBOARD": {"ENABLE": False}})))
    assert cfg.train.tensorboard is False and "TENSORBOARD" not in text
    cfg, _ = imported(tmp_path, original("cifar", cifar(10, 0.01, TRAIN={"TENSORBOARD": None})))  # the default
    assert cfg.train.tensorboard is True


# ------------------------------------------------------------------------------------------ property

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**400),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(["(32, 32)", "()", "[160, 180]", "2e-4", "'x'", "{'a': 1}", "1e999"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5),
                                                                                           inner, max_size=3),
                      max_leaves=6)


@settings(max_examples=int(os.environ.get("FCC_HYPOTHESIS_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(template=st.sampled_from(["cifar", "imagenet"]),
       changes=st.dictionaries(st.sampled_from(flat(ORIGINAL_DEFAULTS)), VALUES, min_size=1, max_size=3))
def test_property_any_value_of_any_key_imports_or_is_a_config_error(template: str, changes: dict[str, Any]) -> None:
    """Whatever value any key of an original config holds, import-config gives a config that validates or one
    ConfigError: never another exception (before, 11 kinds of value were tracebacks)."""
    tree = yaml.safe_load(original(template))
    for dotted, value in changes.items():
        node, name = tree, dotted.split(".")[-1]
        for part in dotted.split(".")[:-1]:
            node = node.setdefault(part, {})
        node[name] = value
    try:
        mapping, _ = convert(tree, "original.yaml")
        validate(from_dict(mapping, "imported"))
    except ConfigError:
        pass
