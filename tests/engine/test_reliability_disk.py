"""A full disk or an unwritable output folder is reported with the path, before training when it can be
known and when it happens otherwise, and never damages the checkpoint already on disk.

Tests run as root here, where chmod does not stop writes; unwritable folders are therefore made by
putting the run directory under a regular file (the OS refuses with ENOTDIR, whoever asks) or by
patching the write to fail with EROFS/ENOSPC. A real full disk is /dev/full: a temporary file that is a
symlink to it fails every write with ENOSPC, exactly as a full filesystem does.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from fcc_lt.cli import main as cli
from fcc_lt.config.load import load_config
from fcc_lt.engine.trainer import Trainer
from fcc_lt.evaluation.run_loader import load_run_config
from fcc_lt.models.checkpoint_file import load_checkpoint, save_checkpoint
from fcc_lt.util import files as checkpoint
from fcc_lt.util.errors import OutputError
from fcc_lt.util.files import atomic_write_bytes
from reliability_support import assert_same_run, inprocess_reference, one_thread, run_overrides

needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux's /dev/full")


@pytest.fixture(autouse=True)
def single_thread():
    with one_thread():
        yield


class FillsUp:
    """A file object that accepts ``room`` bytes, then fails like a full disk."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def write(self, data) -> int:
        if len(data) > self.room:
            self.f.write(bytes(data)[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


def test_run_directory_under_a_file_fails_before_any_data_or_training(
        cifar10_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file")
    out = blocker / "run"
    import fcc_lt.engine.trainer

    monkeypatch.setattr(fcc_lt.engine.trainer, "build_splits", lambda cfg: pytest.fail("data was loaded"))
    assert cli.main(["train", *run_overrides(cifar10_root, out)]) == 2
    err = capsys.readouterr().err
    assert f"error: cannot write to the run directory {out}: Not a directory" in err and "Traceback" not in err


def test_read_only_run_directory_fails_before_any_training(
        cifar10_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EROFS (a read-only mount) on the write probe; as root a chmod would not stop the writes."""
    real = Path.write_bytes

    def read_only(self: Path, data: bytes) -> int:
        if self.name == ".write-test":
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", read_only)
    out = tmp_path / "run"
    with pytest.raises(OutputError, match=rf"^cannot write to the run directory {out}: Read-only file system$"):
        Trainer(load_config(None, run_overrides(cifar10_root, out)))
    assert not (out / "config.yaml").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders anyway")
def test_chmod_read_only_run_directory(cifar10_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    out.chmod(0o500)
    try:
        with pytest.raises(OutputError, match=f"cannot write to the run directory {out}"):
            Trainer(load_config(None, run_overrides(cifar10_root, out)))
    finally:
        out.chmod(0o700)


def test_too_little_free_space_is_reported_before_training(
        cifar10_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from collections import namedtuple

    import fcc_lt.engine.run_dir
    from fcc_lt.util.errors import format_size

    state = Trainer(load_config(None, run_overrides(cifar10_root, tmp_path / "a"))).model.state_dict()
    stats = ("running_mean", "running_var", "num_batches_tracked")
    # a checkpoint of the tiny model: weights and their SGD momentum, plus the BN statistics
    size = sum(v.numel() * v.element_size() * (1 if k.endswith(stats) else 2) for k, v in state.items())
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(fcc_lt.engine.run_dir.shutil, "disk_usage", lambda p: usage(10**9, 0, 2 * size - 1))
    out = tmp_path / "b"
    with pytest.raises(OutputError, match=rf"^{out}: only {format_size(2 * size - 1)} free, but a checkpoint "
                                          rf"takes about {format_size(size)} and is written next to the previous one"):
        Trainer(load_config(None, run_overrides(cifar10_root, out)))
    assert not (out / "metrics.jsonl").exists()
    monkeypatch.setattr(fcc_lt.engine.run_dir.shutil, "disk_usage", lambda p: usage(10**9, 0, 2 * size))
    Trainer(load_config(None, run_overrides(cifar10_root, tmp_path / "c")))  # exactly enough


@pytest.mark.parametrize("room", [0, 100, 5000])
def test_checkpoint_write_failing_midway_keeps_the_previous_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, room: int) -> None:
    import torch

    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint({"model": {"w": torch.arange(4.0)}, "next_epoch": 3}, path)
    good = path.read_bytes()
    real_open = open
    monkeypatch.setattr(checkpoint, "open", lambda p, mode="r", *a, **k: FillsUp(real_open(p, mode, *a, **k), room),
                        raising=False)
    with pytest.raises(OutputError) as err:
        save_checkpoint({"model": {"w": torch.zeros(10_000)}, "next_epoch": 4}, path)
    assert str(err.value) == (f"cannot write {path}: No space left on device (disk full?); "
                              "any previous file there is unchanged")
    assert path.read_bytes() == good
    assert load_checkpoint(path)["next_epoch"] == 3
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"], "the partial temporary file is removed"


def test_a_failing_serialiser_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text("old")

    def explode(f) -> None:
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(path, explode)
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


@needs_dev_full
def test_disk_full_at_an_epoch_checkpoint_then_resume_after_freeing_space(
        cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    reference = inprocess_reference(cifar10_root, tmp_path_factory)
    out = tmp_path / "run"
    ckpt = out / "checkpoints" / "last.pt"
    temp = ckpt.with_name(f".last.pt.tmp-{os.getpid()}")
    trainer = Trainer(load_config(None, run_overrides(cifar10_root, out, epochs=3)))
    kept: dict[str, bytes] = {}

    def fill_disk(t: Trainer, epoch: int, step: int) -> None:
        if (epoch, step) == (2, 0):
            kept["last"] = ckpt.read_bytes()
            temp.symlink_to("/dev/full")  # the end-of-epoch-2 checkpoint is written here

    trainer.step_callback = fill_disk
    with pytest.raises(OutputError) as err:
        trainer.fit()
    assert str(err.value) == (f"cannot write {ckpt}: No space left on device (disk full?); "
                              "any previous file there is unchanged")
    assert ckpt.read_bytes() == kept["last"] and load_checkpoint(ckpt)["next_epoch"] == 2
    assert not temp.exists() and not temp.is_symlink()
    Trainer(load_run_config(out), resume=True).fit()  # space is back: the run finishes as if nothing happened
    assert_same_run(out, reference)


@needs_dev_full
def test_metrics_append_on_a_full_disk_is_an_output_error(cifar10_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    trainer = Trainer(load_config(None, run_overrides(cifar10_root, out, epochs=2)))
    (out / "metrics.jsonl").symlink_to("/dev/full")
    with pytest.raises(OutputError, match=rf"^cannot append to {out / 'metrics.jsonl'}: No space left on device$"):
        trainer.fit()
    assert not (out / "checkpoints" / "last.pt").exists()  # the epoch is trained again after a resume


def test_metrics_file_that_cannot_be_opened_is_an_output_error(cifar10_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    trainer = Trainer(load_config(None, run_overrides(cifar10_root, out, epochs=2)))
    (out / "metrics.jsonl").mkdir()  # portable stand-in for any open() failure
    with pytest.raises(OutputError, match=rf"^cannot append to {out / 'metrics.jsonl'}: Is a directory$"):
        trainer.fit()


@needs_dev_full
def test_final_eval_files_on_a_full_disk(cifar10_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    trainer = Trainer(load_config(None, run_overrides(cifar10_root, out, epochs=2)))
    out.joinpath(f".eval.json.tmp-{os.getpid()}").symlink_to("/dev/full")
    with pytest.raises(OutputError, match=rf"^cannot write {out / 'eval.json'}: No space left on device"):
        trainer.fit()
    assert load_checkpoint(out / "checkpoints" / "last.pt")["next_epoch"] == 3  # training itself is kept
    Trainer(load_run_config(out), resume=True).fit()  # only the evaluation is redone
    assert json.loads((out / "eval.json").read_text())["epoch"] == 2


def test_a_run_directory_in_use_by_another_process_is_refused(
        cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """Two processes training into one run directory would interleave checkpoints and metrics. The other
    process here holds the run's lock as `fcc train` does; once it is killed, the kernel frees the lock."""
    import shutil
    import signal
    import subprocess
    import sys

    from reliability_support import env

    run_dir = tmp_path / "run"
    shutil.copytree(inprocess_reference(cifar10_root, tmp_path_factory), run_dir)
    metrics_before = (run_dir / "metrics.jsonl").read_bytes()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from fcc_lt.util.run_lock import lock_run_dir; "
                               f"lock_run_dir(Path({str(run_dir)!r})); print('locked', flush=True); time.sleep(300)"],
        stdout=subprocess.PIPE, text=True, env=env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        for attempt in (lambda: Trainer(load_run_config(run_dir, ["train.epochs=4"]), resume=True),
                        lambda: Trainer(load_config(None, run_overrides(cifar10_root, run_dir)), overwrite=True)):
            with pytest.raises(OutputError, match=rf"^{run_dir} is in use by another fcc process "
                                                  rf"\(pid {holder.pid} on .+\); wait for it to end"):
                attempt()
        assert (run_dir / "metrics.jsonl").read_bytes() == metrics_before, "the refused run touched the folder"
        assert (run_dir / "checkpoints" / "last.pt").is_file()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    Trainer(load_run_config(run_dir, ["train.epochs=4"]), resume=True).fit()  # the lock died with its holder
    assert [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
