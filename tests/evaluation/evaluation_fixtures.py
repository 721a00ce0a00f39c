"""What the evaluation tests share: one trained run (trained once per session, whichever module asks first;
read-only: copy it with ``copy_run`` to change or write into it)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import tiny_run_overrides

_TRAINED: dict[str, Path] = {}


@pytest.fixture(scope="session", name="fcc_run")
def trained_fcc_run(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny FCC run (strong factors from epoch 1) with a validation split, evaluated by training on its best
    checkpoint on the validation split."""
    from fcc_lt.config.load import load_config
    from fcc_lt.engine.trainer import Trainer

    if "fcc_run" not in _TRAINED:
        out = tmp_path_factory.mktemp("evaluate") / "run"
        cfg = load_config(None, tiny_run_overrides(cifar10_root, out, "fcc.enabled=true", "fcc.gamma=2.0",
                                                   "data.val_per_class=3", "eval.split=val", "eval.checkpoint=best"))
        Trainer(cfg).fit()
        _TRAINED["fcc_run"] = out
    return _TRAINED["fcc_run"]


def copy_run(run: Path, tmp_path: Path) -> Path:
    """A copy of a run directory to change or write into, leaving the shared one as training left it."""
    return Path(shutil.copytree(run, tmp_path / run.name))
