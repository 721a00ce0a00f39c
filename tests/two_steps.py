"""Run exactly two training steps of a config in its LAST epoch, where every deferred part (FCC, DRW,
DRS) is active, and check that they trained: shared by the config-gallery tests."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from fcc_lt.config.schema import Config
from fcc_lt.engine.signals import TrainingInterrupted
from fcc_lt.engine.trainer import Trainer


def run_two_steps(cfg: Config) -> list[float]:
    """The two steps' losses; asserts they are finite, that some weight changed, that a frozen backbone
    stayed unchanged, and that the stop wrote the last checkpoint."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*FCC is a no-op.*")
        warnings.filterwarnings("ignore", message=".*differ from the official.*")
        trainer = Trainer(cfg)
    trainer.loop.next_epoch = cfg.train.epochs
    losses: list[float] = []
    real = trainer.step.objective

    def objective(*args: Any) -> Any:
        out = real(*args)
        losses.append(float(out.loss.detach()))
        return out

    trainer.step.objective = objective  # type: ignore[assignment]
    trainer.step_callback = lambda t, epoch, step: t.request_stop() if step == 1 else None
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    after = trainer.model.state_dict()
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses), losses
    assert any(not torch.equal(before[k], after[k]) for k in before), "two training steps changed no weight"
    if cfg.train.freeze:
        frozen = [k for k in before if k.startswith("backbone.")]
        assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert (Path(str(cfg.out)) / "checkpoints" / "last.pt").exists()
    return losses
