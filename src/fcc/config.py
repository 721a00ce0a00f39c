"""The one config system: typed dataclasses loaded from YAML, ``key.sub=value`` overrides, validation.

A config file is a nested mapping of lower-case keys mirroring the dataclasses below. A file may
start from others with ``base: other.yaml`` (or a list), resolved relative to the file; later files
and then command-line overrides win. Unknown keys and wrong types are errors that name the key and
suggest the nearest valid one. The fully resolved config is what a run directory stores.

Epoch conventions: epochs count from 1, and every ``*start_epoch`` key names the FIRST epoch at which
the thing is active (``fcc.start_epoch: 51`` scales features in epochs 51..200).

Shortened schedules: a config may state ``train.schedule_epochs`` (the run length its epoch-valued keys
were written for, 200 in the shipped configs). When ``train.epochs`` differs, every epoch-valued key
that was not itself given on the command line is rescaled to the new length: ``train.milestones``,
``train.warmup_epochs``, ``fcc.start_epoch`` and every part parameter whose name ends in
``start_epoch`` (deferred re-weighting / re-sampling). A first-active epoch s of an S-epoch schedule
becomes 1 + round((s - 1) * E / S). The saved config shows the rescaled values.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from fcc.errors import ConfigError, path_problem, read_input_text, short_repr
from fcc.typecheck import check_config_size, coerce, suggest

log = logging.getLogger("fcc")


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
    jpeg_draft: bool = True
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
    channels_last: bool | Literal["auto"] = "auto"  # auto: per device, fcc.speed.use_channels_last
    compile: Literal["auto", "on", "off"] = "auto"  # torch.compile of the training forward (fcc.speed)
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


# --------------------------------------------------------------------------------------------- loading


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


def _unknown_key(dotted: str, source: str) -> ConfigError:
    leaf_hint = suggest(dotted, all_keys()) if len(dotted) <= 200 else ""
    return ConfigError(f"{source}: unknown key {short_repr(dotted)}{leaf_hint}")


class OverriddenConfig(dict):
    """A raw config mapping that remembers which keys command-line overrides set (``origins``: dotted key
    -> the override's text), so that ``from_dict`` blames a bad value on the override that gave it, not
    on the config file."""

    origins: dict[str, str]

    def __init__(self, *args: Any, origins: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.origins = dict(origins or {})


def _blame(dotted: str, source: str, origins: Mapping[str, str]) -> str:
    """The override that set ``dotted`` or a section above it (the last one wins), else ``source``."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        text = origins.get(".".join(parts[:n]))
        if text is not None:
            return f"override {short_repr(text)}"
    return source


def from_dict(raw: Mapping[str, Any], source: str = "config", cls: type = Config, prefix: str = "",
              origins: Mapping[str, str] | None = None) -> Any:
    """Build the dataclass ``cls`` from a nested mapping, coercing and naming any bad key.

    Errors name ``source`` (the file) or, for keys that ``origins`` (or an ``OverriddenConfig``) says a
    command-line override set, that override. The whole mapping is first checked to be of a config's
    size (``check_config_size``), so that nothing below can be made to expand a huge alias graph.
    """
    if origins is None:
        origins = getattr(raw, "origins", None) or {}
    if not isinstance(raw, Mapping):
        where = prefix.rstrip(".") or "the top level"
        raise ConfigError(f"{_blame(where, source, origins)}: {where} must be a mapping of keys, got "
                          f"{type(raw).__name__}")
    if not prefix:
        check_config_size(raw, source)
    hints = _hints(cls)
    values = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}" if isinstance(key, str) else f"{prefix}{short_repr(key)}"
        if not isinstance(key, str) or key not in hints:
            raise _unknown_key(dotted, _blame(dotted, source, origins))
        annotation = hints[key]
        if _is_section(annotation):
            values[key] = from_dict(value if value is not None else {}, source, annotation, dotted + ".", origins)
        else:
            try:
                values[key] = coerce(value, annotation, dotted)
            except ConfigError as err:
                raise ConfigError(f"{_blame(dotted, source, origins)}: {err}") from None
    return cls(**values)


def deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge; mappings merge key by key, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_yaml(text: str, what: str, source: str | None = None) -> Any:
    """yaml.safe_load, with every failure as a ConfigError, and the result checked to be of a config's size.

    PyYAML raises more than YAMLError on bad input: ValueError for an impossible date ("2001-02-30") or
    "!!int abc", AttributeError for "!!timestamp x", RecursionError for very deep nesting. ``what``
    prefixes parse errors ("x.yaml: not valid YAML"); ``source`` names the input in the size check
    (by default ``what`` without its "not valid YAML" ending).
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{what}: {err}") from None
    except (ValueError, TypeError, AttributeError, OverflowError, RecursionError, MemoryError) as err:
        raise ConfigError(f"{what}: {type(err).__name__}: {short_repr(str(err), 300)}") from None
    if source is None:
        source = re.sub(r":( value is)? not valid YAML$", "", what)
    check_config_size(data, source)
    return data


def read_yaml(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a config file with its ``base`` chain resolved into one nested mapping."""
    path = Path(path)
    try:
        resolved = path.resolve()
    except (OSError, ValueError, RuntimeError) as err:  # a NUL byte in the name, a symlink loop
        raise ConfigError(f"{path}: not a usable config file name ({err})") from None
    if resolved in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, resolved))
        raise ConfigError(f"{path}: circular 'base' chain: {chain}")
    text = read_input_text(path, "config file", ConfigError)
    data = parse_yaml(text, f"{path}: not valid YAML", str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    bases = data.pop("base", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: 'base' must be a file name or a list of file names")
    merged: dict[str, Any] = {}
    for base in bases:
        merged = deep_merge(merged, read_yaml(path.parent / base, (*_seen, resolved)))
    return deep_merge(merged, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.epochs=30' -> (['train', 'epochs'], 30); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {short_repr(text)}: expected key.sub=value")
    key, _, value_text = text.partition("=")
    key = key.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*", key):
        raise ConfigError(f"override {short_repr(text)}: {short_repr(key)} is not a dotted key such as train.epochs")
    what = f"override {short_repr(text)}"
    value = parse_yaml(value_text, f"{what}: value is not valid YAML", what) if value_text.strip() else None
    return key.split("."), value


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> OverriddenConfig:
    """``raw`` with the overrides applied, their keys checked against the schema; the result remembers
    which override set which key, for the messages of ``from_dict``."""
    out = OverriddenConfig(copy.deepcopy(dict(raw)), origins=getattr(raw, "origins", None))
    for text in overrides:
        path, value = parse_override(text)
        _check_override_key(path, text)
        node: dict[str, Any] = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {short_repr(text)}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
        dotted = ".".join(path)
        for key in [k for k in out.origins if k.startswith(dotted + ".")]:
            del out.origins[key]  # replaced along with the section it was in
        out.origins[dotted] = text
    return out


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load, override, type-check and validate a config; ``out`` defaults to runs/<file stem>."""
    if path is not None:
        problem = path_problem(path)
        if problem is not None:
            raise ConfigError(f"config file {short_repr(str(path))} {problem}")
    raw = read_yaml(Path(path)) if path is not None else {}
    source = str(path) if path is not None else "config"
    raw = apply_overrides(raw, overrides)
    cfg = from_dict(raw, source)
    if cfg.out is None:
        cfg.out = str(Path("runs") / (Path(path).stem if path is not None else "default"))
    changed = rescale_schedule(cfg, set(raw.origins))
    if changed:
        shown = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
        log.info("train.epochs=%d differs from the %d-epoch schedule of %s; rescaled: %s",
                 cfg.train.epochs, _schedule_length(raw), source, shown)
    check_paths(cfg)
    validate(cfg)
    return cfg


PATH_KEYS = ("out", "data.root", "data.train_json", "data.val_json", "data.test_json", "data.image_root",
             "data.extra_train_json", "model.init_from", "distill.teacher")


def check_paths(cfg: Config) -> None:
    """Path-valued keys (``PATH_KEYS``) that no file can have, a NUL byte or a name over 255 bytes, are a
    ConfigError naming the key now, instead of an OSError from deep inside the run that needs them."""
    for key in PATH_KEYS:
        node: Any = cfg
        for part in key.split("."):
            node = getattr(node, part)
        if isinstance(node, str):
            problem = path_problem(node)
            if problem is not None:
                raise ConfigError(f"{key}: {short_repr(node, 80)} {problem}")


def _schedule_length(raw: Mapping[str, Any]) -> Any:
    return (raw.get("train") or {}).get("schedule_epochs")


def _rescale_first_epoch(epoch: int, old: int, new: int) -> int:
    """1 + round((epoch - 1) * new / old), halves up, in integer arithmetic (no float overflow)."""
    return min(max(1, 1 + (2 * (epoch - 1) * new + old) // (2 * old)), new)


def rescale_schedule(cfg: Config, keep: set[str] = frozenset()) -> dict[str, tuple[Any, Any]]:
    """Rescale epoch-valued keys from ``train.schedule_epochs`` to ``train.epochs`` (see module doc).

    Keys in ``keep`` (given explicitly on the command line) are left as they are. Returns
    {key: (old, new)} of what changed.
    """
    t = cfg.train
    old, new = t.schedule_epochs, t.epochs
    changed: dict[str, tuple[Any, Any]] = {}
    if old is None or old == new:
        t.schedule_epochs = new if old is not None else None
        return changed
    if old < 1:
        raise ConfigError(f"train.schedule_epochs: expected an integer >= 1, got {old}")

    def update(key: str, value: Any, low: int, scale: Any) -> Any:
        if key in keep:
            return value
        # Checked against the schedule the value was written for, before rescaling: clamping would
        # otherwise turn a start epoch past the end (or a 0) into a valid one silently.
        if not all(low <= v <= old for v in (value if isinstance(value, list) else [value])):
            raise ConfigError(f"{key}: expected {'epochs' if isinstance(value, list) else 'an epoch'} in "
                              f"[{low}, {old}] of the {old}-epoch schedule it is written for "
                              f"(train.schedule_epochs), got {value!r}")
        scaled = [scale(v) for v in value] if isinstance(value, list) else scale(value)
        if value != scaled:
            changed[key] = (value, scaled)
        return scaled

    def first_epoch(e: int) -> int:
        return _rescale_first_epoch(e, old, new)

    milestones = list(t.milestones)
    t.milestones = update("train.milestones", t.milestones, 1, first_epoch)
    t.warmup_epochs = update("train.warmup_epochs", t.warmup_epochs, 0,
                             lambda w: (2 * w * new + old) // (2 * old))  # round(w * new / old), halves up
    starts = {"fcc.start_epoch": cfg.fcc.start_epoch} if cfg.fcc.enabled else {}
    cfg.fcc.start_epoch = update("fcc.start_epoch", cfg.fcc.start_epoch, 1, first_epoch)
    if cfg.fcc.enabled:
        starts["fcc.start_epoch"] = (starts["fcc.start_epoch"], cfg.fcc.start_epoch)
    for section in ("loss", "sampler", "mix"):
        part: PartConfig = getattr(cfg, section)
        for name, value in list(part.params.items()):
            if name.endswith("start_epoch") and isinstance(value, int) and not isinstance(value, bool):
                part.params[name] = update(f"{section}.params.{name}", value, 1, first_epoch)
                starts[f"{section}.params.{name}"] = (value, part.params[name])
    if t.scheduler == "multistep":
        _warn_short_schedule(milestones, t.milestones, starts, old, new)
    t.schedule_epochs = new
    return changed


class ScheduleWarning(UserWarning):
    """A shortened schedule cannot hold what the config's schedule does (an LR drop on epoch 1, two drops
    on one epoch, a deferred part that now acts only at the lowered LR)."""


def _warn_short_schedule(before: list[int], after: list[int], starts: Mapping[str, Any], old: int, new: int) -> None:
    """Say loudly when rescaling changed what the schedule means, not just its length."""
    import warnings

    problems = []
    if after and after[0] <= 1 < (before[0] if before else 2):
        problems.append(f"the LR drop at epoch {before[0]} of {old} lands on epoch 1, so the whole run trains at "
                        "the lowered LR")
    collapsed = sorted({e for e in after if after.count(e) > 1})
    if collapsed and len(set(before)) > len(set(after)):
        problems.append(f"LR drops {before} land on epochs {after}: several fall on epoch(s) {collapsed} at once")
    for key, pair in starts.items():
        if not isinstance(pair, tuple) or not before:
            continue
        was, now = pair
        if was < before[0] and now >= after[0]:
            problems.append(f"{key} {was} -> {now}: in the {old}-epoch schedule it acts {before[0] - was} epochs "
                            f"before the first LR drop; now only after it (epoch {after[0]})")
    if problems:
        warnings.warn(f"train.epochs={new} is too short for this {old}-epoch schedule: " + "; ".join(problems)
                      + ". Results will not mean what the config means; for a quick check of every part use "
                      "`fcc train CONFIG --smoke`, otherwise give more epochs (or set train.milestones and the "
                      "start epochs yourself)", ScheduleWarning, stacklevel=3)


def _check_override_key(keys: list[str], text: str) -> None:
    cls: Any = Config
    for depth, key in enumerate(keys):
        hints = _hints(cls)
        if key not in hints:
            dotted = ".".join(keys)
            raise ConfigError(f"override {short_repr(text)}: unknown key {short_repr(dotted)}"
                              f"{suggest(dotted, all_keys()) if len(dotted) <= 200 else ''}")
        annotation = hints[key]
        if _is_section(annotation):
            cls = annotation
            continue
        if depth < len(keys) - 1 and typing.get_origin(annotation) is not dict:
            raise ConfigError(f"override {short_repr(text)}: {'.'.join(keys[: depth + 1])!r} has no sub-keys")
        return


# ------------------------------------------------------------------------------------------ validation


def _require(ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")


DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"  # the values `device` (and a command's --device) may take


def validate(cfg: Config) -> None:
    """Range and consistency checks a type cannot express; raises ConfigError naming the key."""
    t, d, f = cfg.train, cfg.data, cfg.fcc
    _require(cfg.seed >= 0, "seed", "a non-negative integer", cfg.seed)
    _require(
        bool(re.fullmatch(DEVICE_PATTERN, cfg.device)),
        "device", "auto, cpu, cuda or cuda:N", cfg.device,
    )
    if cfg.device == "mps":
        raise ConfigError("device: 'mps' is not supported: the samplers, mixers and losses compute in float64 on the "
                          "training device, which Apple's MPS backend cannot do; use cpu (or a CUDA machine)")
    _require(d.imbalance_factor >= 1, "data.imbalance_factor", "a number >= 1", d.imbalance_factor)
    _require(0 <= d.subset_seed < 2**32, "data.subset_seed", "an integer in [0, 2**32)", d.subset_seed)
    _require(d.val_per_class >= 0, "data.val_per_class", "a non-negative integer", d.val_per_class)
    _validate_image_data(d)
    _require(t.epochs >= 1, "train.epochs", "an integer >= 1", t.epochs)
    _require(t.batch_size >= 1, "train.batch_size", "an integer >= 1", t.batch_size)
    _require(t.lr > 0, "train.lr", "a positive number", t.lr)
    _require(0 <= t.momentum < 1, "train.momentum", "a number in [0, 1)", t.momentum)
    _require(t.weight_decay >= 0, "train.weight_decay", "a non-negative number", t.weight_decay)
    _require(0 < t.lr_factor <= 1, "train.lr_factor", "a number in (0, 1]", t.lr_factor)
    _require(0 <= t.warmup_epochs <= t.epochs, "train.warmup_epochs", f"an integer in [0, {t.epochs}]",
             t.warmup_epochs)
    _require(0 < t.warmup_start_factor <= 1, "train.warmup_start_factor", "a number in (0, 1]",
             t.warmup_start_factor)
    _require(0 <= t.min_lr < t.lr, "train.min_lr", "a number in [0, train.lr)", t.min_lr)
    _require(list(t.milestones) == sorted(t.milestones), "train.milestones",
             "epochs in increasing order", t.milestones)
    _require(all(1 <= m <= t.epochs for m in t.milestones), "train.milestones",
             f"epochs in [1, {t.epochs}]", t.milestones)
    _require(t.grad_accum_steps >= 1, "train.grad_accum_steps", "an integer >= 1", t.grad_accum_steps)
    _require(t.batch_size % t.grad_accum_steps == 0, "train.grad_accum_steps",
             f"a divisor of train.batch_size ({t.batch_size})", t.grad_accum_steps)
    _require(t.eval_every >= 1, "train.eval_every", "an integer >= 1", t.eval_every)
    _require(t.log_every >= 1, "train.log_every", "an integer >= 1", t.log_every)
    _require(t.max_nonfinite_steps >= 0, "train.max_nonfinite_steps", "a non-negative integer",
             t.max_nonfinite_steps)
    if t.tracker_uri is not None and t.tracker != "mlflow":
        raise ConfigError(f"train.tracker_uri: an MLflow tracking URI, but train.tracker is {t.tracker!r}; set "
                          "train.tracker=mlflow or remove it")
    _require(bool(t.tracker_project.strip()), "train.tracker_project", "a non-empty name", t.tracker_project)
    _require(t.max_steps_per_epoch is None or t.max_steps_per_epoch >= 1, "train.max_steps_per_epoch",
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
    _require(f.gamma >= 0, "fcc.gamma", "a non-negative number", f.gamma)
    _require(1 <= f.start_epoch <= t.epochs, "fcc.start_epoch",
             f"the first active epoch, in [1, train.epochs={t.epochs}]", f.start_epoch)
    _require(f.round_decimals is None or 0 <= f.round_decimals <= 8, "fcc.round_decimals",
             "null or an integer in [0, 8]", f.round_decimals)
    e = cfg.eval
    _require(e.batch_size >= 1, "eval.batch_size", "an integer >= 1", e.batch_size)
    _require(e.max_batches is None or e.max_batches >= 1, "eval.max_batches", "null or an integer >= 1",
             e.max_batches)
    _require(e.tau_norm is None or e.tau_norm >= 0, "eval.tau_norm", "null or a non-negative number", e.tau_norm)
    _require(0 <= e.few_shot_max < e.many_shot_min, "eval.few_shot_max",
             "a non-negative integer below eval.many_shot_min", e.few_shot_max)
    _validate_parts(cfg)


def _validate_image_data(d: DataConfig) -> None:
    """Keys of the image-file datasets (json, image_folder)."""
    _require(8 <= d.image_size <= 4096, "data.image_size", "an integer in [8, 4096] (pixels)", d.image_size)
    _require(0 < d.test_crop_ratio <= 1, "data.test_crop_ratio", "a number in (0, 1]", d.test_crop_ratio)
    _require(len(d.rrc_scale) == 2 and 0 < d.rrc_scale[0] <= d.rrc_scale[1] <= 1, "data.rrc_scale",
             "[min, max] area fractions with 0 < min <= max <= 1", d.rrc_scale)
    _require(len(d.rrc_ratio) == 2 and 0 < d.rrc_ratio[0] <= d.rrc_ratio[1], "data.rrc_ratio",
             "[min, max] aspect ratios with 0 < min <= max", d.rrc_ratio)
    _require(0 <= d.color_jitter < 1, "data.color_jitter", "a number in [0, 1)", d.color_jitter)
    for key, value in (("data.mean", d.mean), ("data.std", d.std)):
        _require(value is None or len(value) == 3, key, "null or three numbers (R, G, B)", value)
    _require(d.std is None or all(s > 0 for s in d.std), "data.std", "positive numbers", d.std)
    _require(d.preload_max_mb >= 0, "data.preload_max_mb", "a non-negative integer (MiB)", d.preload_max_mb)
    _require(d.workers is None or d.workers >= 0, "data.workers", "null (automatic) or an integer >= 0",
             d.workers)
    _require(d.prefetch >= 1, "data.prefetch", "an integer >= 1", d.prefetch)
    if d.dataset == "json":
        for key in ("train_json", "test_json"):
            _require(bool(getattr(d, key)), f"data.{key}", "an annotation file (dataset 'json' needs "
                     "data.train_json and data.test_json)", getattr(d, key))


def _validate_parts(cfg: Config) -> None:
    """Check names and params of registered parts now, before any data is loaded."""
    from fcc.registry import BACKBONES, DATASETS, HEADS, LOSSES, MIXERS, SAMPLERS

    DATASETS.get(cfg.data.dataset, "data.dataset")
    BACKBONES.check_params(cfg.model.backbone, cfg.model.backbone_params, "model.backbone_params")
    HEADS.check_params(cfg.model.head, cfg.model.head_params, "model.head_params")
    if cfg.eval.tau_norm is not None and not hasattr(HEADS.get(cfg.model.head), "tau_normalized"):
        raise ConfigError(f"eval.tau_norm: model.head {cfg.model.head!r} cannot be tau-normalised; "
                          "it rescales the rows of a linear classifier (model.head: linear)")
    for section, registry in (("loss", LOSSES), ("sampler", SAMPLERS), ("mix", MIXERS)):
        part: PartConfig = getattr(cfg, section)
        registry.get(part.name, f"{section}.name")
        part.params = registry.check_params(part.name, part.params, f"{section}.params")
        for name, value in part.params.items():  # the *start_epoch convention: a first active epoch
            if name.endswith("start_epoch") and isinstance(value, int) and not isinstance(value, bool):
                _require(1 <= value <= cfg.train.epochs, f"{section}.params.{name}",
                         f"the first active epoch, in [1, train.epochs={cfg.train.epochs}], or null", value)
        check_epochs = getattr(registry.get(part.name), "check_epochs", None)
        if check_epochs is not None:
            check_epochs(part.params, cfg.train.epochs, f"{section}.params")
    needs_teacher = getattr(LOSSES.get(cfg.loss.name), "needs_teacher", False)
    if cfg.distill.teacher and not needs_teacher:
        raise ConfigError(f"distill.teacher: loss {cfg.loss.name!r} does not use a teacher, so its forward pass "
                          "every step would be thrown away; use a distillation loss (loss.name: dive) or remove "
                          "distill.teacher")
    if needs_teacher and not cfg.distill.teacher:
        raise ConfigError(f"loss.name: {cfg.loss.name!r} distils from a teacher; set distill.teacher to a finished "
                          "run directory or checkpoint")


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
