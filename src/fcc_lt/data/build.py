"""From a config to datasets, samplers and loaders on this process's device."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fcc_lt.config.schema import Config
from fcc_lt.data.augment import ColorJitter, Compose, Normalize, PadCropFlip
from fcc_lt.data.datasets import ArrayDataset, DataSplits, LabelledDataset
from fcc_lt.data.loader import DeviceEvalLoader, DeviceLoader, EvalLoader, Sampler, TrainLoader
from fcc_lt.util.distributed import DistContext
from fcc_lt.util.errors import ConfigError, DataError, file_problem, path_problem
from fcc_lt.util.registry import DATASETS


def build_splits(cfg: Config) -> DataSplits:
    splits = DATASETS.get(cfg.data.dataset, "data.dataset")(cfg.data)
    if cfg.data.extra_train_json:
        from fcc_lt.data.extra import add_extra_train

        splits = add_extra_train(splits, cfg.data.extra_train_json)
    return splits


def data_presence(cfg: Config) -> list[str]:
    """Whether the data a run needs is where the config says, from names only (no file is read): a
    DataError / ConfigError naming the key for what is missing, else what could not be checked this way.
    `fcc config` reports it; training finds the same when it starts (and reads what is listed)."""
    d, root = cfg.data, Path(cfg.data.root).expanduser()
    has_val: bool | None
    if d.dataset in ("cifar10", "cifar100"):
        from fcc_lt.data.cifar import presence

        unchecked = presence(d, d.dataset)
        has_val = d.val_per_class > 0
    elif d.dataset == "json":
        for key in ("train_json", "test_json", "val_json"):
            if getattr(d, key):
                _need(f"data.{key}", Path(getattr(d, key)).expanduser(), "annotation file")
        if d.image_root:
            _need("data.image_root", Path(d.image_root).expanduser(), "folder")
        unchecked = ["the annotation files' contents and the image files (read when training starts)"]
        has_val = bool(d.val_json)
    elif d.dataset == "image_folder":
        for split in ("train", "test"):
            _need("data.root", root / split, "folder")
        unchecked = [f"the class folders and image files under {root} (read when training starts)"]
        has_val = (root / "val").is_dir()
    else:
        unchecked = [f"the data of data.dataset {d.dataset!r} (read when training starts)"]
        has_val = None
    if d.extra_train_json:
        _need("data.extra_train_json", Path(d.extra_train_json).expanduser(), "annotation file")
    e = cfg.eval
    if has_val is False and (e.checkpoint == "best" or e.split == "val"):
        key = "eval.checkpoint: best" if e.checkpoint == "best" else "eval.split: val"
        raise ConfigError(f"{key} needs a validation split, and this config's data has none: set "
                          "data.val_per_class > 0 (CIFAR) or data.val_json (image datasets), or use "
                          "eval.checkpoint=last / eval.split=test")
    return unchecked


def _need(key: str, path: Path, kind: str) -> None:
    """DataError naming ``key`` unless ``path`` is a folder (``kind`` "folder") or a regular file."""
    if kind == "folder":
        problem = path_problem(path) or (None if path.is_dir() else "is not a folder" if os.path.lexists(path)
                                         else "does not exist")
    else:
        problem = file_problem(path)
    if problem is not None:
        raise DataError(f"{key}: {path} {problem}" + (" (a folder is expected)" if kind == "folder" else
                                                      f" (an {kind} is expected)"))


def build_train_loader(cfg: Config, splits: DataSplits, sampler: Sampler, ctx: DistContext) -> TrainLoader:
    train = splits.train
    if isinstance(train, ArrayDataset):
        augment = device_augment(cfg)
        return DeviceLoader(
            train, cfg.train.batch_size, ctx.device, sampler=sampler,
            normalize=Normalize(splits.mean, splits.std), augment=augment, seed=cfg.seed,
            drop_last=cfg.train.drop_last, rank=ctx.rank, world_size=ctx.world_size,
            channels_last=cfg.train.channels_last,
        )
    from fcc_lt.data.image_loader import WorkerLoader
    from fcc_lt.data.images import ImageFiles, train_transform, workers_for

    if isinstance(train, ImageFiles):
        return WorkerLoader(
            train, cfg.train.batch_size, ctx.device, sampler=sampler, transform=train_transform(cfg.data),
            normalize=Normalize(splits.mean, splits.std), augment=device_augment(cfg), seed=cfg.seed,
            drop_last=cfg.train.drop_last, rank=ctx.rank, world_size=ctx.world_size,
            workers=workers_for(cfg.data), prefetch=cfg.data.prefetch, channels_last=cfg.train.channels_last,
            skip_bad=cfg.data.skip_bad_images,
        )
    raise DataError(f"{splits.name}: no training loader for datasets of type {type(train).__name__}")


def build_eval_loader(cfg: Config, splits: DataSplits, dataset: LabelledDataset, ctx: DistContext) -> EvalLoader:
    if isinstance(dataset, ArrayDataset):
        return DeviceEvalLoader(
            dataset, cfg.eval.batch_size, ctx.device, normalize=Normalize(splits.mean, splits.std),
            rank=ctx.rank, world_size=ctx.world_size, channels_last=cfg.train.channels_last,
        )
    from fcc_lt.data.image_loader import WorkerEvalLoader
    from fcc_lt.data.images import ImageFiles, eval_transform, workers_for

    if isinstance(dataset, ImageFiles):
        return WorkerEvalLoader(
            dataset, cfg.eval.batch_size, ctx.device, transform=eval_transform(cfg.data),
            normalize=Normalize(splits.mean, splits.std), rank=ctx.rank, world_size=ctx.world_size,
            workers=workers_for(cfg.data), prefetch=cfg.data.prefetch, channels_last=cfg.train.channels_last,
            skip_bad=cfg.data.skip_bad_images,
        )
    raise DataError(f"{splits.name}: no evaluation loader for datasets of type {type(dataset).__name__}")


def device_augment(cfg: Config) -> Any:
    """The batched augmentation run on the device: crop_flip's pad-4 crop and flip, then colour jitter.

    rrc_flip's crop and flip happen while decoding (workers), so they need an image-file dataset.
    """
    d = cfg.data
    if d.augment == "rrc_flip" and d.dataset not in ("json", "image_folder"):
        raise ConfigError(f"data.augment: 'rrc_flip' (random-resized crop) is done while decoding image files; "
                          f"dataset {d.dataset!r} is held as arrays: use crop_flip or none")
    ops: list[Any] = []
    if d.augment == "crop_flip":
        ops.append(PadCropFlip(pad=4))
    if d.color_jitter > 0:
        ops.append(ColorJitter(d.color_jitter, d.color_jitter, d.color_jitter))
    if not ops:
        return None
    return ops[0] if len(ops) == 1 else Compose(ops)
