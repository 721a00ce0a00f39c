"""A non-finite loss stops the run naming the epoch and step, keeps the last good checkpoint and exits 3;
``train.max_nonfinite_steps`` skips a bounded number of such steps without a trace in the weights."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from fcc_lt.cli import main as cli
from fcc_lt.config.load import load_config
from fcc_lt.engine.trainer import Trainer
from fcc_lt.util.errors import TrainingError
from fcc_lt.util.registry import LOSSES
from reliability_support import STEPS_PER_EPOCH, metrics, one_thread, run_overrides


@pytest.fixture(autouse=True)
def single_thread():
    with one_thread():
        yield


def nan_at(monkeypatch: pytest.MonkeyPatch, calls: set[int]) -> list[float]:
    """Make the cross-entropy loss NaN at the given 1-based calls (one call per step here); returns the
    list that collects the real loss of every call."""
    ce = LOSSES.get("ce")
    real = ce.forward
    seen: list[float] = []

    def forward(self, logits, targets, **kwargs):
        loss = real(self, logits, targets, **kwargs)
        seen.append(loss.item())
        return loss * float("nan") if len(seen) in calls else loss

    monkeypatch.setattr(ce, "forward", forward)
    return seen


def call_of(epoch: int, step: int) -> int:
    return (epoch - 1) * STEPS_PER_EPOCH + step + 1


def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_good_checkpoint(
        cifar10_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    nan_at(monkeypatch, {call_of(2, 3)})  # the 4th step of epoch 2; checked only at the epoch's end
    trainer = Trainer(load_config(None, run_overrides(cifar10_root, out, epochs=3)))
    snapshot: dict[str, bytes] = {}

    def remember(t: Trainer, epoch: int, step: int) -> None:
        if (epoch, step) == (2, 0):
            snapshot["last"] = (out / "checkpoints" / "last.pt").read_bytes()

    trainer.step_callback = remember
    with pytest.raises(TrainingError) as err:
        trainer.fit()
    assert err.value.exit_code == 3
    last = out / "checkpoints" / "last.pt"
    assert str(err.value) == (
        f"non-finite loss at epoch 2, step 4 of {STEPS_PER_EPOCH}; training stopped and the last good checkpoint "
        f"{last} (saved after epoch 1; every tensor finite) is kept. Lower train.lr, check the data, or allow "
        "skipping with "
        "train.max_nonfinite_steps.")
    assert last.read_bytes() == snapshot["last"], "the end-of-epoch-1 checkpoint must be left as it was"
    state = torch.load(last, weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert [m["epoch"] for m in metrics(out)] == [1]
    assert not (out / "eval.json").exists()


def test_cli_exits_3_with_one_line_on_a_real_divergence(
        cifar10_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A learning rate of 1e8 makes the loss overflow within a few steps of epoch 1."""
    out = tmp_path / "run"
    code = cli.main(["train", *run_overrides(cifar10_root, out, "train.lr=1e8", "train.warmup_epochs=0",
                                             epochs=2)])
    err = capsys.readouterr().err
    assert code == 3
    assert err.strip().splitlines()[-1].startswith("error: non-finite loss at epoch 1, step ")
    assert "no checkpoint had been written yet" in err and "Traceback" not in err


def test_skipped_steps_leave_weights_and_buffers_untouched(
        cifar10_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = {(1, 5), (2, 9)}
    losses = nan_at(monkeypatch, {call_of(*b) for b in bad})
    out = tmp_path / "run"
    trainer = Trainer(load_config(None, run_overrides(cifar10_root, out, "train.max_nonfinite_steps=2", epochs=2)))
    before: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
    changed: dict[tuple[int, int], bool] = {}

    def state(t: Trainer) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in t.model.state_dict().items()}  # parameters and BN buffers

    def watch(t: Trainer, epoch: int, step: int) -> None:
        current = state(t)
        if (epoch, step) in bad:
            prev = before[(epoch, step)]
            changed[(epoch, step)] = any(not torch.equal(prev[k], current[k]) for k in prev)
        before[(epoch, step + 1)] = current

    trainer.step_callback = watch
    trainer.fit()
    assert changed == {(1, 5): False, (2, 9): False}
    assert trainer.loop.nonfinite_skipped == 2
    lines = metrics(out)
    assert [m.get("nonfinite_skipped") for m in lines] == [1, 2]
    assert all(math.isfinite(m["train_loss"]) for m in lines)
    # a skipped batch counts nowhere: each epoch's loss is the mean over its 14 other (equal-sized) batches
    for epoch, (_, s) in zip((1, 2), sorted(bad)):
        good = [losses[call_of(epoch, k) - 1] for k in range(STEPS_PER_EPOCH) if k != s]
        assert lines[epoch - 1]["train_loss"] == pytest.approx(sum(good) / len(good), rel=1e-12, abs=0)


def test_skipping_is_bounded(cifar10_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nan_at(monkeypatch, {call_of(1, 2), call_of(1, 7)})
    out = tmp_path / "run"
    trainer = Trainer(load_config(None, run_overrides(cifar10_root, out, "train.max_nonfinite_steps=1", epochs=2)))
    with pytest.raises(TrainingError, match=r"non-finite loss at epoch 1, step 8 of 15 after skipping 1 such "
                                            r"steps \(train.max_nonfinite_steps\)"):
        trainer.fit()
    assert not (out / "checkpoints" / "last.pt").exists()
