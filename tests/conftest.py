"""Shared fixtures: tiny CIFAR datasets in the official formats and a tiny-model override list."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from cifar_fixtures import write_cifar10, write_cifar100

# The source tree under test: subprocesses import fcc_lt from here, whatever their working directory holds
SRC = Path(__file__).resolve().parents[1] / "src"


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a child process (fcc train, torchrun workers): it imports the fcc of this tree
    (PYTHONPATH = the absolute src path), single-threaded and unbuffered, plus ``extra``."""
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1", **extra}


# A 6n+2 = 8-layer CIFAR ResNet with 4/8/16 channels: the same code path as ResNet-32, ~100x cheaper.
TINY_MODEL = ["model.backbone=resnet_cifar", "model.backbone_params={depth: 8, width: 4}"]


def tiny_run_overrides(root: Path, out: Path, *extra: str) -> list[str]:
    """Overrides for a seconds-long CPU run on a fixture dataset."""
    return [
        f"data.root={root}", "data.imbalance_factor=10", "device=cpu", f"out={out}",
        "train.epochs=2", "train.batch_size=16", "train.warmup_epochs=0", "train.milestones=[2]",
        "train.progress=false", "train.lr=0.05", *TINY_MODEL, *extra,
    ]


@pytest.fixture(scope="session", autouse=True)
def one_thread() -> None:
    """One intra-op thread for the whole session: the tests' tensors are tiny, so extra threads only spin
    (10-30x slower on a loaded machine), and runs compared bit for bit with single-threaded subprocess
    or torchrun workers must reduce in the same order."""
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def cifar10_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CIFAR-10 folder with 60 training and 10 test images per class (bytes keys, as official)."""
    root = tmp_path_factory.mktemp("cifar10")
    write_cifar10(root, per_class_train=60, per_class_test=10)
    return root


@pytest.fixture(scope="session")
def cifar100_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cifar100")
    write_cifar100(root, per_class_train=10, per_class_test=2)
    return root
