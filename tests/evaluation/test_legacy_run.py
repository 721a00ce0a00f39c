"""A run directory written by fcc 0.1.0 (the release before the package became ``fcc_lt``) still loads: its
checkpoints name no module of ours, its config.yaml reads as a config, and its weights give the logits they
gave under 0.1.0.

The fixture ``tests/fixtures/run_v0_1_0`` is a 2-epoch CE+FCC run of the tiny 8-layer CIFAR ResNet written by
fcc 0.1.0 (``eval.checkpoint: best``, a validation split); ``run_v0_1_0_logits.json`` holds the logits 0.1.0's
own loader computed from its last.pt for a seeded input.
"""

from __future__ import annotations

import json
import pickletools
import zipfile
from pathlib import Path

import pytest
import torch

from fcc_lt.evaluation.run_loader import load_run, load_run_config
from fcc_lt.models.checkpoint_file import load_checkpoint

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RUN = FIXTURES / "run_v0_1_0"


def pickled_globals(data: bytes) -> list[str]:
    """Every 'module.name' a pickle refers to (GLOBAL, or STACK_GLOBAL after its two strings)."""
    found, strings = [], []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            found.append(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL":
            found.append(".".join(strings[-2:]))
        if isinstance(arg, str) and "UNICODE" in op.name:
            strings.append(arg)
    return found


def test_checkpoints_of_0_1_0_pickle_no_module_path_of_the_old_package() -> None:
    for name in ("last.pt", "best.pt"):
        with zipfile.ZipFile(RUN / "checkpoints" / name) as archive:
            data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
        refs = pickled_globals(data)
        assert any(r.startswith("torch.") for r in refs)  # the scan sees the tensors' rebuild functions
        assert not [r for r in refs if r.split(".")[0] in ("fcc", "fcc_lt")], refs
        assert load_checkpoint(RUN / "checkpoints" / name)["next_epoch"] in (2, 3)


@pytest.mark.parametrize("which", ["last", "best"])
def test_a_run_of_0_1_0_loads_and_gives_its_logits(which: str) -> None:
    cfg = load_run_config(RUN)
    assert cfg.fcc.enabled and cfg.model.backbone == "resnet_cifar" and cfg.eval.checkpoint == "best"
    run = load_run(RUN, which, device="cpu")
    assert run.class_names[:2] == ["airplane", "automobile"] and run.stats.num_classes == 10
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = run.model(x)
    if which == "last":  # the logits 0.1.0 computed on this machine type; same code path, same float32 ops
        expected = torch.tensor(json.loads((FIXTURES / "run_v0_1_0_logits.json").read_text())["logits_last"])
        torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)
    else:  # best.pt is epoch 1's weights: another model than last.pt (epoch 2)
        assert run.epoch == 1 and not torch.allclose(logits, load_run(RUN, "last", device="cpu").model(x))
