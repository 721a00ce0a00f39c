"""CIFAR: long-tail counts, the seeded subset, download/checksum/extraction paths, file reading."""

from __future__ import annotations

import dataclasses
import pickle
import warnings
from decimal import Decimal, getcontext
from pathlib import Path

import numpy as np
import pytest

from cifar_fixtures import make_archive, write_cifar10
from fcc_lt.config.schema import DataConfig
from fcc_lt.data import cifar
from fcc_lt.data.cifar import DataWarning, build_cifar, long_tail_counts, long_tail_indices
from fcc_lt.util.errors import DataError


@pytest.mark.parametrize(
    ("classes", "imbalance", "total"),
    [(10, 100, 12406), (10, 50, 13996), (100, 100, 10847), (100, 50, 12608)],
)
def test_published_totals(classes: int, imbalance: float, total: int) -> None:
    counts = long_tail_counts(classes, imbalance, 50000 // classes)
    assert sum(counts) == total
    assert counts[0] == 50000 // classes and counts[-1] == 50000 // classes // imbalance


def test_cifar10_if100_per_class_by_hand() -> None:
    # floor(5000 * 100 ** (-k / 9)): 100^(1/9) = 1.6681..., so 5000 / 1.6681 = 2997.4, ...
    assert long_tail_counts(10, 100, 5000) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


@pytest.mark.parametrize(("classes", "imbalance"), [(10, 10), (10, 200), (100, 10), (100, 20), (1000, 256)])
def test_counts_against_high_precision(classes: int, imbalance: float) -> None:
    getcontext().prec = 50
    top = 50000 // min(classes, 100)
    ours = long_tail_counts(classes, imbalance, top)
    for k, n in enumerate(ours):
        exact = Decimal(top) * (Decimal(1) / Decimal(imbalance)) ** (Decimal(k) / Decimal(classes - 1))
        if abs(exact - exact.to_integral_value()) > Decimal("1e-9"):
            assert n == int(exact), (k, n, exact)
        else:  # exactly an integer: the float expression may land either side; off by at most one
            assert int(exact) - 1 <= n <= int(exact)


def test_balanced_and_single_class() -> None:
    assert long_tail_counts(10, 1, 5000) == [5000] * 10
    assert long_tail_counts(1, 100, 7) == [7]
    with pytest.raises(ValueError):
        long_tail_counts(10, 0.5, 5000)


def test_subset_is_the_original_seeded_per_class_shuffle() -> None:
    labels = np.random.default_rng(3).integers(0, 4, size=400)
    counts = [40, 20, 10, 5]
    train, val = long_tail_indices(labels, counts, seed=0, val_per_class=3)
    # re-derivation of the LDAM/BoT procedure: np.random.seed(0), then per class ascending
    # np.random.shuffle(np.where(labels == c)[0]) and the first n_c
    state = np.random.get_state()
    try:
        np.random.seed(0)
        expected = []
        for c, n in enumerate(counts):
            idx = np.where(labels == c)[0]
            np.random.shuffle(idx)
            expected.extend(idx[:n].tolist())
    finally:
        np.random.set_state(state)
    assert train.tolist() == expected
    assert np.bincount(labels[val], minlength=4).tolist() == [3, 3, 3, 3]
    assert not set(train.tolist()) & set(val.tolist())
    with pytest.raises(DataError, match="class 0 has"):
        long_tail_indices(labels, [1000, 1, 1, 1], seed=0)
    # a class that keeps all its images gives val_per_class of them to validation
    full = int((labels == 0).sum())
    train, val = long_tail_indices(labels, [full, 20, 10, 5], seed=0, val_per_class=3)
    assert np.bincount(labels[train], minlength=4).tolist() == [full - 3, 20, 10, 5]


def test_built_splits(cifar10_root: Path) -> None:
    splits = build_cifar(DataConfig(root=str(cifar10_root), imbalance_factor=10, val_per_class=5), "cifar10")
    assert list(splits.stats.train_counts) == [55, *long_tail_counts(10, 10, 60)[1:]]  # the head gives 5 to val
    assert splits.train.images.shape == (sum(list(splits.stats.train_counts)), 3, 32, 32)
    assert len(splits.test) == 100 and splits.val is not None and len(splits.val) == 50
    assert splits.class_names[:2] == ["airplane", "automobile"]
    # the pixel rows come through unchanged: image 0 of data_batch_1 as (3, 32, 32) planes
    with open(cifar10_root / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    first = np.asarray(raw[b"data"][0]).reshape(3, 32, 32)
    with open(cifar10_root / "cifar-10-batches-py" / "test_batch", "rb") as f:
        test_batch = pickle.load(f, encoding="bytes")
    assert np.array_equal(splits.test.images[0].numpy(), np.asarray(test_batch[b"data"][0]).reshape(3, 32, 32))
    assert first.dtype == np.uint8


def test_str_keys_accepted(tmp_path: Path) -> None:
    write_cifar10(tmp_path, per_class_train=10, per_class_test=2, bytes_keys=False)
    splits = build_cifar(DataConfig(root=str(tmp_path), imbalance_factor=1), "cifar10")
    assert list(splits.stats.train_counts) == [10] * 10 and splits.class_names[-1] == "truck"


def test_cifar100_fine_labels(cifar100_root: Path) -> None:
    splits = build_cifar(DataConfig(root=str(cifar100_root), imbalance_factor=5), "cifar100")
    assert splits.num_classes == 100 and list(splits.stats.train_counts) == long_tail_counts(100, 5, 10)
    assert len(splits.test) == 200 and splits.class_names[7] == "class7"


def official(monkeypatch: pytest.MonkeyPatch, folder: Path, **changes: str) -> cifar.CifarSpec:
    """Pretend the fixture files are the official release (their MD5s become the official ones)."""
    spec = cifar.SPECS["cifar10"]
    md5 = {name: cifar.md5sum(folder / name) for name, _ in spec.all_files}
    spec = dataclasses.replace(
        spec,
        train_files=tuple((n, md5[n]) for n, _ in spec.train_files),
        test_files=tuple((n, md5[n]) for n, _ in spec.test_files),
        meta_file=(spec.meta_file[0], md5[spec.meta_file[0]]),
        **changes,
    )
    monkeypatch.setitem(cifar.SPECS, "cifar10", spec)
    return spec


def test_checksum_warning_only_for_non_official_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_cifar10(tmp_path, per_class_train=10, per_class_test=2)
    with pytest.warns(DataWarning, match="differ from the official CIFAR-10 checksums"):
        build_cifar(DataConfig(root=str(tmp_path), imbalance_factor=1), "cifar10")
    official(monkeypatch, folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_cifar(DataConfig(root=str(tmp_path), imbalance_factor=1), "cifar10")
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:-10] + b"0123456789")
    # the changed file is reported, and then refused because it no longer unpickles
    with pytest.warns(DataWarning, match="data_batch_3 differ"), pytest.raises(DataError, match="data_batch_3"):
        build_cifar(DataConfig(root=str(tmp_path), imbalance_factor=1), "cifar10")


def test_download_verify_extract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "server"
    folder = write_cifar10(src, per_class_train=10, per_class_test=2)
    md5 = make_archive(folder, src / "cifar-10-python.tar.gz")
    official(monkeypatch, folder, url=(src / "cifar-10-python.tar.gz").as_uri(), archive_md5=md5)
    root = tmp_path / "data"
    splits = build_cifar(DataConfig(root=str(root), imbalance_factor=2), "cifar10")
    assert (root / "cifar-10-python.tar.gz").is_file() and (root / "cifar-10-batches-py" / "test_batch").is_file()
    assert list(splits.stats.train_counts) == long_tail_counts(10, 2, 10)
    # a second build uses the extracted folder (the URL is not needed any more)
    monkeypatch.setitem(cifar.SPECS, "cifar10", dataclasses.replace(cifar.SPECS["cifar10"], url="http://0.0.0.0:9/x"))
    assert build_cifar(DataConfig(root=str(root), imbalance_factor=2), "cifar10").stats == splits.stats


def test_download_with_wrong_checksum_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "server"
    folder = write_cifar10(src, per_class_train=10, per_class_test=2)
    make_archive(folder, src / "cifar-10-python.tar.gz")
    official(monkeypatch, folder, url=(src / "cifar-10-python.tar.gz").as_uri(), archive_md5="0" * 32)
    root = tmp_path / "data"
    with pytest.raises(DataError, match="MD5") as err:
        build_cifar(DataConfig(root=str(root)), "cifar10")
    assert "put cifar-10-python.tar.gz in" in str(err.value)
    assert not list(root.glob("*.part")) and not (root / "cifar-10-python.tar.gz").exists()


def test_local_archive_with_wrong_checksum_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"not the archive")
    with pytest.raises(DataError, match="differs from the official c58f30108f718f92721af3b95e74349a"):
        build_cifar(DataConfig(root=str(tmp_path)), "cifar10")


def test_no_files_and_no_network_says_where_to_put_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(cifar.SPECS, "cifar10",
                        dataclasses.replace(cifar.SPECS["cifar10"], url="http://127.0.0.1:9/cifar-10-python.tar.gz"))
    with pytest.raises(DataError) as err:
        build_cifar(DataConfig(root=str(tmp_path / "empty")), "cifar10")
    message = str(err.value)
    assert "could not download" in message and str(tmp_path / "empty") in message
    assert "cifar-10-python.tar.gz" in message and "c58f30108f718f92721af3b95e74349a" in message
    with pytest.raises(DataError, match=r"downloads are off \(data.download: false\)"):
        build_cifar(DataConfig(root=str(tmp_path / "empty"), download=False), "cifar10")


def test_incomplete_folder_names_missing_files(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path, per_class_train=10, per_class_test=2)
    (folder / "data_batch_4").unlink()
    with pytest.raises(DataError, match="missing data_batch_4"):
        build_cifar(DataConfig(root=str(tmp_path)), "cifar10")


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_batch_unpickler_runs_no_code(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path, per_class_train=10, per_class_test=2)
    with open(folder / "data_batch_2", "wb") as f:
        pickle.dump({b"data": _Evil(), b"labels": []}, f, protocol=2)
    with pytest.raises(DataError, match=r"data_batch_2: not a CIFAR python batch file .*refusing to load posix"):
        build_cifar(DataConfig(root=str(tmp_path)), "cifar10")


def test_labels_out_of_range(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path, per_class_train=10, per_class_test=2)
    with open(folder / "test_batch", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    batch[b"labels"][0] = 10
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch, f, protocol=2)
    with pytest.raises(DataError, match=r"test_batch: labels must lie in \[0, 9\], found \[0, 10\]"):
        build_cifar(DataConfig(root=str(tmp_path)), "cifar10")
