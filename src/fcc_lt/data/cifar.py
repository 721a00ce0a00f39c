"""CIFAR-10/100 ("python version"): official download, checksums, reading, long-tailed subsets.

The long-tailed protocol is the standard one of Cao et al. (LDAM-DRW), used by the bag-of-tricks and
FCC code: class k keeps floor(n_max * IF^(-k/(C-1))) training images, chosen by shuffling each class's
indices (ascending class order) with a legacy NumPy RandomState seeded with ``data.subset_seed``, which
reproduces the original subsets exactly. The test split is the full balanced one. An optional balanced
validation split is taken from training images the long-tailed subset left out, so it never overlaps
the training data and never touches the test split.
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fcc_lt.config.schema import DataConfig
from fcc_lt.data.datasets import ArrayDataset, DataSplits
from fcc_lt.data.download import download, extract_folder, md5sum
from fcc_lt.util.errors import DataError
from fcc_lt.util.files import open_input
from fcc_lt.util.registry import DATASETS

# Normalisation of the original code, used for both CIFAR-10 and CIFAR-100.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


class DataWarning(UserWarning):
    """Data that loads but is not what the official release would give (checksums, etc.)."""


@dataclass(frozen=True)
class CifarSpec:
    name: str
    num_classes: int
    url: str
    archive: str
    archive_md5: str
    folder: str
    train_files: tuple[tuple[str, str], ...]
    test_files: tuple[tuple[str, str], ...]
    meta_file: tuple[str, str]
    label_key: str
    names_key: str

    @property
    def all_files(self) -> tuple[tuple[str, str], ...]:
        return (*self.train_files, *self.test_files, self.meta_file)


SPECS = {
    "cifar10": CifarSpec(
        name="CIFAR-10",
        num_classes=10,
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        archive="cifar-10-python.tar.gz",
        archive_md5="c58f30108f718f92721af3b95e74349a",
        folder="cifar-10-batches-py",
        train_files=(
            ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
            ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
            ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
            ("data_batch_4", "634d18415352ddfa80567beed471001a"),
            ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
        ),
        test_files=(("test_batch", "40351d587109b95175f43aff81a1287e"),),
        meta_file=("batches.meta", "5ff9c542aee3614f3951f8cda6e48888"),
        label_key="labels",
        names_key="label_names",
    ),
    "cifar100": CifarSpec(
        name="CIFAR-100",
        num_classes=100,
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        archive="cifar-100-python.tar.gz",
        archive_md5="eb9058c3a382ffc7106e4002c42a8d85",
        folder="cifar-100-python",
        train_files=(("train", "16019d7e3df5f24257cddd939b257f8d"),),
        test_files=(("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),),
        meta_file=("meta", "7973b15100ade9c7d40fb424638fde48"),
        label_key="fine_labels",
        names_key="fine_label_names",
    ),
}


def long_tail_counts(num_classes: int, imbalance_factor: float, max_per_class: int) -> list[int]:
    """Images kept per class: floor(max_per_class * IF^(-k/(C-1))) for k = 0..C-1.

    Written as ``max * (1/IF) ** (k/(C-1))``, the original's float expression, so the counts match it
    to the image (CIFAR-10-LT: 12,406 at IF 100, 13,996 at IF 50; CIFAR-100-LT: 10,847 and 12,608).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if imbalance_factor < 1:
        raise ValueError(f"imbalance_factor must be >= 1, got {imbalance_factor}")
    if num_classes == 1:
        return [int(max_per_class)]
    ratio = 1.0 / imbalance_factor
    return [int(max_per_class * ratio ** (k / (num_classes - 1.0))) for k in range(num_classes)]


# ------------------------------------------------------------------------------------------- reading

_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays only: a crafted batch file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(path: Path) -> dict[str, Any]:
    with open_input(path, "CIFAR python batch file") as f:  # a regular file of bounded size, or a DataError
        try:
            raw = _CifarUnpickler(f, encoding="bytes").load()
        except Exception as err:  # any unpickling failure means a corrupt or foreign file
            raise DataError(f"{path}: not a CIFAR python batch file ({type(err).__name__}: {err})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(raw).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in raw.items()}


def _read_batch(path: Path, spec: CifarSpec) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    for key in ("data", spec.label_key):
        if key not in batch:
            raise DataError(f"{path}: missing key {key!r} (has {sorted(batch)})")
    try:
        data = np.asarray(batch["data"])
        labels = np.asarray(batch[spec.label_key])
    except (ValueError, TypeError) as err:  # ragged lists and the like
        raise DataError(f"{path}: 'data' and {spec.label_key!r} must be arrays ({err})") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
    if labels.size and labels.dtype.kind not in "iu":
        raise DataError(f"{path}: {spec.label_key!r} must be integer class ids, got {labels.dtype} values")
    labels = labels.astype(np.int64)
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: {data.shape[0]} images but {spec.label_key!r} has shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise DataError(f"{path}: labels must lie in [0, {spec.num_classes - 1}], found "
                        f"[{labels.min()}, {labels.max()}]")
    return data.reshape(-1, 3, 32, 32), labels


def read_split(folder: Path, spec: CifarSpec, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All images (N, 3, 32, 32) uint8 and labels (N,) of the 'train' or 'test' split, in file order."""
    files = spec.train_files if split == "train" else spec.test_files
    parts = [_read_batch(folder / name, spec) for name, _ in files]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def read_class_names(folder: Path, spec: CifarSpec) -> list[str]:
    meta_path = folder / spec.meta_file[0]
    if not meta_path.exists():
        return [str(c) for c in range(spec.num_classes)]
    names = _unpickle(meta_path).get(spec.names_key)
    if not isinstance(names, list) or len(names) != spec.num_classes:
        raise DataError(f"{meta_path}: {spec.names_key!r} must list {spec.num_classes} class names")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


# ------------------------------------------------------------------------------- locating / download


def check_files(folder: Path, spec: CifarSpec) -> list[str]:
    """Names of files whose MD5 differs from the official release (missing files raise)."""
    missing = [name for name, _ in spec.all_files if not (folder / name).is_file()]
    data_missing = [m for m in missing if m != spec.meta_file[0]]
    if data_missing:
        raise DataError(f"{folder}: incomplete {spec.name} folder, missing {', '.join(data_missing)}")
    return [name for name, md5 in spec.all_files if name not in missing and md5sum(folder / name) != md5]


def locate(spec: CifarSpec, root: Path, allow_download: bool) -> Path:
    """The extracted folder under ``root``: found, extracted from a local archive, or downloaded."""
    folder = root / spec.folder
    if folder.is_dir():
        changed = check_files(folder, spec)
        if changed:
            warnings.warn(
                f"{folder}: {', '.join(changed)} differ from the official {spec.name} checksums; "
                "loading them anyway (a re-encoded or modified copy gives different numbers than "
                "the official release)",
                DataWarning,
                stacklevel=3,
            )
        return folder
    if _too_deep(spec, root):  # never download a second copy inside the first
        raise DataError(f"{spec.name} is not under {root} (no {root / spec.folder}/).{_too_deep(spec, root)}")
    archive = root / spec.archive
    if not archive.is_file():
        if not allow_download:
            raise DataError(_missing_message(spec, root, "downloads are off (data.download: false)"))
        try:
            download(spec.url, archive, spec.archive_md5)
        except DataError as err:
            raise DataError(_missing_message(spec, root, str(err))) from None
    elif md5sum(archive) != spec.archive_md5:
        raise DataError(f"{archive}: MD5 {md5sum(archive)} differs from the official "
                        f"{spec.archive_md5}; delete it to download again, or replace it with "
                        f"the file from {spec.url}")
    return extract_folder(archive, root, spec.folder)


def _missing_message(spec: CifarSpec, root: Path, reason: str) -> str:
    return (f"{spec.name} is not under {root} and could not be fetched ({reason}). "
            f"Download {spec.url} (MD5 {spec.archive_md5}) and put {spec.archive} in {root}/ "
            f"(or extract it there so that {root / spec.folder}/ exists), then run again.{_too_deep(spec, root)}")


def _too_deep(spec: CifarSpec, root: Path) -> str:
    """A hint when data.root names the extracted folder itself (one level too deep) instead of its parent."""
    if root.name == spec.folder or (root / spec.train_files[0][0]).exists():
        return (f" data.root {root} looks like the extracted {spec.folder} folder itself: data.root is the folder "
                f"that holds it; did you mean data.root={root.parent}?")
    return ""


def presence(cfg: DataConfig, key: str) -> list[str]:
    """Whether a run could find this CIFAR copy, from names only (nothing read): DataError as training would
    raise it when it is neither there, nor in an archive there, nor downloadable; else what stays unchecked."""
    spec = SPECS[key]
    root = Path(cfg.root).expanduser()
    folder = root / spec.folder
    if not folder.is_dir() and _too_deep(spec, root):
        raise DataError(f"{spec.name} is not under {root} (no {folder}/).{_too_deep(spec, root)}")
    if folder.is_dir():
        missing = [name for name, _ in (*spec.train_files, *spec.test_files) if not (folder / name).is_file()]
        if missing:
            raise DataError(f"{folder}: incomplete {spec.name} folder, missing {', '.join(missing)}")
        return [f"the contents of the {spec.name} files in {folder} (checksums, images: read when training starts)"]
    if (root / spec.archive).is_file():
        return [f"{root / spec.archive} (checked and extracted when training starts)"]
    if cfg.download:
        return [f"the download of {spec.name} into {root} (data.download: true; it happens when training starts)"]
    raise DataError(_missing_message(spec, root, "downloads are off (data.download: false)"))


# ------------------------------------------------------------------------------------- long tailing


def long_tail_indices(labels: np.ndarray, counts: list[int], seed: int,
                      val_per_class: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices: per class, in ascending class order, one seeded shuffle;
    the first counts[c] go to training, the last ``val_per_class`` to validation.

    A class too small for both (the head class keeps all its images) gives up training images to the
    validation split: it then trains on len - val_per_class images. Without a validation split the
    subset is exactly the original's.
    """
    rng = np.random.RandomState(seed)
    train, val = [], []
    for c, keep in enumerate(counts):
        idx = np.flatnonzero(labels == c)
        if val_per_class >= len(idx) or keep > len(idx):
            raise DataError(f"class {c} has {len(idx)} training images: too few for {keep} training "
                            f"and {val_per_class} validation images")
        rng.shuffle(idx)
        train.append(idx[:min(keep, len(idx) - val_per_class)])
        if val_per_class:
            val.append(idx[len(idx) - val_per_class:])
    empty = np.empty(0, dtype=np.int64)
    return np.concatenate(train), (np.concatenate(val) if val else empty)


def _to_dataset(images: np.ndarray, labels: np.ndarray, source: str) -> ArrayDataset:
    return ArrayDataset(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels), source)


def cifar_mean_std(cfg: DataConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The normalisation of a CIFAR run: ``data.mean`` / ``data.std`` when set, else the CIFAR statistics."""
    return tuple(cfg.mean or CIFAR_MEAN), tuple(cfg.std or CIFAR_STD)


def build_cifar(cfg: DataConfig, key: str) -> DataSplits:
    spec = SPECS[key]
    folder = locate(spec, Path(cfg.root).expanduser(), cfg.download)
    x_train, y_train = read_split(folder, spec, "train")
    x_test, y_test = read_split(folder, spec, "test")
    max_per_class = int(np.bincount(y_train, minlength=spec.num_classes).max())
    if max_per_class == 0:  # no factor helps here: the files themselves are empty
        raise DataError(f"{folder}: the training files ({', '.join(n for n, _ in spec.train_files)}) hold no "
                        f"images, so every class is empty; they are not the official {spec.name} files: delete "
                        f"{folder} and run again to download it (or extract {spec.archive} there)")
    counts = long_tail_counts(spec.num_classes, cfg.imbalance_factor, max_per_class)
    if min(counts) == 0:
        raise DataError(f"{folder}: data.imbalance_factor {cfg.imbalance_factor:g} leaves classes "
                        f"{[c for c, n in enumerate(counts) if n == 0]} without training images: the largest "
                        f"class has {max_per_class} images, so the factor can be at most {max_per_class}; set "
                        f"data.imbalance_factor to {max_per_class} or less")
    try:
        train_idx, val_idx = long_tail_indices(y_train, counts, cfg.subset_seed, cfg.val_per_class)
    except DataError as err:
        raise DataError(f"{folder} (training files {', '.join(n for n, _ in spec.train_files)}): {err}") from None
    name = f"{spec.name}-LT (IF {cfg.imbalance_factor:g})" if cfg.imbalance_factor > 1 else spec.name
    val = _to_dataset(x_train[val_idx], y_train[val_idx], f"{folder} (val)") if len(val_idx) else None
    mean, std = cifar_mean_std(cfg)
    return DataSplits(
        name=name,
        num_classes=spec.num_classes,
        train=_to_dataset(x_train[train_idx], y_train[train_idx], f"{folder} (train)"),
        test=_to_dataset(x_test, y_test, f"{folder} (test)"),
        val=val,
        class_names=read_class_names(folder, spec),
        mean=mean,
        std=std,
    )


@DATASETS.register("cifar10")
def cifar10(cfg: DataConfig) -> DataSplits:
    """CIFAR-10, long-tailed by data.imbalance_factor (1 keeps it balanced)."""
    return build_cifar(cfg, "cifar10")


@DATASETS.register("cifar100")
def cifar100(cfg: DataConfig) -> DataSplits:
    """CIFAR-100, long-tailed by data.imbalance_factor (1 keeps it balanced)."""
    return build_cifar(cfg, "cifar100")
