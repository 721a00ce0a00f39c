"""Ctrl-C and the image decoding workers: the main process handles it, the workers never see it, and one
arriving while the workers start stops them before it is raised (no traceback from a half-made iterator)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcc_lt.data.image_loader import _data_loader, _Sequential, stop_workers
from fcc_lt.data.images import CenterResizeCrop, ImageFiles

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="forked workers (POSIX)")


@pytest.fixture
def foreground_sigint() -> Iterator[None]:
    """Python's own SIGINT handler, as in a foreground shell, even when pytest runs with SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def images(tmp_path: Path, count: int = 8) -> ImageFiles:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return ImageFiles(paths, [0] * count, "fixture")


def test_workers_never_see_ctrl_c(tmp_path: Path, foreground_sigint: None) -> None:
    files = images(tmp_path)
    loader = _data_loader(files, CenterResizeCrop(16, 1.0), _Sequential(range(8), 2), workers=2, prefetch=1,
                          pin=False, persistent=False)
    it = iter(loader)
    for worker in it._workers:
        os.kill(worker.pid, signal.SIGINT)  # what a terminal's Ctrl-C does to every process of the group
    time.sleep(0.2)
    assert all(w.is_alive() for w in it._workers)  # before: each worker raised KeyboardInterrupt and left
    batches = list(it)
    assert sum(len(b[1]) for b in batches) == 8


def test_ctrl_c_while_the_workers_start_stops_them_first(tmp_path: Path, foreground_sigint: None,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.multiprocessing

    started: list[int] = []

    class PressedWhileStarting(torch.multiprocessing.Process):  # type: ignore[misc,name-defined]
        """Ctrl-C as the second worker process starts: the iterator holds one worker and is not complete."""

        def start(self) -> None:
            super().start()
            started.append(self.pid)
            if len(started) == 2:
                os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(torch.multiprocessing, "Process", PressedWhileStarting)
    files = images(tmp_path)
    loader = _data_loader(files, CenterResizeCrop(16, 1.0), _Sequential(range(8), 2), workers=2,
                          prefetch=1, pin=False, persistent=False)
    with pytest.raises(KeyboardInterrupt) as raised:
        iter(loader)
    frames, iterator = [], None
    tb = raised.value.__traceback__
    while tb is not None:
        frames.append((Path(tb.tb_frame.f_code.co_filename).name, tb.tb_frame.f_code.co_name))
        iterator = iterator or tb.tb_frame.f_locals.get("iterator")
        tb = tb.tb_next
    del raised, tb
    # before: raised inside the iterator's __init__, which left it half-made (its __del__ then printed
    # "Exception ignored in ... AttributeError: ... _workers_status"); now once it is complete, its workers
    # stopped
    assert ("dataloader.py", "__init__") not in frames and iterator is not None, frames
    assert len(started) == 2 and not any(w.is_alive() for w in iterator._workers)


def test_stop_workers_holds_a_second_ctrl_c_back(tmp_path: Path, foreground_sigint: None) -> None:
    files = images(tmp_path)
    loader = _data_loader(files, CenterResizeCrop(16, 1.0), _Sequential(range(8), 2), workers=2, prefetch=1,
                          pin=False, persistent=False)
    it = iter(loader)
    original = it._shutdown_workers

    def pressed_during_shutdown() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        original()

    it._shutdown_workers = pressed_during_shutdown
    with pytest.raises(KeyboardInterrupt):
        stop_workers(it)  # the Ctrl-C is raised after the workers are stopped, not inside their shutdown
    assert it._shutdown and not any(w.is_alive() for w in it._workers)
    it._shutdown_workers = original  # what its __del__ calls


@pytest.mark.slow
def test_ctrl_c_during_fcc_predict_exits_130_quietly(cifar10_root: Path, tmp_path: Path) -> None:
    """`fcc predict` with 2 workers, Ctrl-C (once, then twice) to the whole process group as soon as its
    workers exist: exit 130, "interrupted", no traceback, no CSV."""
    from conftest import subprocess_env, tiny_run_overrides
    from fcc_lt.config.load import load_config
    from fcc_lt.engine.trainer import Trainer

    run = tmp_path / "run"
    Trainer(load_config(None, tiny_run_overrides(cifar10_root, run, "train.epochs=1", "train.milestones=[]",
                                                 "data.workers=2"))).fit()
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(64):
        Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    out = tmp_path / "p.csv"
    for presses in (1, 2):
        proc = subprocess.Popen([sys.executable, "-m", "fcc_lt", "predict", str(run), str(folder), "--out", str(out),
                                 "--batch-size", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=subprocess_env(), start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if children.is_file() and children.read_text().split():
                break
            time.sleep(0.005)
        for _ in range(presses):
            os.killpg(proc.pid, signal.SIGINT)
            time.sleep(0.03)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130 and err.strip().endswith("interrupted"), err
        assert "Traceback" not in err and "Exception ignored" not in err, err
        assert not out.exists()
