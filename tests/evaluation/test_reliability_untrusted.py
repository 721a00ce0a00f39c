"""Untrusted files stay harmless: crafted checkpoints and CIFAR batch files cannot run code, and archive
members cannot be written outside the target folder. Each attack would create a marker file (or a file
outside the folder) if it worked; the tests check that it did not."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import tarfile
from pathlib import Path

import pytest
import torch

from cifar_fixtures import write_cifar10
from fcc_lt.cli import main as cli
from fcc_lt.config.schema import DataConfig
from fcc_lt.data.cifar import _unpickle, build_cifar
from fcc_lt.data.download import extract_folder, safe_extract
from fcc_lt.engine.trainer import Trainer
from fcc_lt.evaluation.run_loader import load_run_config
from fcc_lt.models.checkpoint_file import load_checkpoint
from fcc_lt.util.errors import CheckpointError, DataError
from reliability_support import inprocess_reference, one_thread, run_overrides


class Payload:
    """Unpickling this calls ``func(*args)``: with os.system, an arbitrary shell command."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def touch(marker: Path) -> Payload:
    return Payload(os.system, f"touch {marker}")


# ---------------------------------------------------------------------------------------- checkpoints


def evil_checkpoints(tmp_path: Path, marker: Path) -> dict[str, Path]:
    """Checkpoints with a code-running object: in torch's zip format, as a legacy raw pickle, hidden
    inside an otherwise valid state_dict, and disguised as a tensor's storage."""
    files = {}
    files["zip"] = tmp_path / "zip.pt"
    torch.save({"format": "fcc-checkpoint", "model": {"w": torch.zeros(2)}, "extra": touch(marker)}, files["zip"])
    files["legacy"] = tmp_path / "legacy.pt"
    files["legacy"].write_bytes(pickle.dumps({"model": touch(marker)}, protocol=2))
    files["in_state_dict"] = tmp_path / "in_state_dict.pt"
    torch.save({"w": torch.zeros(2), "b": touch(marker)}, files["in_state_dict"])
    files["eval"] = tmp_path / "eval.pt"
    torch.save(Payload(eval, f"__import__('os').system('touch {marker}')"), files["eval"])
    return files


@pytest.mark.parametrize("kind", ["zip", "legacy", "in_state_dict", "eval"])
def test_malicious_checkpoint_is_refused_without_running_code(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "pwned"
    path = evil_checkpoints(tmp_path, marker)[kind]
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: refused: it holds Python objects other than tensors")
    assert "weights_only=True" in str(err.value) and "Re-running" not in str(err.value)
    assert not marker.exists()


def test_malicious_checkpoint_through_init_from_resume_and_eval(
        cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Every way a checkpoint enters a run: model.init_from, fcc train --resume, fcc eval."""
    marker = tmp_path / "pwned"
    evil = evil_checkpoints(tmp_path, marker)["zip"]
    with pytest.raises(CheckpointError, match="refused"):
        Trainer(load_run_config_or(cifar10_root, tmp_path / "a", f"model.init_from={evil}"))
    with one_thread():
        run_dir = tmp_path / "run"
        shutil.copytree(inprocess_reference(cifar10_root, tmp_path_factory), run_dir)
    shutil.copy(evil, run_dir / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError, match="refused"):
        Trainer(load_run_config(run_dir), resume=True)
    assert cli.main(["eval", str(run_dir)]) == 2
    assert "refused: it holds Python objects" in capsys.readouterr().err
    assert not marker.exists()


def load_run_config_or(root: Path, out: Path, *extra: str):
    from fcc_lt.config.load import load_config

    return load_config(None, run_overrides(root, out, *extra))


@pytest.mark.parametrize(("content", "message"), [
    ({"format": "fcc-checkpoint", "model": [1, 2, 3]}, "its 'model' entry is not a state_dict"),
    ({"format": "fcc-checkpoint", "model": {"w": "not a tensor"}}, "its 'model' entry is not a state_dict"),
    ({"format": "fcc-checkpoint"}, "its 'model' entry is not a state_dict"),
    ({"w": torch.zeros(1), "n": 3}, "not an fcc checkpoint or a model state_dict"),
    ([torch.zeros(1)], "not an fcc checkpoint or a model state_dict"),
])
def test_checkpoint_of_the_wrong_shape_is_a_checkpoint_error(tmp_path: Path, content, message: str) -> None:
    path = tmp_path / "odd.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=rf"^{path}: {message}"):
        load_checkpoint(path)


# --------------------------------------------------------------------------------- CIFAR batch files


@pytest.mark.parametrize("payload", [
    lambda m: touch(m),
    lambda m: Payload(eval, f"__import__('os').system('touch {m}')"),
    lambda m: Payload(exec, f"open('{m}', 'w').close()"),
    lambda m: Payload(open, str(m), "w"),
    lambda m: Payload(getattr, Payload(__import__, "os"), "system"),
    lambda m: Payload(shutil.rmtree, str(m.parent / "victim")),
])
def test_batch_unpickler_refuses_every_global_outside_its_allowlist(tmp_path: Path, payload) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "victim").mkdir()
    folder = write_cifar10(tmp_path / "data", per_class_train=10, per_class_test=2)
    path = folder / "data_batch_4"
    path.write_bytes(pickle.dumps({b"data": [payload(marker)], b"labels": []}, protocol=2))
    refused = rf"^{path}: not a CIFAR python batch file \(UnpicklingError: refusing to load "
    with pytest.raises(DataError, match=refused):
        build_cifar(DataConfig(root=str(tmp_path / "data")), "cifar10")
    assert not marker.exists() and (tmp_path / "victim").is_dir()


def test_batch_unpickler_still_reads_numpy_arrays(tmp_path: Path) -> None:
    """The allowlist is not empty for nothing: the official files are pickled NumPy arrays."""
    import numpy as np

    path = tmp_path / "batch"
    data = np.arange(3072 * 2, dtype=np.uint8).reshape(2, 3072)
    path.write_bytes(pickle.dumps({b"data": data, b"labels": [1, 2]}, protocol=2))
    batch = _unpickle(path)
    assert np.array_equal(batch["data"], data) and batch["labels"] == [1, 2]


# -------------------------------------------------------------------------------------------- archives


def tar_with(path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data) if data is not None else 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    path.write_bytes(buf.getvalue())
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = 0o644
    return info


FILE = (member("cifar-10-batches-py/data_batch_1"), b"fine")
ATTACKS = {
    "dotdot": [FILE, (member("cifar-10-batches-py/../../escaped"), b"x")],
    "absolute": [FILE, (member("/tmp/fcc-test-escaped-abs"), b"x")],
    "symlink_absolute": [FILE, (member("cifar-10-batches-py/link", tarfile.SYMTYPE, "/etc"), None)],
    "symlink_up": [FILE, (member("cifar-10-batches-py/link", tarfile.SYMTYPE, "../../.."), None)],
    "symlink_then_write": [(member("cifar-10-batches-py", tarfile.SYMTYPE, ".."), None),
                           (member("cifar-10-batches-py/escaped"), b"x")],
    "symlink_chain": [(member("a", tarfile.SYMTYPE, "."), None), (member("a/b", tarfile.SYMTYPE, ".."), None),
                      (member("a/b/escaped"), b"x")],
    "hardlink_out": [FILE, (member("cifar-10-batches-py/hard", tarfile.LNKTYPE, "../../outside"), None)],
    "char_device": [FILE, (member("cifar-10-batches-py/null", tarfile.CHRTYPE), None)],
    "block_device": [FILE, (member("cifar-10-batches-py/disk", tarfile.BLKTYPE), None)],
    "fifo": [FILE, (member("cifar-10-batches-py/pipe", tarfile.FIFOTYPE), None)],
}


@pytest.mark.parametrize("with_data_filter", [True, False], ids=["py-data-filter", "own-checks-only"])
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_archive_members_escaping_the_folder_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, attack: str, with_data_filter: bool) -> None:
    """Refused before anything is written, with or without Python's own tarfile data filter (which
    Python < 3.11.4 lacks): our checks alone must hold."""
    if not with_data_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    archive = tar_with(tmp_path / "evil.tar.gz", *ATTACKS[attack])
    jail = tmp_path / "jail"
    root = jail / "data"
    before = set(tmp_path.rglob("*"))
    with pytest.raises(DataError) as err:
        extract_folder(archive, root, "cifar-10-batches-py")
    assert str(err.value).startswith(f"{archive}: ") and "refusing" in str(err.value)
    assert set(tmp_path.rglob("*")) - before == {jail, root}, "something was written"
    assert not Path("/tmp/fcc-test-escaped-abs").exists()


def test_refusal_names_the_member(tmp_path: Path) -> None:
    archive = tar_with(tmp_path / "evil.tar.gz", *ATTACKS["dotdot"])
    with pytest.raises(DataError, match=r"member 'cifar-10-batches-py/../../escaped' would be written outside"):
        safe_extract(archive, tmp_path / "out")
    archive = tar_with(tmp_path / "evil2.tar.gz", *ATTACKS["symlink_chain"])
    with pytest.raises(DataError, match=r"member 'a/b/escaped' lies under the link 'a/b'|"
                                        r"member 'a/b' lies under the link 'a'"):
        safe_extract(archive, tmp_path / "out2")
    archive = tar_with(tmp_path / "evil3.tar.gz", *ATTACKS["fifo"])
    with pytest.raises(DataError, match=r"member 'cifar-10-batches-py/pipe' is a device or special file"):
        safe_extract(archive, tmp_path / "out3")


def test_harmless_links_inside_the_folder_still_extract(tmp_path: Path) -> None:
    archive = tar_with(tmp_path / "ok.tar.gz", FILE,
                       (member("cifar-10-batches-py/alias", tarfile.SYMTYPE, "data_batch_1"), None))
    folder = extract_folder(archive, tmp_path / "data", "cifar-10-batches-py")
    assert (folder / "alias").read_bytes() == b"fine"
