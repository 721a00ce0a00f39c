"""What a run is: the typed sections of a config, with their defaults (one page).

A config file is a nested mapping of lower-case keys mirroring the dataclasses below (loaded by
fcc_lt.config.load, checked by fcc_lt.config.validate). The fully resolved config is what a run
directory stores as config.yaml. Epoch-valued keys follow fcc_lt.config.schedule: epochs count from 1
and ``*start_epoch`` names the first active epoch.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml


@dataclass
class DataConfig:
    """Which dataset, where it lives, and how the long-tailed training split is made."""

    dataset: str = "cifar10"
    root: str = "data"
    download: bool = True
    imbalance_factor: float = 100.0
    subset_seed: int = 0
    val_per_class: int = 0
    extra_train_json: str | None = None  # more training images (e.g. from `fcc data cam-generate`)
    augment: Literal["crop_flip", "rrc_flip", "none"] = "crop_flip"
    # image-file datasets ('json', 'image_folder'): see docs/datasets.md
    train_json: str | None = None
    val_json: str | None = None
    test_json: str | None = None
    image_root: str | None = None
    image_size: int = 224
    test_crop_ratio: float = 0.875
    rrc_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])
    rrc_ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])
    color_jitter: float = 0.0
    mean: list[float] | None = None
    std: list[float] | None = None
    loader: Literal["auto", "device", "workers"] = "auto"
    preload_max_mb: int = 2048
    workers: int | None = None
    prefetch: int = 2
    jpeg_draft: bool = False
    check_images: Literal["none", "exists", "header", "decode"] = "exists"
    skip_bad_images: bool = False


@dataclass
class ModelConfig:
    """Backbone -> [FCC] -> pool -> head, and where initial weights come from."""

    backbone: str = "resnet32"
    backbone_params: dict[str, Any] = field(default_factory=dict)
    head: str = "linear"
    head_params: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    init_exclude: list[str] = field(default_factory=list)


@dataclass
class TrainConfig:
    """Optimisation, schedule, precision, logging and what is frozen."""

    epochs: int = 200
    batch_size: int = 128
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 2e-4
    nesterov: bool = True
    scheduler: Literal["multistep", "cosine", "constant"] = "multistep"
    schedule_epochs: int | None = None
    milestones: list[int] = field(default_factory=lambda: [160, 180])
    lr_factor: float = 0.01
    warmup_epochs: int = 5
    warmup_start_factor: float = 1.0 / 3.0
    min_lr: float = 0.0
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    channels_last: bool | Literal["auto"] = "auto"  # auto: per device, fcc_lt.engine.speed.use_channels_last
    compile: Literal["auto", "on", "off"] = "auto"  # torch.compile of the training forward (fcc_lt.engine.speed)
    compile_mode: Literal["auto", "default", "reduce-overhead", "max-autotune",
                          "max-autotune-no-cudagraphs"] = "auto"
    grad_accum_steps: int = 1
    sync_bn: bool = False
    drop_last: bool = True
    freeze: list[str] = field(default_factory=list)
    freeze_bn: bool | None = None  # None: frozen modules keep their BN statistics (as true); false: they update
    eval_every: int = 1
    log_every: int = 50
    progress: bool = True
    tensorboard: bool = False
    tracker: Literal["none", "mlflow", "wandb"] = "none"  # an experiment tracker besides metrics.jsonl
    tracker_uri: str | None = None  # MLflow tracking URI (default: the file store ./mlruns)
    tracker_project: str = "fcc"  # MLflow experiment / W&B project
    max_nonfinite_steps: int = 0
    keep_every: int | None = None  # also keep checkpoints/epoch_<N>.pt of every N-th epoch
    keep_best: int = 0  # also keep the epoch checkpoints of the best K epochs by validation top-1
    max_steps_per_epoch: int | None = None  # smoke runs: at most this many steps per epoch
    deterministic: bool = False


@dataclass
class FccConfig:
    """Feature Clusters Compression: tau_k = 1 + gamma - k * gamma / C for class rank k."""

    enabled: bool = False
    gamma: float = 0.5
    start_epoch: int = 1
    rank_by: Literal["frequency", "index"] = "frequency"
    round_decimals: int | None = None


@dataclass
class PartConfig:
    """A registered part chosen by name, with its own keyword parameters."""

    name: str = ""
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class LossConfig(PartConfig):
    name: str = "ce"


@dataclass
class SamplerConfig(PartConfig):
    name: str = "instance"


@dataclass
class MixConfig(PartConfig):
    name: str = "none"


@dataclass
class DistillConfig:
    """Teacher-student training (DiVE): the teacher is a finished run directory or checkpoint file."""

    teacher: str | None = None


@dataclass
class EvalConfig:
    """What is evaluated at the end of training and by `fcc eval`."""

    checkpoint: Literal["last", "best"] = "last"
    split: Literal["test", "val"] = "test"
    batch_size: int = 500
    many_shot_min: int = 101
    few_shot_max: int = 19
    confusion_png_max_classes: int = 100
    tau_norm: float | None = None  # evaluate with class weights W_c / ||W_c||^tau (linear head only)
    max_batches: int | None = None  # smoke runs: evaluate only the first batches during training


@dataclass
class Config:
    """A whole run. ``out`` defaults to runs/<config file stem>."""

    seed: int = 0
    device: str = "auto"
    out: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    fcc: FccConfig = field(default_factory=FccConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def dump(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation)


def all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the schema (sections included), for suggestions and docs."""
    keys = []
    for name, annotation in _hints(cls).items():
        dotted = f"{prefix}{name}"
        keys.append(dotted)
        if _is_section(annotation):
            keys.extend(all_keys(annotation, dotted + "."))
    return keys


PATH_KEYS = ("out", "data.root", "data.train_json", "data.val_json", "data.test_json", "data.image_root",
             "data.extra_train_json", "model.init_from", "distill.teacher")


def flat_keys(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 0.1}, 'loss': {'params': {}}} -> {'train.lr': 0.1, 'loss.params': {}}: the dotted
    keys of a nested config mapping (an empty mapping is a value, e.g. a part without parameters)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping) and value:
            out.update(flat_keys(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
