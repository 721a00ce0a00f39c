"""Checkpoint history: train.keep_every keeps every N-th epoch's checkpoint, train.keep_best the best K by
validation top-1 (pruning those that drop out), each file holding exactly that epoch's weights; a kill
between the writes is repaired on resume (tests/engine/test_reliability_runs.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import tiny_run_overrides
from fcc_lt.cli.main import main
from fcc_lt.config.load import load_config
from fcc_lt.engine.trainer import Trainer
from fcc_lt.util.errors import ConfigError


def kept_epochs(run: Path) -> set[int]:
    return {int(p.stem.removeprefix("epoch_")) for p in (run / "checkpoints").glob("epoch_*.pt")}


def best_k(vals: list[float], k: int) -> list[int]:
    """The epochs (1-based) of the k best validation results, the earlier epoch first on ties."""
    return sorted(range(1, len(vals) + 1), key=lambda e: (-vals[e - 1], e))[:k]


def history_run(root: Path, out: Path, *extra: str) -> tuple[Trainer, dict[int, dict[str, torch.Tensor]],
                                                              dict[int, set[int]]]:
    """A 5-epoch run with a validation split; returns the trainer, each epoch's weights as last.pt held them,
    and the kept epochs found at the start of each epoch."""
    cfg = load_config(None, tiny_run_overrides(root, out, "data.val_per_class=2", "train.epochs=5",
                                               "train.milestones=[4]", "eval.confusion_png_max_classes=0", *extra))
    trainer = Trainer(cfg)
    weights: dict[int, dict[str, torch.Tensor]] = {}
    seen: dict[int, set[int]] = {}

    def watch(t: Trainer, epoch: int, step: int) -> None:
        if step == 0 and epoch > 1:
            weights[epoch - 1] = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]
            seen[epoch - 1] = kept_epochs(out)

    trainer.step_callback = watch
    trainer.fit()
    weights[5] = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]
    seen[5] = kept_epochs(out)
    return trainer, weights, seen


def val_top1(run: Path) -> list[float]:
    return [json.loads(line)["val_top1"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_keep_every_and_keep_best_keep_exactly_those_epochs(cifar10_root: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    _, weights, _ = history_run(cifar10_root, out, "train.keep_every=2", "train.keep_best=1")
    best = best_k(val_top1(out), 1)
    assert kept_epochs(out) == {2, 4, *best}
    for epoch in kept_epochs(out):
        held = torch.load(out / "checkpoints" / f"epoch_{epoch}.pt", weights_only=True)
        assert held["next_epoch"] == epoch + 1 and same(held["model"], weights[epoch])
    # and an epoch's checkpoint evaluates like any checkpoint file
    assert main(["eval", str(out), "--checkpoint", str(out / "checkpoints" / "epoch_2.pt")]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_keep_best_prunes_the_epochs_that_drop_out_of_the_best_k(cifar10_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _, weights, seen = history_run(cifar10_root, out, "train.keep_best=2")
    vals = val_top1(out)
    for epoch in range(1, 6):  # after every epoch: exactly the best two so far
        assert seen[epoch] == set(best_k(vals[:epoch], 2)), (epoch, vals)
    assert any(seen[e] - seen[e + 1] for e in range(1, 5)), f"no epoch was pruned with {vals}; pick another run"
    for epoch in seen[5]:
        assert same(torch.load(out / "checkpoints" / f"epoch_{epoch}.pt", weights_only=True)["model"],
                    weights[epoch])


def test_keep_best_needs_a_validation_split(cifar10_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.keep_best: 2 keeps the best epochs by validation top-1"):
        Trainer(load_config(None, tiny_run_overrides(cifar10_root, tmp_path / "run", "train.keep_best=2")))
    with pytest.raises(ConfigError, match=r"train\.keep_every: expected null or an integer in \[1, train\.epochs=2\]"):
        load_config(None, ["train.epochs=2", "train.milestones=[]", "train.warmup_epochs=0", "train.keep_every=3"])
