"""LR schedules against the original's hand-computed values."""

from __future__ import annotations

import math

import pytest

from fcc_lt.config.schema import TrainConfig
from fcc_lt.engine.lr_schedule import learning_rate


def test_warmup_then_multistep_like_the_original() -> None:
    cfg = TrainConfig(lr=0.1, warmup_epochs=5, milestones=[160, 180], lr_factor=0.01)
    # original: factor (1/3)(1 - e/5) + e/5 for e < 5
    expected_warm = [0.1 * ((1 / 3) * (1 - e / 5) + e / 5) for e in range(1, 5)]
    assert [learning_rate(e, cfg) for e in range(1, 5)] == pytest.approx(expected_warm)
    assert [round(learning_rate(e, cfg) / 0.1, 3) for e in range(1, 5)] == [0.467, 0.6, 0.733, 0.867]
    assert learning_rate(5, cfg) == pytest.approx(0.1)
    assert learning_rate(159, cfg) == pytest.approx(0.1)
    assert learning_rate(160, cfg) == pytest.approx(1e-3)
    assert learning_rate(179, cfg) == pytest.approx(1e-3)
    assert learning_rate(180, cfg) == pytest.approx(1e-5)
    assert learning_rate(200, cfg) == pytest.approx(1e-5)


def test_cosine_reaches_min_lr_at_the_end() -> None:
    cfg = TrainConfig(epochs=100, lr=0.2, scheduler="cosine", min_lr=1e-4, warmup_epochs=0)
    assert learning_rate(100, cfg) == pytest.approx(1e-4)
    assert learning_rate(50, cfg) == pytest.approx(1e-4 + (0.2 - 1e-4) / 2)
    assert learning_rate(1, cfg) == pytest.approx(1e-4 + (0.2 - 1e-4) * (1 + math.cos(math.pi / 100)) / 2)


def test_constant_with_warmup() -> None:
    cfg = TrainConfig(lr=0.5, scheduler="constant", warmup_epochs=2, warmup_start_factor=0.5)
    assert [learning_rate(e, cfg) for e in (1, 2, 3, 50)] == pytest.approx([0.375, 0.5, 0.5, 0.5])
