"""Reading checkpoint files: a file that is not a checkpoint at all is called what it is (empty, text, a zip
of something else, a plain pickle), and "refused" is kept for files that hold pickled Python objects."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from fcc_lt.models.checkpoint_file import load_checkpoint, not_a_checkpoint, save_checkpoint
from fcc_lt.util.errors import CheckpointError


class Payload:
    """Something a malicious pickle could build."""


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("name", "data", "said"), [
    ("empty.pt", b"", "an empty file (0 bytes), not a checkpoint"),
    ("notes.pt", b"epoch 3: top1 71.2\nlr 0.1\n",
     "a text file (it starts with 'epoch 3: top1 71.2'), not a checkpoint"),
    ("binary.pt", bytes(range(1, 64)) + b"\xff\xfe", "not a file torch.save wrote (neither a zip archive nor"),
    ("plain.pkl", pickle.dumps({"weights": [1, 2]}, protocol=4), "a Python pickle that torch.save did not write"),
])
def test_files_that_are_no_checkpoint_are_called_what_they_are(tmp_path: Path, name: str, data: bytes,
                                                               said: str) -> None:
    path = write(tmp_path, name, data)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: {said}")
    assert "refused" not in str(err.value) and "Python objects" not in str(err.value)


def test_a_zip_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "photos.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.jpg", b"x")
        archive.writestr("b.jpg", b"y")
    with pytest.raises(CheckpointError, match=r"a zip archive, but not a PyTorch checkpoint: it holds no data\.pkl "
                                              r"\(it holds a\.jpg, b\.jpg\)"):
        load_checkpoint(path)
    damaged = write(tmp_path, "damaged.pt", path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="a damaged zip archive"):
        load_checkpoint(damaged)


def test_real_checkpoints_still_read_and_pickled_objects_are_still_refused(tmp_path: Path) -> None:
    weights = {"w": torch.arange(3.0)}
    ours = tmp_path / "ours.pt"
    save_checkpoint({"model": weights}, ours)
    legacy = tmp_path / "legacy.pt"
    torch.save(weights, legacy, _use_new_zipfile_serialization=False)  # torch's format before 1.6
    for path in (ours, legacy):
        assert not_a_checkpoint(path) is None
        assert torch.equal(load_checkpoint(path)["model"]["w"], weights["w"])
    evil = tmp_path / "evil.pt"
    torch.save({"model": weights, "extra": Payload()}, evil)
    with pytest.raises(CheckpointError, match=r"refused: it holds Python objects other than tensors .*Payload"):
        load_checkpoint(evil)
