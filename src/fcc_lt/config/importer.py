"""Import a config file of the original FCC / bag-of-tricks code (yacs YAML) as an fcc config.

`fcc import-config ORIGINAL.yaml -o ours.yaml` reads the original's file on top of the original's own
defaults (an original config relies on them), maps every key to its fcc equivalent with the original's
*behaviour* (its epochs, FCC and deferred switches at the epochs it actually used, tau rounded and
assigned by class index, FCC only where its combiner ran it, remix's batch-mean label weights), and
writes a commented fcc config. The header names every key of the file that has no effect here and why
(worker counts, logging steps, apex, settings the original itself ignored, ...), and every place where
the imported run differs from a literal reading of the file. What truly cannot be reproduced is an error
naming the key: keys the original did not know, BBN's paired sampler with the default combiner, CAM
generation configs (a command here: the error gives it) and combiners that do not exist.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from fcc_lt.config.load import deep_merge, from_dict, load_yaml_file
from fcc_lt.config.original import (
    BACKBONES,
    DATASETS,
    DRW_IGNORED,
    JSON_DATASETS,
    LOCATIONS,
    LOSS_TYPES,
    MIXERS,
    NO_EFFECT,
    ORIGINAL_DEFAULTS,
    SAMPLERS,
    TEST_OPS,
    Reader,
    check_original,
    flat,
    literal,
)
from fcc_lt.config.validate import validate
from fcc_lt.util.errors import ConfigError


def _loss(get: Reader) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """loss section, extra model settings and notes for LOSS.LOSS_TYPE."""
    kind = get("LOSS.LOSS_TYPE")
    if kind not in LOSS_TYPES:
        raise get.error(f"LOSS.LOSS_TYPE {kind!r} has no fcc equivalent (the original's losses: "
                        f"{', '.join(LOSS_TYPES)})")
    name, params = LOSS_TYPES[kind]
    loss = {"name": name, "params": {ours: get(f"LOSS.{kind}.{theirs}") for ours, theirs in params.items()}}
    notes: list[str] = []
    if kind == "DiVEKLD":
        base = get("LOSS.DiVEKLD.BASELOSS")
        base_names = {"BSCE": "balanced_softmax", "BalancedSoftmaxCE": "balanced_softmax", "CrossEntropy": "ce"}
        if base not in base_names:
            raise get.error(f"LOSS.DiVEKLD.BASELOSS {base!r} is not one fcc can map ({', '.join(base_names)})")
        loss["params"]["base"] = base_names[base]
        if base == "BSCE":
            notes.append("LOSS.DiVEKLD.BASELOSS 'BSCE' was undefined in the original (a NameError): imported as "
                         "balanced softmax, the loss it stands for")
    if kind == "EffectiveClassMarginLoss":
        notes.append("the original's ECM read its class counts from cifar_image_count.pkl in the working directory "
                     "(assuming 100 classes); fcc takes them from the training split")
    for key in flat(ORIGINAL_DEFAULTS["LOSS"], "LOSS."):
        if key.startswith("LOSS.") and key.count(".") == 2 and not key.startswith(f"LOSS.{kind}."):
            get.unused(key, "a parameter of a loss this config does not use")
    return loss, ({"head": "cosine"} if kind == "LDAMLoss" else {}), notes


def _first_epoch(get: Reader, key: str, start: int, epochs: int, what: str, notes: list[str]) -> int | None:
    """The original's strict 'epoch > S' start as fcc's first active epoch S + 1; None (with a note) when
    that epoch lies past the run, where the original never switched."""
    if start + 1 > epochs:
        notes.append(f"{key} {start}: {what} would start at epoch {start + 1}, after the last epoch {epochs}, "
                     "so it never ran in the original; imported without it")
        return None
    return max(start, 0) + 1


def _data(get: Reader, data: dict[str, Any], notes: list[str]) -> bool:
    """The data section; returns whether the dataset is a JSON image dataset."""
    dataset = get("DATASET.DATASET")
    transforms = ("TRANSFORMS.TRAIN_TRANSFORMS", "TRANSFORMS.TEST_TRANSFORMS",
                  "TRANSFORMS.PROCESS_DETAIL.RANDOM_CROP.PADDING",
                  "TRANSFORMS.PROCESS_DETAIL.RANDOM_RESIZED_CROP.SCALE",
                  "TRANSFORMS.PROCESS_DETAIL.RANDOM_RESIZED_CROP.RATIO")
    if dataset in DATASETS:
        data["dataset"] = DATASETS[dataset]
        data["imbalance_factor"] = round(1.0 / get("DATASET.IMBALANCECIFAR.RATIO"), 6)
        data["subset_seed"] = get("DATASET.IMBALANCECIFAR.RANDOM_SEED")
        get.unused((*transforms, "INPUT_SIZE", "COLOR_SPACE"),
                   "the original hard-coded CIFAR's pipeline: RGB, 32x32, pad-4 crop and flip")
        get.unused(("DATASET.TRAIN_JSON", "DATASET.VALID_JSON"), "CIFAR is read from its own files")
        return False
    if dataset not in JSON_DATASETS:
        raise get.error(f"DATASET.DATASET {dataset!r} is not one of the original's datasets "
                        f"({', '.join([*DATASETS, *sorted(JSON_DATASETS)])})")
    data["dataset"] = "json"
    data["train_json"] = get("DATASET.TRAIN_JSON")
    data["test_json"] = get("DATASET.VALID_JSON")
    notes.append("DATASET.VALID_JSON is the split the original validated (and selected best_model.pth) on: "
                 "imported as data.test_json; add data.val_json to select on a validation split")
    get.unused(("DATASET.IMBALANCECIFAR.RATIO", "DATASET.IMBALANCECIFAR.RANDOM_SEED"),
               "JSON datasets are used as they are (fcc data make-lt makes long-tailed subsets)")
    if get("COLOR_SPACE") != "RGB":
        raise get.error(f"COLOR_SPACE {get('COLOR_SPACE')!r}: fcc decodes images as RGB only")
    height, width = get("INPUT_SIZE")
    if height != width:
        raise get.error(f"INPUT_SIZE {height}x{width}: fcc trains on square crops")
    data["image_size"] = int(height)
    train_ops = set(get("TRANSFORMS.TRAIN_TRANSFORMS"))
    geometric = train_ops - {"color_jitter"}
    if geometric == {"random_resized_crop", "random_horizontal_flip"}:
        data["augment"] = "rrc_flip"
        data["rrc_scale"] = list(get("TRANSFORMS.PROCESS_DETAIL.RANDOM_RESIZED_CROP.SCALE"))
        data["rrc_ratio"] = list(get("TRANSFORMS.PROCESS_DETAIL.RANDOM_RESIZED_CROP.RATIO"))
        get.unused("TRANSFORMS.PROCESS_DETAIL.RANDOM_CROP.PADDING", "used by 'random_crop' only")
    elif geometric == {"random_crop", "random_horizontal_flip"}:
        data["augment"] = "crop_flip"
        if get("TRANSFORMS.PROCESS_DETAIL.RANDOM_CROP.PADDING") != 4:
            raise get.error("TRANSFORMS.PROCESS_DETAIL.RANDOM_CROP.PADDING: fcc's random crop pads by 4 pixels")
        get.unused(("TRANSFORMS.PROCESS_DETAIL.RANDOM_RESIZED_CROP.SCALE",
                    "TRANSFORMS.PROCESS_DETAIL.RANDOM_RESIZED_CROP.RATIO"), "used by 'random_resized_crop' only")
    else:
        raise get.error(f"TRANSFORMS.TRAIN_TRANSFORMS {tuple(sorted(train_ops))}: fcc reproduces "
                        "('random_resized_crop', 'random_horizontal_flip') and ('random_crop', "
                        "'random_horizontal_flip'), each optionally with 'color_jitter'")
    if "color_jitter" in train_ops:
        data["color_jitter"] = 0.4
    test_ops = tuple(get("TRANSFORMS.TEST_TRANSFORMS"))
    if test_ops == ():
        data["test_crop_ratio"] = 1.0
        notes.append("TRANSFORMS.TEST_TRANSFORMS (): the original evaluated images as they are; fcc resizes the "
                     "shorter side to data.image_size and centre-crops (the identity for images of that size)")
    elif test_ops != TEST_OPS:
        raise get.error(f"TRANSFORMS.TEST_TRANSFORMS {test_ops}: fcc evaluates with {TEST_OPS} (or, for images "
                        "of INPUT_SIZE already, ())")
    return True


def _cam_generation(get: Reader, is_json: bool) -> ConfigError:
    """The error for a CAM generation config, giving the equivalent fcc command."""
    out = get("DATASET.CAM_DATA_SAVE_PATH") or "DIR"
    thres = get("DATASET.CAM_NUMBER_THRES")
    cap = f" --cap {thres}" if is_json and thres > 0 else ""
    model = get("NETWORK.PRETRAINED_MODEL") if get("NETWORK.PRETRAINED") else ""
    loaded = f" (this config loaded the original's {model})" if model else ""
    cifar = " (the original ignored CAM_NUMBER_THRES for CIFAR)" if not is_json and thres > 0 else ""
    return get.error("DATASET.GENERATE_CAM_BASED_DATASET: this config only generates the CAM-based images and exits; "
                     f"in fcc that is a command: fcc data cam-generate STAGE1_RUN --out {out}{cap}{cifar}, with "
                     f"STAGE1_RUN the fcc run of the first stage{loaded}. The second stage then takes "
                     f"data.extra_train_json: {Path(out) / 'cam_train.json'} (the original's "
                     f"CAM_DATA_JSON_SAVE_PATH {get('DATASET.CAM_DATA_JSON_SAVE_PATH')!r})")


def _network(get: Reader, out: dict[str, Any], is_json: bool, notes: list[str]) -> None:
    model, train = out["model"], out["train"]
    backbone = get("BACKBONE.TYPE")
    if backbone not in BACKBONES:
        raise get.error(f"BACKBONE.TYPE {backbone!r}: known {', '.join(BACKBONES)}")
    model["backbone"] = BACKBONES[backbone]
    if backbone == "res32_cifar" and is_json:
        notes.append("BACKBONE.TYPE res32_cifar on 224-pixel images (the original's iNat18 configs did this "
                     "by mistake): consider model.backbone=resnet50")
    if get.value("MODULE.TYPE") != "GAP":
        raise get.error(f"MODULE.TYPE {get.value('MODULE.TYPE')!r}: without pooling the original's classifier does "
                        "not fit the feature maps (its runs fail); fcc pools globally ('GAP')")
    head = get("CLASSIFIER.TYPE")
    pretrained = bool(get("NETWORK.PRETRAINED"))
    freeze: list[str] = ["backbone"] if get("BACKBONE.FREEZE") else []
    if head in ("FC", "cRT", "LWS"):
        model["head"] = "lws" if head == "LWS" else "linear"
        if not get("CLASSIFIER.BIAS"):
            model["head_params"] = {"bias": False}
    elif head == "FCNorm":
        model["head"] = "cosine"
        get.unused("CLASSIFIER.BIAS", "the FCNorm (cosine) classifier has no bias")
    else:
        raise get.error(f"CLASSIFIER.TYPE {head!r}: known FC, FCNorm, cRT, LWS")
    if pretrained:
        model["init_from"] = get("NETWORK.PRETRAINED_MODEL")
        notes.append(f"model.init_from {model['init_from']!r} is the original's checkpoint: fcc reads such files "
                     "(their key names are converted), or point it at the first stage's fcc run "
                     "(RUN/checkpoints/last.pt)")
        if head in ("cRT", "LWS"):  # the original froze the backbone when it loaded the first stage
            freeze = ["backbone"]
        if head == "cRT":
            model["init_exclude"] = ["head"]
            notes.append("cRT: a fresh classifier on the frozen backbone, whose BN statistics stay frozen too "
                         "(the original kept updating them)")
        if head == "LWS":
            model["init_exclude"] = ["head.scales"]
            notes.append("LWS: the first stage's classifier becomes the frozen part of the lws head and only "
                         "head.scales trains, on the frozen backbone whose BN statistics stay frozen too (the "
                         "original kept updating them)")
    else:
        get.unused("NETWORK.PRETRAINED_MODEL", "NETWORK.PRETRAINED is false")
    bb_pretrained = get.value("BACKBONE.PRETRAINED_MODEL")
    if bb_pretrained and backbone != "res10" and not pretrained and not get.value("RESUME_MODEL"):
        model["init_from"] = get("BACKBONE.PRETRAINED_MODEL")
        model["init_exclude"] = ["head"]
        notes.append(f"BACKBONE.PRETRAINED_MODEL {bb_pretrained!r}: the backbone starts from that file's weights "
                     "(model.init_from with init_exclude: [head])")
    else:
        get.unused("BACKBONE.PRETRAINED_MODEL", "the original loaded it only for res32_cifar / res50 without "
                   "NETWORK.PRETRAINED and RESUME_MODEL")
    if freeze:
        train["freeze"] = freeze
    eval_mode = get.value("EVAL_MODE")
    if eval_mode and not freeze:
        raise get.error("EVAL_MODE: the original trained with every BN layer in eval mode; fcc keeps only frozen "
                        "modules in eval mode (train.freeze, train.freeze_bn)")
    get.unused("EVAL_MODE", "frozen modules keep their BN statistics in fcc (train.freeze_bn, default true)")


def _mixing(get: Reader, out: dict[str, Any], notes: list[str]) -> str:
    """sampler and mix sections; returns the combiner."""
    combiner = get("TRAIN.COMBINER.TYPE")
    if combiner not in MIXERS:
        raise get.error(f"TRAIN.COMBINER.TYPE {combiner!r} does not exist in the original either (its runs fail; "
                        f"known: {', '.join(MIXERS)})")
    sampler_type = get("TRAIN.SAMPLER.TYPE")
    if sampler_type == "default":
        out["sampler"] = {"name": "instance", "params": {}}
        get.unused("TRAIN.SAMPLER.WEIGHTED_SAMPLER.TYPE", "TRAIN.SAMPLER.TYPE is 'default'")
        if not get("TRAIN.SHUFFLE"):
            raise get.error("TRAIN.SHUFFLE false: fcc's instance sampler always shuffles")
    elif sampler_type == "weighted sampler":
        kind = get("TRAIN.SAMPLER.WEIGHTED_SAMPLER.TYPE")
        if kind not in SAMPLERS:
            raise get.error(f"TRAIN.SAMPLER.WEIGHTED_SAMPLER.TYPE {kind!r}: known {', '.join(SAMPLERS)}")
        out["sampler"] = {"name": SAMPLERS[kind], "params": {}}
        get.unused("TRAIN.SHUFFLE", "a weighted sampler draws its own indices")
    elif sampler_type in ("bbn sampler", "dual sampler"):
        if combiner != "bbn_mix":
            raise get.error(f"TRAIN.SAMPLER.TYPE {sampler_type!r} with the {combiner!r} combiner: the original "
                            "concatenated each instance batch with as many reverse-sampled images (twice the "
                            "batch per step); fcc has no such paired sampler. Use sampler.name: reverse (whole "
                            "epochs drawn with p_c proportional to n_max / n_c) or mix.name: bilateral (each image "
                            "mixed with a reverse-sampled one)")
        if get("TRAIN.SAMPLER.BBN_SAMPLER.TYPE") != "reverse":
            raise get.error(f"TRAIN.SAMPLER.BBN_SAMPLER.TYPE {get('TRAIN.SAMPLER.BBN_SAMPLER.TYPE')!r}: fcc's "
                            "bilateral mix draws its second batch with the reverse sampler only")
        out["sampler"] = {"name": "instance", "params": {}}
        get.unused("TRAIN.SAMPLER.WEIGHTED_SAMPLER.TYPE", "TRAIN.SAMPLER.TYPE is not 'weighted sampler'")
        get.unused("TRAIN.SHUFFLE", "fcc's instance sampler always shuffles")
    else:
        raise get.error(f"TRAIN.SAMPLER.TYPE {sampler_type!r}: known 'default', 'weighted sampler', 'bbn sampler'")
    if sampler_type not in ("bbn sampler", "dual sampler"):
        get.unused("TRAIN.SAMPLER.BBN_SAMPLER.TYPE", "TRAIN.SAMPLER.TYPE is not 'bbn sampler'")

    mix_name = MIXERS[combiner]
    params: dict[str, Any] = {}
    if mix_name == "none":
        get.unused("TRAIN.COMBINER.ALPHA", f"the {combiner!r} combiner does not mix")
    else:
        params["alpha"] = get("TRAIN.COMBINER.ALPHA")
    if combiner == "manifold_mix_up":
        location = get("TRAIN.COMBINER.MANIFOLD_MIX_UP.LOCATION")
        if location not in LOCATIONS:
            raise get.error(f"TRAIN.COMBINER.MANIFOLD_MIX_UP.LOCATION {location!r}: known {', '.join(LOCATIONS)}")
        params["location"] = LOCATIONS[location]
    else:
        get.unused("TRAIN.COMBINER.MANIFOLD_MIX_UP.LOCATION", "used by the 'manifold_mix_up' combiner only")
    if combiner.startswith("remix"):
        params.update(kappa=get("TRAIN.COMBINER.REMIX.KAPPA"), tau=get("TRAIN.COMBINER.REMIX.TAU"),
                      reproduce_original=True)
        notes.append("remix as the original computed it (mix.params.reproduce_original: true): every sample's "
                     "label weight is the batch mean of the remix weights"
                     + (", and FCC scales every sample by label a's factor" if combiner == "remix_fcc" else "")
                     + "; drop the key for per-sample weights (docs/differences.md)")
    else:
        get.unused(("TRAIN.COMBINER.REMIX.KAPPA", "TRAIN.COMBINER.REMIX.TAU"), "used by the remix combiners only")
    out["mix"] = {"name": mix_name, "params": params}
    if combiner == "dive" or out["loss"]["name"] == "dive":
        out["distill"] = {"teacher": get("TRAIN.COMBINER.DIVE.TEACHER_MODEL")}
        notes.append("distill.teacher names the original's teacher checkpoint: point it at the teacher's fcc run, "
                     "or keep the file (fcc converts original-code checkpoints)")
    else:
        get.unused("TRAIN.COMBINER.DIVE.TEACHER_MODEL", "used by the 'dive' combiner only")
    return combiner


def _deferred(get: Reader, out: dict[str, Any], epochs: int, notes: list[str]) -> None:
    """DRW (a loss parameter here) and DRS (a sampler parameter) at the epochs the original switched."""
    loss = out["loss"]
    kind = get.value("LOSS.LOSS_TYPE")
    drw = get.value("TRAIN.TWO_STAGE.DRW") and kind not in DRW_IGNORED
    drs = get.value("TRAIN.TWO_STAGE.DRS") and out["sampler"]["name"] != "instance"
    if get.value("TRAIN.TWO_STAGE.DRW") and not drw:
        get.unused("TRAIN.TWO_STAGE.DRW", f"the original's {kind} ignores it: {DRW_IGNORED[kind]}; imported as "
                   f"plain {loss['name']}")
        if kind == "CrossEntropyLabelAwareSmooth":
            notes.append("label-aware smoothing under DRW: add loss.params.drw_start_epoch to defer its "
                         "class-dependent smoothing, which the original's DRW config meant but did not do")
    else:
        get("TRAIN.TWO_STAGE.DRW")
    if get.value("TRAIN.TWO_STAGE.DRS") and not drs:
        get.unused("TRAIN.TWO_STAGE.DRS", "the original deferred weighted samplers only, and TRAIN.SAMPLER.TYPE is "
                   "not 'weighted sampler'")
    else:
        get("TRAIN.TWO_STAGE.DRS")
    if not (drw or drs):
        get.unused("TRAIN.TWO_STAGE.START_EPOCH", "no deferred re-weighting or re-sampling acts in this config")
        return
    start = get("TRAIN.TWO_STAGE.START_EPOCH")
    if drw:
        if start < 1:
            raise get.error("TRAIN.TWO_STAGE.START_EPOCH 0 with DRW: the original divided by it and failed")
        if loss["name"] == "ldam":  # LDAM switched at epoch >= S, every other loss at (epoch - 1) // S >= 1
            first: int | None = start if start <= epochs else None
            if first is None:
                notes.append(f"TRAIN.TWO_STAGE.START_EPOCH {start}: LDAM's DRW would start after the last epoch "
                             f"{epochs}, so it never ran in the original; imported without it")
        else:
            first = _first_epoch(get, "TRAIN.TWO_STAGE.START_EPOCH", start, epochs, "DRW", notes)
        if first is not None:
            if loss["name"] in ("focal", "ldam"):
                loss["params"]["reweight"] = True
            loss["params"]["drw_start_epoch"] = first
    if drs:
        first = _first_epoch(get, "TRAIN.TWO_STAGE.START_EPOCH", start, epochs, "DRS", notes)
        if first is None:
            out["sampler"] = {"name": "instance", "params": {}}
        else:
            out["sampler"]["params"]["drs_start_epoch"] = first


def _fcc(get: Reader, out: dict[str, Any], combiner: str, epochs: int, notes: list[str]) -> None:
    """FCC only where the original ran it: FCC.WORK with the fcc / remix_fcc combiners, epochs > START."""
    work = get.value("FCC.WORK")
    runs_fcc = combiner in ("fcc", "remix_fcc")
    if not (work and runs_fcc):
        get.unused(("FCC.WORK", "FCC.START_EPOCH", "FCC.GAMMA"), "FCC.WORK is false" if not work else
                   f"the {combiner!r} combiner never ran FCC in the original")
        if work:
            notes.append(f"FCC.WORK is true but the {combiner!r} combiner never ran FCC in the original: imported "
                         "with fcc.enabled false (set it true to use FCC with this method)")
        elif runs_fcc:
            notes.append(f"combiner {combiner!r} without FCC.WORK: FCC off, as in the original")
        out["fcc"] = {"enabled": False}
        return
    get("FCC.WORK")
    if get.value("FCC.C_TYPE") != "edc":
        raise get.error(f"FCC.C_TYPE {get.value('FCC.C_TYPE')!r}: the original only had 'edc' (others raise there)")
    first = _first_epoch(get, "FCC.START_EPOCH", get("FCC.START_EPOCH"), epochs, "FCC", notes)
    if first is None:
        get.unused("FCC.GAMMA", "FCC never ran in the original (FCC.START_EPOCH)")
        out["fcc"] = {"enabled": False}
        return
    out["fcc"] = {"enabled": True, "gamma": get("FCC.GAMMA"), "start_epoch": first, "rank_by": "index",
                  "round_decimals": 2}
    notes.append("FCC with the original's factors: tau by class index (fcc.rank_by: index), rounded to 2 decimals "
                 "(fcc.round_decimals: 2); fcc's own default ranks by training frequency without rounding")


def _schedule(get: Reader, train: dict[str, Any], epochs: int, notes: list[str]) -> None:
    optimizer = get("TRAIN.OPTIMIZER.TYPE")
    if optimizer not in ("SGD", "ADAM"):
        raise get.error(f"TRAIN.OPTIMIZER.TYPE {optimizer!r}: known SGD, ADAM")
    train.update(epochs=epochs, schedule_epochs=epochs, batch_size=get("TRAIN.BATCH_SIZE"),
                 optimizer=optimizer.lower(), lr=get("TRAIN.OPTIMIZER.BASE_LR"),
                 weight_decay=get("TRAIN.OPTIMIZER.WEIGHT_DECAY"))
    if optimizer == "SGD":
        train.update(momentum=get("TRAIN.OPTIMIZER.MOMENTUM"), nesterov=True)
    else:
        get.unused("TRAIN.OPTIMIZER.MOMENTUM", "the original's Adam used betas (0.9, 0.999)")
    schedule = get("TRAIN.LR_SCHEDULER.TYPE")
    if schedule in ("multistep", "warmup"):
        steps = list(get("TRAIN.LR_SCHEDULER.LR_STEP"))
        kept = [m for m in steps if m <= epochs]
        late = [m for m in steps if m > epochs]
        if late:
            notes.append(f"TRAIN.LR_SCHEDULER.LR_STEP {steps}: {'epochs' if len(late) > 1 else 'epoch'} "
                         f"{', '.join(map(str, late))} lie{'' if len(late) > 1 else 's'} past the last epoch "
                         f"{epochs}, so the original never dropped the LR there; imported as {kept}")
        train.update(scheduler="multistep", milestones=kept, lr_factor=get("TRAIN.LR_SCHEDULER.LR_FACTOR"))
        if schedule == "warmup":
            train["warmup_epochs"] = get("TRAIN.LR_SCHEDULER.WARM_EPOCH")
        else:
            train["warmup_epochs"] = 0
            get.unused("TRAIN.LR_SCHEDULER.WARM_EPOCH", "read by the 'warmup' scheduler only")
        get.unused("TRAIN.LR_SCHEDULER.COSINE_DECAY_END", "read by the 'cosine' scheduler only")
    elif schedule == "cosine":
        if get("TRAIN.LR_SCHEDULER.COSINE_DECAY_END"):
            raise get.error("TRAIN.LR_SCHEDULER.COSINE_DECAY_END: fcc's cosine schedule decays over the whole run")
        train.update(scheduler="cosine", min_lr=1e-4, warmup_epochs=0)
        get.unused(("TRAIN.LR_SCHEDULER.LR_STEP", "TRAIN.LR_SCHEDULER.LR_FACTOR", "TRAIN.LR_SCHEDULER.WARM_EPOCH"),
                   "not read by the 'cosine' scheduler")
    else:
        raise get.error(f"TRAIN.LR_SCHEDULER.TYPE {schedule!r}: known multistep, warmup, cosine")
    train["tensorboard"] = get("TRAIN.TENSORBOARD.ENABLE")
    if train["tensorboard"]:
        notes.append("train.tensorboard: true, as the original's TRAIN.TENSORBOARD.ENABLE (on by default): it needs "
                     "pip install 'fcc-lt[tensorboard]'; set it false to train without")
    if get("TRAIN.DISTRIBUTED"):
        train["sync_bn"] = True
        notes.append("TRAIN.DISTRIBUTED: the original's batch was per process; fcc's train.batch_size is the "
                     "global batch, so multiply it by the number of GPUs to reproduce such a run")
    valid = get("VALID_STEP")
    if valid < 1:  # -1 switched in-training validation off
        train["eval_every"] = epochs
        notes.append(f"VALID_STEP {valid}: no validation during training in the original; fcc evaluates after "
                     "the last epoch (train.eval_every = train.epochs)")
    else:
        train["eval_every"] = valid


def convert(original: dict[str, Any], source: str = "original config") -> tuple[dict[str, Any], list[str]]:
    """(fcc config mapping, notes) for a parsed original config file.

    The notes name every key the file sets that has no effect here ("KEY: no effect here (why)"), then
    every place where the imported run is not a literal reading of the file.
    """
    if not isinstance(original, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    original = literal(original)
    check_original(original, source)
    get = Reader(deep_merge(copy.deepcopy(ORIGINAL_DEFAULTS), original), source)
    notes: list[str] = []
    out: dict[str, Any] = {"out": str(Path(get("OUTPUT_DIR")) / get("NAME")), "data": {}, "model": {},
                           "train": {}, "fcc": {}, "eval": {}}
    is_json = _data(get, out["data"], notes)
    if get("DATASET.GENERATE_CAM_BASED_DATASET"):
        raise _cam_generation(get, is_json)
    if get("DATASET.USE_CAM_BASED_DATASET"):
        out["data"]["extra_train_json"] = get("DATASET.CAM_DATA_JSON_SAVE_PATH")
        notes.append("data.extra_train_json is the original's generated JSON: point it at DIR/cam_train.json of "
                     "fcc data cam-generate")
    else:
        get.unused("DATASET.CAM_DATA_JSON_SAVE_PATH", "DATASET.USE_CAM_BASED_DATASET is false")
    _network(get, out, is_json, notes)
    out["loss"], extra_model, loss_notes = _loss(get)
    out["model"].update(extra_model)
    notes += loss_notes
    if out["model"].get("head") == "cosine":
        notes.append("the cosine (FCNorm) head starts from class-normalised weights (model.head_params.init_norm: "
                     "class), where the original's FCNorm normalised each feature column (init_norm: feature "
                     "reproduces it); and it trains under train.amp: auto (bf16 on CUDA where supported, else fp16 "
                     "with a scaler; fp32 on CPU), where the original ran apex O1 fp16 whenever apex was installed "
                     "(TRAIN.APEX, on by default): set train.amp=fp16 to come closest")
    epochs = get("TRAIN.MAX_EPOCH")
    combiner = _mixing(get, out, notes)
    _deferred(get, out, epochs, notes)
    _fcc(get, out, combiner, epochs, notes)
    _schedule(get, out["train"], epochs, notes)
    out["eval"]["batch_size"] = get("TEST.BATCH_SIZE")
    if get("TEST.TAU_NORM.USE_TAU_NORM"):
        out["eval"]["tau_norm"] = get("TEST.TAU_NORM.TAU")
    else:
        get.unused("TEST.TAU_NORM.TAU", "TEST.TAU_NORM.USE_TAU_NORM is false")
    for key, why in NO_EFFECT.items():
        get.unused(key, why)

    schema = flat(ORIGINAL_DEFAULTS)
    unhandled = [k for k in schema if k not in get.used and k not in get.reasons]
    if unhandled:  # every key of the schema is handled above; this guards the mapping itself
        raise AssertionError(f"unmapped original keys: {unhandled}")
    no_effect = [f"{k}: no effect here ({get.reasons[k]})" for k in flat(original) if k not in get.used]
    return out, no_effect + notes


def import_config(path: Path) -> tuple[str, list[str]]:
    """The fcc YAML text (validated) for an original config file, and the notes it carries."""
    original = load_yaml_file(path, "original config")
    mapping, notes = convert(original or {}, str(path))
    cfg = from_dict(mapping, f"{path} (imported)")
    try:
        validate(cfg)
    except ConfigError as err:  # a value the original accepted and fcc does not: name the file it came from
        raise ConfigError(f"{path} (imported): {err}") from None
    header = [f"# Imported from the original code's config {path} by `fcc import-config`:",
              "# the run the original code gives (its epochs and switches, FCC's index-ranked rounded factors,",
              "# remix's batch-mean weights), except the defects fcc fixes on purpose (docs/differences.md)."]
    if notes:
        header.append("# Keys of the file without effect here, and what differs from a literal reading:")
        header += [f"#   {n}" for n in notes]
    body = yaml.safe_dump(mapping, sort_keys=False, default_flow_style=False)
    return "\n".join(header) + "\n" + body, notes
