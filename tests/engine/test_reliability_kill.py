"""A run killed with SIGKILL at any moment, then `fcc train --resume`, ends exactly like one never killed.

Real `python -m fcc_lt train` subprocesses are killed: at moments drawn from a seeded schedule (during
start-up, before the first checkpoint, mid-epoch, around checkpoint writes and evaluation), and
deterministically in the middle of writing a checkpoint. The resumed run must finish with bit-identical
weights, metrics and evaluation (CPU, single thread: deterministic).
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest
import torch

from reliability_support import (
    EPOCHS,
    KILLER,
    assert_same_run,
    kill,
    metric_lines,
    run,
    run_overrides,
    start,
    subprocess_reference,
    wait_until,
)

pytestmark = pytest.mark.slow


def resume_or_restart(root: Path, out: Path, log: Path, script: Path | None = None):
    """What a user does after a kill: --resume, or the original command if the run never wrote its config."""
    if (out / "config.yaml").exists():
        return start(["train", "--resume", str(out)], log, script)
    return start(["train", *run_overrides(root, out)], log, script)


@pytest.mark.parametrize("seed", [0])  # more seeds = more moments covered, ~15 s each
def test_sigkill_at_random_moments_then_resume_gives_identical_run(
        cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, seed: int) -> None:
    reference = subprocess_reference(cifar10_root, tmp_path_factory)
    rng = random.Random(seed)
    out, log = tmp_path / "run", tmp_path / "log"
    # (complete metric lines to wait for, then extra seconds) per kill; 0 lines = during start-up
    schedule = [(0, rng.uniform(0.3, 2.5))] + [
        (lines, rng.uniform(0.0, 0.2)) for lines in sorted(rng.sample(range(1, EPOCHS), 3))]
    kills = 0
    for lines, delay in schedule:
        proc = resume_or_restart(cifar10_root, out, log)
        if wait_until(proc, lambda n=lines: metric_lines(out) >= n):
            time.sleep(delay)
            kills += kill(proc) == -signal.SIGKILL
        else:
            assert proc.wait() == 0, log.read_text()[-3000:]
            break
    assert kills >= 3, f"only {kills} kills landed while the run was alive; schedule {schedule}"
    final = run(["train", "--resume", str(out)], log)
    assert final.returncode == 0, final.stderr
    assert "Traceback" not in final.stderr
    assert_same_run(out, reference)
    assert not list((out / "checkpoints").glob(".*.tmp-*")), "a stale temporary checkpoint was left behind"


def test_sigkill_during_a_checkpoint_write_keeps_the_previous_one(
        cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    reference = subprocess_reference(cifar10_root, tmp_path_factory)
    script = tmp_path / "dying_fcc.py"
    script.write_text(KILLER)
    out, log = tmp_path / "run", tmp_path / "log"
    monkeypatch.setenv("FCC_TEST_KILL", "last.pt:3:half")  # the end-of-epoch-3 checkpoint dies half-written
    proc = start(["train", *run_overrides(cifar10_root, out)], log, script)
    assert proc.wait(timeout=300) == -signal.SIGKILL, log.read_text()[-3000:]

    ckpt = out / "checkpoints"
    temps = list(ckpt.glob(".last.pt.tmp-*"))
    assert len(temps) == 1 and 0 < temps[0].stat().st_size < (ckpt / "last.pt").stat().st_size
    with pytest.raises(Exception):  # noqa: B017 - the torn file is unreadable whichever way torch fails
        torch.load(temps[0], weights_only=True)
    state = torch.load(ckpt / "last.pt", weights_only=True)  # the previous, complete checkpoint
    assert (state["next_epoch"], state["next_step"]) == (3, 0)
    assert metric_lines(out) == 3  # epoch 3 was logged before its checkpoint write died

    resumed = run(["train", "--resume", str(out)], log)
    assert resumed.returncode == 0, resumed.stderr
    assert not temps[0].exists(), "the torn temporary file should be cleaned up on resume"
    assert_same_run(out, reference)


def test_sigkill_before_the_first_checkpoint_resumes_from_epoch_1(
        cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    """Killed after config.yaml but before any epoch finished: --resume starts over instead of failing."""
    reference = subprocess_reference(cifar10_root, tmp_path_factory)
    out, log = tmp_path / "run", tmp_path / "log"
    proc = start(["train", *run_overrides(cifar10_root, out)], log)
    assert wait_until(proc, lambda: (out / "config.yaml").exists())
    assert kill(proc) == -signal.SIGKILL
    assert not (out / "checkpoints" / "last.pt").exists()
    resumed = run(["train", "--resume", str(out)], log)
    assert resumed.returncode == 0, resumed.stderr
    assert "no checkpoint yet" in resumed.stderr
    assert_same_run(out, reference)
