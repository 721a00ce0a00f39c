"""Import a config file of the original FCC / bag-of-tricks code (yacs YAML) as an fcc config.

`fcc import-config ORIGINAL.yaml -o ours.yaml` reads the original's file on top of the original's own
defaults (an original config relies on them), maps every key to its fcc equivalent with the original's
*behaviour* (FCC and deferred switches at the epochs it actually used, tau rounded and assigned by class
index, FCC only where its combiner ran it), and writes a commented fcc config. Keys that have no effect
here (worker counts, logging steps, apex, ...) are listed in the file's header; keys the original did
not know, and settings that cannot be reproduced, are errors naming the key.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path
from typing import Any

import yaml

from fcc.config import deep_merge, from_dict, parse_yaml, validate
from fcc.errors import ConfigError, read_input_text

# The original's defaults (lib/config/default.py of the FCC code): what an unset key means there.
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

NO_EFFECT = {  # keys that configure what fcc does differently or not at all
    "SAVE_STEP": "fcc saves checkpoints/last.pt every epoch",
    "SHOW_STEP": "see train.log_every", "PIN_MEMORY": "always on for GPU image loading",
    "COLOR_SPACE": "always RGB", "RESUME_MODEL": "use fcc train --resume RUN", "RESUME_MODE": "resume restores all",
    "EVAL_MODE": "frozen modules keep their BN statistics (train.freeze_bn)",
    "DATASET.ROOT": "the original ignored it for CIFAR and JSON fpaths are used as written",
    "DATASET.CAM_DATA_SAVE_PATH": "see fcc data cam-generate --out", "DATASET.CAM_NUMBER_THRES": "see --cap",
    "BACKBONE.PRETRAINED_MODEL": "see model.init_from", "MODULE.TYPE": "global average pooling",
    "TRAIN.SHUFFLE": "the sampler decides", "TRAIN.NUM_WORKERS": "see data.workers",
    "TRAIN.TENSORBOARD.ENABLE": "see train.tensorboard", "TRAIN.APEX": "see train.amp (native autocast)",
    "TEST.NUM_WORKERS": "see data.workers", "TEST.MODEL_FILE": "fcc eval RUN --checkpoint last|best|FILE",
    "FCC.RATIO": "never read by the original", "FCC.DELTA": "never read by the original",
    "FCC.ALPHA": "never read by the original", "FCC.BELTA": "never read by the original",
}

DATASETS = {"IMBALANCECIFAR10": "cifar10", "IMBALANCEDCIFAR10": "cifar10", "IMBALANCECIFAR100": "cifar100"}
JSON_DATASETS = {"iNaturalist", "ImageNet", "CIFAR"}
BACKBONES = {"res32_cifar": "resnet32", "res50": "resnet50", "res10": "resnet10", "resnext50": "resnext50_32x4d"}
SAMPLERS = {"balance": "class_balanced", "square": "square_root", "progressive": "progressive"}
LOCATIONS = {"layer1": "stage1", "layer2": "stage2", "layer3": "stage3", "layer4": "stage4", "pool": "pool",
             "fc": "logits"}


def _literal(value: Any) -> Any:
    """yacs evaluates strings as Python literals ('(32, 32)', '2e-4'); do the same, safely."""
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):  # not a literal: a plain string
            return value
    if isinstance(value, dict):
        return {k: _literal(v) for k, v in value.items()}
    return value


def _check_known(raw: dict[str, Any], schema: dict[str, Any], source: str, prefix: str = "") -> None:
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            raise ConfigError(f"{source}: {dotted!r} is not a key of the original code's config")
        if isinstance(schema[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {dotted!r} must be a section")
            _check_known(value, schema[key], source, dotted + ".")


class _Reader:
    """The merged original config, recording which keys were used."""

    def __init__(self, merged: dict[str, Any]) -> None:
        self.merged = merged
        self.used: set[str] = set()

    def __call__(self, dotted: str) -> Any:
        node: Any = self.merged
        for part in dotted.split("."):
            node = node[part]
        self.used.add(dotted)
        return node


def _flat(tree: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k, v in tree.items():
        keys.extend(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"{prefix}{k}"])
    return keys


def _loss(get: _Reader, source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """loss section and extra model settings for LOSS.LOSS_TYPE."""
    kind = get("LOSS.LOSS_TYPE")
    p = f"LOSS.{kind}."
    table: dict[str, tuple[str, dict[str, str]]] = {
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
    }
    if kind not in table:
        raise ConfigError(f"{source}: LOSS.LOSS_TYPE {kind!r} has no fcc equivalent "
                          f"(the original's losses: {', '.join(table)})")
    name, params = table[kind]
    loss = {"name": name, "params": {ours: get(p + theirs) for ours, theirs in params.items()}}
    if kind == "DiVEKLD":
        base = get("LOSS.DiVEKLD.BASELOSS")
        base_names = {"BSCE": "balanced_softmax", "BalancedSoftmaxCE": "balanced_softmax", "CrossEntropy": "ce"}
        if base not in base_names:
            raise ConfigError(f"{source}: LOSS.DiVEKLD.BASELOSS {base!r} is not one fcc can map "
                              f"({', '.join(base_names)})")
        loss["params"]["base"] = base_names[base]
    return loss, ({"head": "cosine"} if kind == "LDAMLoss" else {})


def convert(original: dict[str, Any], source: str = "original config") -> tuple[dict[str, Any], list[str]]:
    """(fcc config mapping, notes) for a parsed original config file."""
    if not isinstance(original, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    original = _literal(original)
    _check_known(original, ORIGINAL_DEFAULTS, source)
    get = _Reader(deep_merge(copy.deepcopy(ORIGINAL_DEFAULTS), original))
    notes: list[str] = []
    set_here = set(_flat(original))

    def ignore(keys: tuple[str, ...], why: str) -> None:
        """Keys the original did not use in this configuration: noted when the file sets them."""
        for key in keys:
            get(key)
            if key in set_here:
                notes.append(f"{key}: not used ({why})")

    out: dict[str, Any] = {"out": str(Path(get("OUTPUT_DIR")) / get("NAME")), "data": {}, "model": {},
                           "train": {}, "fcc": {}, "eval": {}}
    data, model, train, ev = out["data"], out["model"], out["train"], out["eval"]

    # data
    dataset = get("DATASET.DATASET")
    if dataset in DATASETS:
        data["dataset"] = DATASETS[dataset]
        data["imbalance_factor"] = round(1.0 / get("DATASET.IMBALANCECIFAR.RATIO"), 6)
        data["subset_seed"] = get("DATASET.IMBALANCECIFAR.RANDOM_SEED")
        ignore(("TRANSFORMS.TRAIN_TRANSFORMS", "TRANSFORMS.TEST_TRANSFORMS", "INPUT_SIZE",
                "TRANSFORMS.PROCESS_DETAIL.RANDOM_RESIZED_CROP.SCALE",
                "TRANSFORMS.PROCESS_DETAIL.RANDOM_RESIZED_CROP.RATIO"),
               "CIFAR's transforms were hard-coded in the original: pad-4 crop, flip, 32x32")
        ignore(("DATASET.TRAIN_JSON", "DATASET.VALID_JSON"), "CIFAR is read from its own files")
    elif dataset in JSON_DATASETS:
        data["dataset"] = "json"
        data["train_json"] = get("DATASET.TRAIN_JSON")
        data["test_json"] = get("DATASET.VALID_JSON")
        notes.append("DATASET.VALID_JSON is the split the original validated (and selected best_model) on: "
                     "imported as data.test_json; add data.val_json to select on a validation split")
        height, width = get("INPUT_SIZE")
        if height != width:
            raise ConfigError(f"{source}: INPUT_SIZE {height}x{width}: fcc trains on square crops")
        data["image_size"] = int(height)
        train_ops = set(get("TRANSFORMS.TRAIN_TRANSFORMS"))
        data["augment"] = "rrc_flip" if "random_resized_crop" in train_ops else \
            "crop_flip" if "random_crop" in train_ops else "none"
        if "color_jitter" in train_ops:
            data["color_jitter"] = 0.4
        data["rrc_scale"] = list(get("TRANSFORMS.PROCESS_DETAIL.RANDOM_RESIZED_CROP.SCALE"))
        data["rrc_ratio"] = list(get("TRANSFORMS.PROCESS_DETAIL.RANDOM_RESIZED_CROP.RATIO"))
        get("TRANSFORMS.TEST_TRANSFORMS")
        ignore(("DATASET.IMBALANCECIFAR.RATIO", "DATASET.IMBALANCECIFAR.RANDOM_SEED"),
               "JSON datasets are used as they are; fcc data make-lt makes long-tailed subsets")
    else:
        raise ConfigError(f"{source}: DATASET.DATASET {dataset!r} is not one of the original's datasets "
                          f"({', '.join([*DATASETS, *sorted(JSON_DATASETS)])})")
    get("TRANSFORMS.PROCESS_DETAIL.RANDOM_CROP.PADDING")
    if get("DATASET.GENERATE_CAM_BASED_DATASET"):
        raise ConfigError(f"{source}: DATASET.GENERATE_CAM_BASED_DATASET: generating is a command here, "
                          "not a training run: fcc data cam-generate STAGE1_RUN --out DIR")
    if get("DATASET.USE_CAM_BASED_DATASET"):
        data["extra_train_json"] = get("DATASET.CAM_DATA_JSON_SAVE_PATH")
    else:
        get("DATASET.CAM_DATA_JSON_SAVE_PATH")

    # network
    backbone = get("BACKBONE.TYPE")
    if backbone not in BACKBONES:
        raise ConfigError(f"{source}: BACKBONE.TYPE {backbone!r}: known {', '.join(BACKBONES)}")
    model["backbone"] = BACKBONES[backbone]
    if backbone == "res32_cifar" and data["dataset"] == "json":
        notes.append("BACKBONE.TYPE res32_cifar on 224-pixel images (the original's iNat18 configs did this "
                     "by mistake): consider model.backbone=resnet50")
    freeze: list[str] = ["backbone"] if get("BACKBONE.FREEZE") else []
    head = get("CLASSIFIER.TYPE")
    bias = get("CLASSIFIER.BIAS")
    if head in ("FC", "cRT"):
        model["head"] = "linear"
        if not bias:
            model["head_params"] = {"bias": False}
    elif head == "FCNorm":
        model["head"] = "cosine"
    elif head == "LWS":
        model["head"] = "lws"
        freeze = ["backbone", "head.fc"]
    else:
        raise ConfigError(f"{source}: CLASSIFIER.TYPE {head!r}: known FC, FCNorm, cRT, LWS")
    if head == "cRT":
        model["init_exclude"] = ["head"]
        freeze = ["backbone"]
        notes.append("cRT: a fresh classifier on the frozen backbone, whose BN statistics stay frozen too "
                     "(the original kept updating them)")
    if get("NETWORK.PRETRAINED"):
        model["init_from"] = get("NETWORK.PRETRAINED_MODEL")
        notes.append(f"model.init_from {model['init_from']!r} is the original's checkpoint; point it at the "
                     "first stage's fcc run (RUN/checkpoints/last.pt)")
    else:
        get("NETWORK.PRETRAINED_MODEL")
    if freeze:
        train["freeze"] = freeze

    # loss, deferred switches, sampler, combiner
    out["loss"], extra_model = _loss(get, source)
    model.update(extra_model)
    for key in _flat(ORIGINAL_DEFAULTS["LOSS"], "LOSS."):
        get.used.add(key)  # the parameters of the losses not chosen have no effect, as in the original
    start = get("TRAIN.TWO_STAGE.START_EPOCH")
    if get("TRAIN.TWO_STAGE.DRW"):
        name = out["loss"]["name"]
        if name == "ce":  # the original's CrossEntropy became n_min/n_c-weighted under DRW
            out["loss"] = {"name": "cost_sensitive_ce", "params": {"gamma": 1.0}}
        if name in ("focal", "ldam"):
            out["loss"]["params"]["reweight"] = True
        out["loss"]["params"]["drw_start_epoch"] = start if name == "ldam" else start + 1
        if name == "label_aware_smoothing":
            del out["loss"]["params"]["drw_start_epoch"]
            notes.append("label-aware smoothing ignored DRW in the original; imported without it "
                         "(add loss.params.drw_start_epoch to defer it)")
    sampler_type = get("TRAIN.SAMPLER.TYPE")
    combiner = get("TRAIN.COMBINER.TYPE")
    if sampler_type == "default":
        out["sampler"] = {"name": "instance", "params": {}}
        get("TRAIN.SAMPLER.WEIGHTED_SAMPLER.TYPE")
    elif sampler_type == "weighted sampler":
        kind = get("TRAIN.SAMPLER.WEIGHTED_SAMPLER.TYPE")
        if kind not in SAMPLERS:
            raise ConfigError(f"{source}: TRAIN.SAMPLER.WEIGHTED_SAMPLER.TYPE {kind!r}: known {', '.join(SAMPLERS)}")
        out["sampler"] = {"name": SAMPLERS[kind], "params": {}}
    elif sampler_type in ("bbn sampler", "dual sampler") and combiner == "bbn_mix":
        out["sampler"] = {"name": "instance", "params": {}}
        get("TRAIN.SAMPLER.WEIGHTED_SAMPLER.TYPE")
    else:
        raise ConfigError(f"{source}: TRAIN.SAMPLER.TYPE {sampler_type!r} with combiner {combiner!r} has no fcc "
                          "equivalent (instance, 'weighted sampler', or BBN's sampler with the bbn_mix combiner)")
    get("TRAIN.SAMPLER.BBN_SAMPLER.TYPE")
    if get("TRAIN.TWO_STAGE.DRS"):
        if out["sampler"]["name"] == "instance":
            raise ConfigError(f"{source}: TRAIN.TWO_STAGE.DRS needs a weighted sampler to defer")
        out["sampler"]["params"]["drs_start_epoch"] = start + 1
    alpha = get("TRAIN.COMBINER.ALPHA")
    mixers = {
        "default": ("none", {}), "fcc": ("none", {}), "dive": ("none", {}),
        "mix_up": ("mixup", {"alpha": alpha}),
        "manifold_mix_up": ("manifold_mixup", {"alpha": alpha}),
        "remix": ("remix", {"alpha": alpha}), "remix_fcc": ("remix", {"alpha": alpha}),
        "bbn_mix": ("bilateral", {"alpha": alpha}),
    }
    if combiner not in mixers:
        raise ConfigError(f"{source}: TRAIN.COMBINER.TYPE {combiner!r} does not exist in the original either "
                          f"(known: {', '.join(mixers)})")
    mix_name, mix_params = mixers[combiner]
    if combiner == "manifold_mix_up":
        mix_params["location"] = LOCATIONS[get("TRAIN.COMBINER.MANIFOLD_MIX_UP.LOCATION")]
    if combiner.startswith("remix"):
        mix_params.update(kappa=get("TRAIN.COMBINER.REMIX.KAPPA"), tau=get("TRAIN.COMBINER.REMIX.TAU"))
    out["mix"] = {"name": mix_name, "params": mix_params}
    for key in ("TRAIN.COMBINER.MANIFOLD_MIX_UP.LOCATION", "TRAIN.COMBINER.REMIX.KAPPA", "TRAIN.COMBINER.REMIX.TAU"):
        get.used.add(key)
    if combiner == "dive" or out["loss"]["name"] == "dive":
        out["distill"] = {"teacher": get("TRAIN.COMBINER.DIVE.TEACHER_MODEL")}
        notes.append("distill.teacher names the original's teacher checkpoint: point it at the teacher's fcc run")
    else:
        get("TRAIN.COMBINER.DIVE.TEACHER_MODEL")

    # FCC: only the fcc / remix_fcc combiners ran it in the original
    if get("FCC.C_TYPE") != "edc":
        raise ConfigError(f"{source}: FCC.C_TYPE {get('FCC.C_TYPE')!r}: the original only had 'edc'")
    work = get("FCC.WORK")
    runs_fcc = combiner in ("fcc", "remix_fcc")
    out["fcc"] = {"enabled": bool(work and runs_fcc), "gamma": get("FCC.GAMMA"),
                  "start_epoch": get("FCC.START_EPOCH") + 1, "rank_by": "index", "round_decimals": 2}
    if work and not runs_fcc:
        notes.append(f"FCC.WORK is true but the {combiner!r} combiner never ran FCC in the original: imported "
                     "with fcc.enabled false (set it true to use FCC with this method)")
    if runs_fcc and not work:
        notes.append(f"combiner {combiner!r} without FCC.WORK: FCC off, as in the original")

    # optimisation
    epochs = get("TRAIN.MAX_EPOCH")
    train.update(epochs=epochs, schedule_epochs=epochs, batch_size=get("TRAIN.BATCH_SIZE"),
                 lr=get("TRAIN.OPTIMIZER.BASE_LR"), momentum=get("TRAIN.OPTIMIZER.MOMENTUM"),
                 weight_decay=get("TRAIN.OPTIMIZER.WEIGHT_DECAY"), nesterov=True)
    optimizer = get("TRAIN.OPTIMIZER.TYPE")
    if optimizer not in ("SGD", "ADAM"):
        raise ConfigError(f"{source}: TRAIN.OPTIMIZER.TYPE {optimizer!r}: known SGD, ADAM")
    train["optimizer"] = optimizer.lower()
    schedule = get("TRAIN.LR_SCHEDULER.TYPE")
    get("TRAIN.LR_SCHEDULER.COSINE_DECAY_END")
    if schedule in ("multistep", "warmup"):
        train.update(scheduler="multistep", milestones=list(get("TRAIN.LR_SCHEDULER.LR_STEP")),
                     lr_factor=get("TRAIN.LR_SCHEDULER.LR_FACTOR"),
                     warmup_epochs=get("TRAIN.LR_SCHEDULER.WARM_EPOCH") if schedule == "warmup" else 0)
        get("TRAIN.LR_SCHEDULER.WARM_EPOCH")
    elif schedule == "cosine":
        if get("TRAIN.LR_SCHEDULER.COSINE_DECAY_END"):
            raise ConfigError(f"{source}: TRAIN.LR_SCHEDULER.COSINE_DECAY_END: fcc's cosine schedule decays over "
                              "the whole run")
        train.update(scheduler="cosine", min_lr=1e-4, warmup_epochs=0)
        for key in ("TRAIN.LR_SCHEDULER.LR_STEP", "TRAIN.LR_SCHEDULER.LR_FACTOR", "TRAIN.LR_SCHEDULER.WARM_EPOCH"):
            get(key)
    else:
        raise ConfigError(f"{source}: TRAIN.LR_SCHEDULER.TYPE {schedule!r}: known multistep, warmup, cosine")
    if get("TRAIN.DISTRIBUTED"):
        train["sync_bn"] = True
        notes.append("TRAIN.DISTRIBUTED: the original's batch was per process; fcc's train.batch_size is the "
                     "global batch, so multiply it by the number of GPUs to reproduce such a run")
    get("TRAIN.SYNCBN")
    train["eval_every"] = get("VALID_STEP")

    # evaluation
    ev["batch_size"] = get("TEST.BATCH_SIZE")
    if get("TEST.TAU_NORM.USE_TAU_NORM"):
        ev["tau_norm"] = get("TEST.TAU_NORM.TAU")
    else:
        get("TEST.TAU_NORM.TAU")

    for key in NO_EFFECT:
        get(key)
    leftover = sorted(set(_flat(ORIGINAL_DEFAULTS)) - get.used)
    if leftover:  # every key of the schema is handled above; this guards the mapping itself
        raise AssertionError(f"unmapped original keys: {leftover}")
    notes += [f"{key}: no effect here ({why})" for key, why in NO_EFFECT.items() if key in set_here]
    return out, notes


def import_config(path: Path) -> tuple[str, list[str]]:
    """The fcc YAML text (validated) for an original config file, and the notes it carries."""
    original = parse_yaml(read_input_text(path, "original config", ConfigError), f"{path}: not valid YAML")
    mapping, notes = convert(original or {}, str(path))
    cfg = from_dict(mapping, f"{path} (imported)")
    validate(cfg)
    header = [f"# Imported from the original code's config {path}", "# by `fcc import-config`: the original's "
              "behaviour (its epochs, tau by class index, rounded), not its bugs."]
    header += [f"# note: {n}" for n in notes]
    body = yaml.safe_dump(mapping, sort_keys=False, default_flow_style=False)
    return "\n".join(header) + "\n" + body, notes
