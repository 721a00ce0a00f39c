"""From a config to datasets, samplers and loaders on this process's device."""

from __future__ import annotations

from fcc.config import Config
from fcc.data.augment import Normalize, PadCropFlip
from fcc.data.datasets import ArrayDataset, DataSplits, LabelledDataset
from fcc.data.loader import DeviceEvalLoader, DeviceLoader, EvalLoader, TrainLoader
from fcc.data.sampling import Sampler
from fcc.distributed import DistContext
from fcc.errors import DataError
from fcc.registry import DATASETS, SAMPLERS


def build_splits(cfg: Config) -> DataSplits:
    return DATASETS.get(cfg.data.dataset, "data.dataset")(cfg.data)


def build_sampler(cfg: Config, splits: DataSplits, ctx: DistContext) -> Sampler:
    labels = splits.train.labels.to(ctx.device)
    return SAMPLERS.build(cfg.sampler.name, cfg.sampler.params, "sampler.params", labels, splits.num_classes,
                          cfg.train.epochs)


def build_train_loader(cfg: Config, splits: DataSplits, sampler: Sampler, ctx: DistContext) -> TrainLoader:
    train = splits.train
    if isinstance(train, ArrayDataset):
        augment = PadCropFlip(pad=4) if cfg.data.augment == "crop_flip" else None
        return DeviceLoader(
            train, cfg.train.batch_size, ctx.device, sampler=sampler,
            normalize=Normalize(splits.mean, splits.std), augment=augment, seed=cfg.seed,
            drop_last=cfg.train.drop_last, rank=ctx.rank, world_size=ctx.world_size,
            channels_last=cfg.train.channels_last,
        )
    raise DataError(f"{splits.name}: no training loader for datasets of type {type(train).__name__}")


def build_eval_loader(cfg: Config, splits: DataSplits, dataset: LabelledDataset, ctx: DistContext) -> EvalLoader:
    if isinstance(dataset, ArrayDataset):
        return DeviceEvalLoader(
            dataset, cfg.eval.batch_size, ctx.device, normalize=Normalize(splits.mean, splits.std),
            rank=ctx.rank, world_size=ctx.world_size, channels_last=cfg.train.channels_last,
        )
    raise DataError(f"{splits.name}: no evaluation loader for datasets of type {type(dataset).__name__}")
