"""Two-stage training: cRT and LWS stage 2 from a stage-1 run (the shipped configs), what they freeze,
resuming them, and init_from checkpoints that do not fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import tiny_run_overrides
from fcc_lt.config.load import load_config
from fcc_lt.engine.signals import TrainingInterrupted
from fcc_lt.engine.trainer import Trainer
from fcc_lt.evaluation.run_loader import load_run_config
from fcc_lt.util.errors import CheckpointError, ConfigError

STAGE1 = "cifar10_lt/ce_if100"
CRT = "cifar10_lt/crt_if100"
LWS = "cifar10_lt/lws_if100"




@pytest.fixture(scope="module")
def stage1(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stage1") / "run"
    Trainer(load_config(STAGE1, tiny_run_overrides(cifar10_root, out, "train.epochs=1", "train.milestones=[]"))).fit()
    return out


def stage2(config: str, root: Path, out: Path, stage1: Path, *extra: str) -> Any:
    return load_config(config, tiny_run_overrides(root, out, f"model.init_from={stage1}/checkpoints/last.pt",
                                                  "train.epochs=1", "train.milestones=[]", *extra))


def saved_model(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def split(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def snapshot(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_crt_freezes_backbone_and_its_bn_statistics(stage1: Path, cifar10_root: Path, tmp_path: Path) -> None:
    cfg = stage2(CRT, cifar10_root, tmp_path / "crt", stage1)
    assert cfg.sampler.name == "class_balanced" and cfg.train.freeze == ["backbone"] and cfg.train.freeze_bn
    trainer = Trainer(cfg)
    first = saved_model(stage1)
    before = snapshot(trainer)
    backbone = split(before, "backbone.")
    assert any("running_mean" in k for k in backbone) and any("num_batches_tracked" in k for k in backbone)
    assert all(torch.equal(v, first[k]) for k, v in backbone.items())  # loaded from stage 1
    assert not torch.equal(before["head.fc.weight"], first["head.fc.weight"])  # a fresh classifier
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable == {"head.fc.weight", "head.fc.bias"}
    trainer.fit()
    after = snapshot(trainer)
    # weights AND batch-norm running statistics of the backbone are exactly those of stage 1
    assert all(torch.equal(after[k], v) for k, v in backbone.items())
    assert not torch.equal(after["head.fc.weight"], before["head.fc.weight"])
    assert not torch.equal(after["head.fc.bias"], before["head.fc.bias"])


def test_without_freeze_bn_the_statistics_move(stage1: Path, cifar10_root: Path, tmp_path: Path) -> None:
    """The contrast that shows the check above can fail: BN layers in train mode update their statistics."""
    trainer = Trainer(stage2(CRT, cifar10_root, tmp_path / "crt", stage1, "train.freeze_bn=false"))
    before = snapshot(trainer)
    trainer.fit()
    after = snapshot(trainer)
    moved = [k for k in split(before, "backbone.") if not torch.equal(before[k], after[k])]
    assert moved and all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in moved)


def test_lws_trains_only_the_scales(stage1: Path, cifar10_root: Path, tmp_path: Path) -> None:
    trainer = Trainer(stage2(LWS, cifar10_root, tmp_path / "lws", stage1))
    first = saved_model(stage1)
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable == {"head.scales"}
    before = snapshot(trainer)
    assert torch.equal(before["head.fc.weight"], first["head.fc.weight"])  # the stage-1 classifier
    assert torch.equal(before["head.scales"], torch.ones(10))
    trainer.fit()
    after = snapshot(trainer)
    assert not torch.equal(after["head.scales"], before["head.scales"])
    unchanged = [k for k in before if k != "head.scales"]
    assert all(torch.equal(after[k], before[k]) for k in unchanged)


@pytest.mark.parametrize("config", [CRT, LWS], ids=["crt", "lws"])
def test_resumed_stage2_ends_with_the_weights_of_a_straight_run(config: str, stage1: Path, cifar10_root: Path,
                                                                tmp_path: Path) -> None:
    extra = ("train.epochs=2", "train.milestones=[2]", "train.batch_size=32")
    straight = Trainer(stage2(config, cifar10_root, tmp_path / "a", stage1, *extra))
    straight.fit()

    # a copy of the stage-1 run, deleted before the resume: resuming must not need it
    copy = tmp_path / "stage1_copy"
    (copy / "checkpoints").mkdir(parents=True)
    (copy / "checkpoints" / "last.pt").write_bytes((stage1 / "checkpoints" / "last.pt").read_bytes())
    first = Trainer(stage2(config, cifar10_root, tmp_path / "b", copy, *extra))

    def stop(t: Trainer, epoch: int, step: int) -> None:
        if epoch == 2 and step == 1:
            t.request_stop()

    first.step_callback = stop
    with pytest.raises(TrainingInterrupted):
        first.fit()
    (copy / "checkpoints" / "last.pt").unlink()
    resumed = Trainer(load_run_config(tmp_path / "b"), resume=True)
    resumed.fit()
    a, b = snapshot(straight), snapshot(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["head.fc.weight" if config == CRT else "head.scales"],
                           saved_model(stage1)["head.fc.weight"] if config == CRT else torch.ones(10))


def test_init_from_that_does_not_fit(stage1: Path, cifar10_root: Path, tmp_path: Path) -> None:
    wider = stage2(CRT, cifar10_root, tmp_path / "x", stage1, "model.backbone_params={depth: 8, width: 8}")
    with pytest.raises(CheckpointError, match=r"model\.init_from .*does not fit the model: shape mismatch"):
        Trainer(wider)
    with pytest.raises(CheckpointError, match=r"model\.init_from: checkpoint not found"):
        Trainer(stage2(CRT, cifar10_root, tmp_path / "y", tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"model\.init_exclude: 'heads' names no weights"):
        Trainer(stage2(CRT, cifar10_root, tmp_path / "z", stage1, "model.init_exclude=[heads]"))
    with pytest.raises(ConfigError, match=r"train\.freeze: the model has no module 'backbones'"):
        Trainer(stage2(CRT, cifar10_root, tmp_path / "w", stage1, "train.freeze=[backbones]"))
    # LWS from a checkpoint whose head has no fc (a cosine head): the missing keys are named
    cosine = tmp_path / "cosine"
    Trainer(load_config(STAGE1, tiny_run_overrides(cifar10_root, cosine, "model.head=cosine"))).save("last")
    with pytest.raises(CheckpointError, match=r"missing 2 keys \(head\.fc\.weight, head\.fc\.bias\)"):
        Trainer(stage2(LWS, cifar10_root, tmp_path / "v", cosine))
