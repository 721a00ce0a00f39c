"""SIGTERM and Ctrl-C (SIGINT) stop a run after the current step with a checkpoint; resuming it from that
mid-epoch checkpoint gives exactly the weights of an uninterrupted run.

The in-process tests deliver real signals (os.kill to this process) at a chosen step, so the trainer's
handlers, not a test hook, do the work; the subprocess tests check what a user sees from `fcc train`:
exit status 128 + signal number, one line on stderr, no traceback.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from fcc_lt.cli import main as cli
from fcc_lt.config.load import load_config
from fcc_lt.engine.signals import TrainingInterrupted
from fcc_lt.engine.step import TrainingStep
from fcc_lt.engine.trainer import Trainer
from fcc_lt.evaluation.run_loader import load_run_config
from fcc_lt.models.checkpoint_file import load_checkpoint
from reliability_support import (
    STEPS_PER_EPOCH,
    assert_same_run,
    inprocess_reference,
    kill,
    metric_lines,
    one_thread,
    run,
    run_overrides,
    start,
    subprocess_reference,
    wait_until,
)


@pytest.fixture
def single_thread():
    with one_thread():
        yield


@pytest.fixture
def safety_handlers():
    """If the trainer failed to install its handlers, a signal would kill pytest: catch it instead."""
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: caught.append(signum))
                for s in (signal.SIGTERM, signal.SIGINT)}
    yield caught
    for s, handler in previous.items():
        signal.signal(s, handler)


@pytest.mark.parametrize(("signum", "at"), [(signal.SIGTERM, (2, 5)), (signal.SIGINT, (3, 0))])
def test_signal_saves_after_the_current_step_and_resume_is_exact(
        cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
        safety_handlers: list[int], single_thread: None, signum: int, at: tuple[int, int]) -> None:
    reference = inprocess_reference(cifar10_root, tmp_path_factory)
    out = tmp_path / "run"
    trainer = Trainer(load_config(None, run_overrides(cifar10_root, out, epochs=3)))
    assert trainer.train_loader.steps_per_epoch(1) == STEPS_PER_EPOCH
    steps_seen: list[tuple[int, int]] = []

    def deliver(t: Trainer, epoch: int, step: int) -> None:
        steps_seen.append((epoch, step))
        if (epoch, step) == at:
            os.kill(os.getpid(), signum)

    trainer.step_callback = deliver
    handler_before = signal.getsignal(signum)
    with pytest.raises(TrainingInterrupted) as err:
        trainer.fit()
    assert safety_handlers == [], "the trainer did not handle the signal itself"
    assert signal.getsignal(signum) is handler_before, "the trainer must restore the previous handler"
    assert err.value.exit_code == 128 + signum
    name = signal.Signals(signum).name
    assert str(err.value) == (f"stopped by {name}; checkpoint saved, the run continues at epoch {at[0]}, "
                              f"step {at[1] + 1} with: fcc train --resume {out}")
    assert steps_seen[-1] == at, "training went on after the step during which the signal arrived"
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert (state["next_epoch"], state["next_step"]) == (at[0], at[1] + 1)  # mid-epoch
    assert metric_lines(out) == at[0] - 1  # only finished epochs are logged

    Trainer(load_run_config(out), resume=True).fit()
    assert_same_run(out, reference)


def test_cli_reports_a_signal_in_one_line_and_exits_128_plus_signum(
        cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], safety_handlers: list[int],
        single_thread: None) -> None:
    """`fcc train` as the console script runs it (cli.main), with SIGTERM arriving in step 20."""
    reference = inprocess_reference(cifar10_root, tmp_path_factory)
    out = tmp_path / "run"
    real_step = TrainingStep.__call__
    calls = []

    def step_then_signal(self: TrainingStep, *args, **kwargs):
        result = real_step(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 20:
            os.kill(os.getpid(), signal.SIGTERM)
        return result

    monkeypatch.setattr(TrainingStep, "__call__", step_then_signal)
    assert cli.main(["train", *run_overrides(cifar10_root, out, epochs=3)]) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last == (f"error: stopped by SIGTERM; checkpoint saved, the run continues at epoch 2, step 5 with: "
                    f"fcc train --resume {out}")
    assert "Traceback" not in err
    monkeypatch.setattr(TrainingStep, "__call__", real_step)
    assert cli.main(["train", "--resume", str(out)]) == 0
    assert_same_run(out, reference)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signalled_subprocess_exits_cleanly_and_resumes_exactly(
        cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, signum: int) -> None:
    reference = subprocess_reference(cifar10_root, tmp_path_factory)
    out, log = tmp_path / "run", tmp_path / "log"
    proc = start(["train", *run_overrides(cifar10_root, out)], log)
    assert wait_until(proc, lambda: metric_lines(out) >= 2), log.read_text()[-3000:]
    assert kill(proc, signum) == 128 + signum
    lines = log.read_text().strip().splitlines()
    name = signal.Signals(signum).name
    assert lines[-1].startswith(f"error: stopped by {name}; checkpoint saved, the run continues at ")
    assert lines[-1].endswith(f"with: fcc train --resume {out}")
    assert "Traceback" not in log.read_text()
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["next_epoch"] >= 3
    resumed = run(["train", "--resume", str(out)], log)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(out, reference)
