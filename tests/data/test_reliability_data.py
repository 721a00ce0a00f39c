"""Bad data is a DataError naming the file and what is wrong, raised before any training step.

CIFAR batch files cut short, overwritten or holding the wrong things; archives with a wrong checksum,
cut short or interrupted while being extracted; labels out of range; classes left without images; JSON
annotations with wrong fields; truncated or junk image files (an error, or with data.skip_bad_images a
counted skip); annotation paths that look like shell commands.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from cifar_fixtures import make_archive, write_cifar10
from fcc_lt.cli import main as cli
from fcc_lt.config.load import load_config
from fcc_lt.config.schema import DataConfig
from fcc_lt.data import cifar
from fcc_lt.data.build import build_splits
from fcc_lt.data.cifar import DataWarning, build_cifar
from fcc_lt.data.download import download, extract_folder, md5sum
from fcc_lt.util.errors import DataError
from image_fixtures import write_json_dataset
from reliability_support import run_overrides

SMALL = {"per_class_train": 10, "per_class_test": 2}


def load(root: Path, **kwargs) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # fixture files are not the official ones
        build_cifar(DataConfig(root=str(root), **{"imbalance_factor": 2.0, **kwargs}), "cifar10")


def rewrite(path: Path, change) -> None:
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    batch = change(batch)
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


@pytest.mark.parametrize(("damage", "message"), [
    (lambda b: b[: len(b) // 2], r"data_batch_3: not a CIFAR python batch file \((UnpicklingError|EOFError)"),
    (lambda b: b[:1], r"data_batch_3: not a CIFAR python batch file"),
    (lambda b: b"", r"data_batch_3: not a CIFAR python batch file \(EOFError"),
    (lambda b: os.urandom(4096), r"data_batch_3: not a CIFAR python batch file"),
    (lambda b: b"\x80\x02" + b"\xff" * 64, r"data_batch_3: not a CIFAR python batch file"),
    (lambda b: pickle.dumps([1, 2, 3], protocol=2), r"data_batch_3: expected a pickled dict, got list"),
])
def test_truncated_or_corrupt_batch_files(tmp_path: Path, damage, message: str) -> None:
    folder = write_cifar10(tmp_path, **SMALL)
    path = folder / "data_batch_3"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=rf"^{folder}/{message}"):
        load(tmp_path)


@pytest.mark.parametrize(("change", "message"), [
    (lambda b: {**b, b"labels": [10, *b[b"labels"][1:]]}, r"labels must lie in \[0, 9\], found \[0, 10\]"),
    (lambda b: {**b, b"labels": [-1, *b[b"labels"][1:]]}, r"labels must lie in \[0, 9\], found \[-1, 9\]"),
    (lambda b: {**b, b"labels": [float(x) + 0.5 for x in b[b"labels"]]},
     r"'labels' must be integer class ids, got float64 values"),
    (lambda b: {**b, b"labels": [str(x) for x in b[b"labels"]]}, r"'labels' must be integer class ids"),
    (lambda b: {**b, b"labels": b[b"labels"][:-1]}, r"20 images but 'labels' has shape \(19,\)"),
    (lambda b: {**b, b"labels": 3}, r"20 images but 'labels' has shape \(\)"),
    (lambda b: {**b, b"labels": [[1, 2], [3]]}, r"'data' and 'labels' must be arrays"),
    (lambda b: {**b, b"data": b[b"data"].astype(np.float32)},
     r"'data' must be uint8 of shape \(N, 3072\), got float32"),
    (lambda b: {**b, b"data": b[b"data"][:, :100]},
     r"'data' must be uint8 of shape \(N, 3072\), got uint8 \(20, 100\)"),
    (lambda b: {k: v for k, v in b.items() if k != b"labels"}, r"missing key 'labels'"),
])
def test_batch_contents_are_checked(tmp_path: Path, change, message: str) -> None:
    folder = write_cifar10(tmp_path, **SMALL)
    rewrite(folder / "data_batch_2", change)
    with pytest.raises(DataError, match=rf"^{folder}/data_batch_2: {message}"):
        load(tmp_path)


def test_a_class_missing_from_the_files_is_named(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path, **SMALL)
    for i in range(1, 6):  # drop every training image of class 7
        rewrite(folder / f"data_batch_{i}", lambda b: {
            **b, b"data": b[b"data"][np.asarray(b[b"labels"]) != 7],
            b"labels": [x for x in b[b"labels"] if x != 7]})
    with pytest.raises(DataError, match=rf"^{folder} \(training files data_batch_1, .*data_batch_5\): class 7 "
                                        r"has 0 training images: too few for \d+ training"):
        load(tmp_path)


def test_an_imbalance_factor_that_empties_classes_is_named(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path, **SMALL)
    with pytest.raises(DataError, match=rf"^{folder}: data.imbalance_factor 50 leaves classes \[6, 7, 8, 9\] "
                                        r"without training images: the largest class has 10 images, so the "
                                        r"factor can be at most 10"):
        load(tmp_path, imbalance_factor=50)
    load(tmp_path, imbalance_factor=10)  # 10 * 50^(-6/9) = 0.74 above; at IF 10 the last class keeps 1


def test_bad_data_stops_the_cli_before_any_training(
        cifar10_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "data"
    shutil.copytree(cifar10_root, root)
    batch = root / "cifar-10-batches-py" / "data_batch_5"
    batch.write_bytes(batch.read_bytes()[:1000])
    out = tmp_path / "run"
    assert cli.main(["train", *run_overrides(root, out)]) == 2
    err = capsys.readouterr().err
    assert f"error: {batch}: not a CIFAR python batch file" in err and "Traceback" not in err
    assert not (out / "metrics.jsonl").exists()


# ------------------------------------------------------------------------------------------- archives


def official_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, bytes]:
    """A fixture archive that the CIFAR-10 spec accepts as the official one (its MD5 patched in)."""
    src = tmp_path / "server"
    folder = write_cifar10(src, **SMALL)
    archive = src / "cifar-10-python.tar.gz"
    md5 = make_archive(folder, archive)
    monkeypatch.setitem(cifar.SPECS, "cifar10",
                        dataclasses.replace(cifar.SPECS["cifar10"], archive_md5=md5, url=archive.as_uri()))
    return archive, archive.read_bytes()


def test_archive_with_a_wrong_md5_is_refused_and_not_extracted(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    archive, data = official_archive(tmp_path, monkeypatch)
    root = tmp_path / "data"
    root.mkdir()
    tampered = bytearray(data)
    tampered[len(data) // 2] ^= 0xFF  # one flipped bit pattern: the archive may even still extract
    (root / archive.name).write_bytes(bytes(tampered))
    with pytest.raises(DataError) as err:
        load(root)
    assert str(err.value).startswith(f"{root / archive.name}: MD5 {md5sum(root / archive.name)} differs from "
                                     f"the official {cifar.SPECS['cifar10'].archive_md5}")
    assert sorted(p.name for p in root.iterdir()) == [archive.name], "nothing may be extracted"


def test_download_with_a_wrong_md5_leaves_nothing_behind(tmp_path: Path) -> None:
    src = tmp_path / "file.bin"
    src.write_bytes(b"x" * 5000)
    dest = tmp_path / "dl" / "file.bin"
    with pytest.raises(DataError, match=rf"downloaded {src.as_uri()} but its MD5 is {md5sum(src)}, expected 0+; "):
        download(src.as_uri(), dest, "0" * 32, progress=False)
    assert list(dest.parent.iterdir()) == []
    assert download(src.as_uri(), dest, md5sum(src), progress=False) == dest and dest.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.98])
def test_truncated_archive_is_refused_and_leaves_no_folder(tmp_path: Path, keep: float) -> None:
    src = tmp_path / "server"
    archive = tmp_path / "cut.tar.gz"
    data = (make_archive(write_cifar10(src, **SMALL), archive), archive.read_bytes())[1]
    archive.write_bytes(data[: int(len(data) * keep)])
    root = tmp_path / "data"
    with pytest.raises(DataError, match=rf"^{archive}: cannot extract: "):
        extract_folder(archive, root, "cifar-10-batches-py")
    assert list(root.iterdir()) == []


def test_extraction_interrupted_midway_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk (or a kill) after some members were written: the target folder never appears, so the
    next run does not mistake a half-extracted folder for the dataset."""
    import tarfile

    archive, _ = official_archive(tmp_path, monkeypatch)
    real = tarfile.TarFile._extract_member
    written = []

    def full_disk(self, tarinfo, targetpath, *args, **kwargs):
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        written.append(targetpath)
        return real(self, tarinfo, targetpath, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "_extract_member", full_disk)
    root = tmp_path / "data"
    root.mkdir()
    shutil.copy(archive, root / archive.name)
    with pytest.raises(DataError, match=rf"{root / archive.name}: cannot extract: .*No space left on device"):
        load(root)
    assert len(written) == 3
    assert sorted(p.name for p in root.iterdir()) == [archive.name]
    monkeypatch.setattr(tarfile.TarFile, "_extract_member", real)
    load(root)  # with space again, the archive extracts and loads
    assert (root / "cifar-10-batches-py" / "data_batch_5").is_file()


def test_staging_folder_of_a_killed_extraction_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive, _ = official_archive(tmp_path, monkeypatch)
    root = tmp_path / "data"
    dead = root / ".cifar-10-batches-py.extract-999999999"  # no such process
    (dead / "cifar-10-batches-py").mkdir(parents=True)
    (dead / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"half")
    shutil.copy(archive, root / archive.name)
    load(root)
    assert sorted(p.name for p in root.iterdir()) == sorted([archive.name, "cifar-10-batches-py"])


def test_modified_extracted_folder_loads_with_a_warning_naming_the_files(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path, **SMALL)
    with pytest.warns(DataWarning) as caught:
        build_cifar(DataConfig(root=str(tmp_path), imbalance_factor=2.0), "cifar10")
    text = str(caught[0].message)
    assert text.startswith(f"{folder}: data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, "
                           "test_batch, batches.meta differ from the official CIFAR-10 checksums; loading them anyway")


# ------------------------------------------------------------------------ JSON annotations and images


def json_run(train_json: Path, test_json: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "data.dataset=json", f"data.train_json={train_json}", f"data.test_json={test_json}",
            "data.image_size=32", "data.workers=0", "model.backbone=resnet_cifar",
            "model.backbone_params={depth: 8, width: 4}", "train.epochs=1", "train.milestones=[]",
            "train.warmup_epochs=0", "train.batch_size=4", "device=cpu", f"out={out}", "train.progress=false",
            *extra]


def test_bad_annotation_fields_stop_the_cli_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train_json, test_json = write_json_dataset(tmp_path / "data", [3, 2], test_per_class=1)
    raw = json.loads(train_json.read_text())
    raw["annotations"][1]["category_id"] = 2  # num_classes is 2
    del raw["annotations"][3]["fpath"]
    raw["annotations"][4]["image_id"] = raw["annotations"][0]["image_id"]
    train_json.write_text(json.dumps(raw))
    out = tmp_path / "run"
    assert cli.main(json_run(train_json, test_json, out)) == 2
    err = capsys.readouterr().err
    assert f"error: {train_json}: 3 problems in the annotations:" in err
    assert "annotations[1].category_id: expected an integer in [0, 1] (num_classes is 2), got 2" in err
    assert "annotations[3]: missing key 'fpath'" in err
    assert "annotations[4].image_id: 0 is also the image_id of annotations[0]" in err
    assert "Traceback" not in err and not (out / "metrics.jsonl").exists()


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_truncated_images_are_named_before_training_or_skipped_and_counted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    train_json, test_json = write_json_dataset(tmp_path / "data", [4, 3], test_per_class=1, size=(64, 64), fmt=fmt)
    cut = tmp_path / "data" / "train" / "class_00" / f"0002.{fmt}"
    junk = tmp_path / "data" / "train" / "class_01" / f"0000.{fmt}"
    truncate(cut)
    junk.write_bytes(os.urandom(300))
    out = tmp_path / "run"
    assert cli.main(json_run(train_json, test_json, out, "data.check_images=decode")) == 2
    err = capsys.readouterr().err
    assert f"error: {train_json}: 2 of 7 image files cannot be read; the first:" in err
    assert f"{cut}: not a readable image" in err and f"{junk}: not a readable image" in err
    assert not (out / "metrics.jsonl").exists()
    # opted in: both are left out, counted and named, and the run trains on the 5 others
    assert cli.main(json_run(train_json, test_json, out, "data.check_images=decode",
                             "data.skip_bad_images=true")) == 0
    err = capsys.readouterr().err
    assert f"{train_json}: leaving out 2 unreadable image files (data.skip_bad_images)" in err
    assert json.loads((out / "eval.json").read_text())["train_counts"] == [3, 2]


def test_annotation_paths_are_taken_literally(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """fpaths reach open() as they are: no shell runs them, no ~ or $VAR is expanded, no glob matches."""
    train_json, test_json = write_json_dataset(tmp_path / "data", [2, 2], test_per_class=1)
    root = tmp_path / "data"
    marker = tmp_path / "pwned"
    odd = [f"$(touch {marker}).png", f"`touch {marker}`.png", "~root/x.png", "${HOME}/y.png", "a b; rm -rf z.png",
           "*.png", "%HOME%.png"]
    raw = json.loads(train_json.read_text())
    for entry, name in zip(raw["annotations"], odd):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / entry["fpath"], root / name)  # the literal file name exists
        entry["fpath"] = name
    train_json.write_text(json.dumps(raw))
    cfg = load_config(None, json_run(train_json, test_json, tmp_path / "run", "data.loader=workers")[1:])
    splits = build_splits(cfg)
    assert [splits.train.path(i) for i in range(4)] == [os.path.join(root, name) for name in odd[:4]]
    assert not marker.exists()
    # a missing file is reported under its literal name, not an expanded one
    raw["annotations"][0]["fpath"] = "~nobody/missing.png"
    train_json.write_text(json.dumps(raw))
    with pytest.raises(DataError, match=rf"1 of 4 image files do not exist .*\n  {root}/~nobody/missing.png"):
        build_splits(cfg)
    assert not marker.exists()
