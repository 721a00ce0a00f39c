"""DiVE plumbing: the teacher is rebuilt from its own run, frozen, and the loss the trainer optimises
equals an independent float64 recomputation."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import tiny_run_overrides
from fcc_lt.config.load import from_dict, load_config
from fcc_lt.data.build import build_splits
from fcc_lt.engine.trainer import Trainer
from fcc_lt.methods.distill import load_teacher
from fcc_lt.models.network import build_network
from fcc_lt.util.errors import CheckpointError, ConfigError

CFG = "cifar10_lt/ce_if100"
WIDE = "model.backbone_params={depth: 8, width: 8}"  # the teacher: another architecture than the student




@pytest.fixture(scope="module")
def teacher_run(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "run"
    cfg = load_config(CFG, tiny_run_overrides(cifar10_root, out, "train.epochs=1", "train.milestones=[]", WIDE,
                                              "fcc.enabled=true", "fcc.gamma=0.5"))
    Trainer(cfg).fit()
    return out


def student_overrides(root: Path, out: Path, teacher: Path | str, *extra: str) -> list[str]:
    return tiny_run_overrides(root, out, "train.epochs=1", "train.milestones=[]", f"distill.teacher={teacher}",
                              "loss.name=dive", "loss.params={temperature: 2.0, alpha: 0.5, power_norm: true, "
                              "power: 0.5, base: balanced_softmax}", *extra)


def test_teacher_is_rebuilt_from_its_own_run(teacher_run: Path, cifar10_root: Path, tmp_path: Path) -> None:
    cfg = load_config(CFG, student_overrides(cifar10_root, tmp_path / "s", teacher_run))
    splits = build_splits(cfg)
    teacher = load_teacher(str(teacher_run), splits.num_classes, "cpu")
    saved = torch.load(teacher_run / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert teacher.backbone.out_channels == 32  # width 8 -> 8/16/32 channels, not the student's 16
    assert all(torch.equal(v, saved[k]) for k, v in teacher.state_dict().items())
    assert not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    # a checkpoint file works too, and the same weights come back
    again = load_teacher(str(teacher_run / "checkpoints" / "last.pt"), splits.num_classes, "cpu")
    x = torch.randn(3, 3, 32, 32)
    assert torch.equal(again(x), teacher(x))


def test_bare_state_dict_teacher_uses_its_run_config(teacher_run: Path, cifar10_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "bare"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text((teacher_run / "config.yaml").read_text())
    state = torch.load(teacher_run / "checkpoints" / "last.pt", weights_only=True)["model"]
    torch.save(state, run / "checkpoints" / "last.pt")
    splits = build_splits(load_config(CFG, student_overrides(cifar10_root, tmp_path / "s", run)))
    assert load_teacher(str(run), splits.num_classes, "cpu").backbone.out_channels == 32
    torch.save(state, tmp_path / "loose.pt")
    with pytest.raises(CheckpointError, match="holds no config and is not inside a run directory"):
        load_teacher(str(tmp_path / "loose.pt"), splits.num_classes, "cpu")


def test_teacher_errors(teacher_run: Path, cifar10_root: Path, cifar100_root: Path, tmp_path: Path) -> None:
    cfg = load_config(CFG, student_overrides(cifar10_root, tmp_path / "s", teacher_run))
    splits = build_splits(cfg)
    with pytest.raises(CheckpointError, match=r"distill\.teacher: checkpoint not found"):
        load_teacher(str(tmp_path / "nowhere"), splits.num_classes, "cpu")
    c100 = build_splits(load_config("cifar100_lt/ce_if100",
                                    [f"data.root={cifar100_root}", "data.imbalance_factor=5"]))
    with pytest.raises(CheckpointError, match=r"trained for 10 classes.*has 100"):
        load_teacher(str(teacher_run), c100.num_classes, "cpu")
    with pytest.raises(ConfigError, match="distils from a teacher"):
        Trainer(load_config(CFG, tiny_run_overrides(cifar10_root, tmp_path / "x", "loss.name=dive")))


def test_student_loss_equals_a_float64_recomputation(teacher_run: Path, cifar10_root: Path, tmp_path: Path) -> None:
    cfg = load_config(CFG, student_overrides(cifar10_root, tmp_path / "student", teacher_run))
    trainer = Trainer(cfg)
    captured: dict[str, Any] = {}
    real = trainer.step.objective

    def spy(images: torch.Tensor, labels: torch.Tensor, epoch: int, gen: torch.Generator, *share: Any) -> Any:
        if not captured:
            captured.update(images=images.clone(), labels=labels.clone(),
                            student=copy.deepcopy(trainer.model))
            out = real(images, labels, epoch, gen, *share)
            captured["loss"] = float(out.loss.detach())
            return out
        return real(images, labels, epoch, gen, *share)

    trainer.step.objective = spy  # type: ignore[assignment]
    trainer.fit()
    assert trainer.teacher is not None and not trainer.teacher.training  # stayed frozen through training

    # independent teacher: the teacher run's own config and weights, built by hand
    tcfg = from_dict(torch.load(teacher_run / "checkpoints" / "last.pt", weights_only=True)["config"])
    teacher = build_network(tcfg, trainer.stats.num_classes)
    teacher.load_state_dict(torch.load(teacher_run / "checkpoints" / "last.pt", weights_only=True)["model"])
    teacher.eval()
    x, y = captured["images"], captured["labels"]
    with torch.no_grad():
        zt = teacher(x).double()
        zs = captured["student"].train()(x).double()
    T, alpha, p = 2.0, 0.5, 0.5
    q = torch.softmax(zt / T, dim=1) ** p
    q = q / q.sum(dim=1, keepdim=True)
    log_ps = torch.log_softmax(zs / T, dim=1)
    kl = (q * (q.log() - log_ps)).sum(dim=1).mean()
    counts = torch.tensor(trainer.stats.train_counts, dtype=torch.float64)
    bsce = torch.nn.functional.cross_entropy(zs + counts.log(), y)
    expected = alpha * T * T * float(kl) + (1 - alpha) * float(bsce)
    assert math.isclose(captured["loss"], expected, rel_tol=1e-4), (captured["loss"], expected)
    assert (tmp_path / "student" / "eval.json").exists()


def test_teacher_config_errors_name_the_teacher_and_its_file(teacher_run: Path, tmp_path: Path) -> None:
    """A teacher's own config with an unknown backbone parameter (or backbone) is the teacher's error: named
    under distill.teacher with the file it came from, not as if the student's model.backbone_params were
    wrong (issue 18)."""
    run = tmp_path / "teacher"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes((teacher_run / "checkpoints" / "last.pt").read_bytes())
    text = (teacher_run / "config.yaml").read_text()
    assert "    width: 8\n" in text
    (run / "config.yaml").write_text(text.replace("    width: 8\n", "    width: 8\n    widht: 8\n"))
    with pytest.raises(ConfigError) as err:
        load_teacher(str(run), 10, "cpu")
    assert str(err.value).startswith(f"distill.teacher: {run / 'config.yaml'}: model.backbone_params.widht: "
                                     "backbone 'resnet_cifar' has no parameter 'widht'; did you mean 'width'?")
    saved = torch.load(teacher_run / "checkpoints" / "last.pt", weights_only=True)
    saved["config"]["model"]["backbone"] = "resnet_cifra"
    loose = tmp_path / "loose.pt"
    torch.save(saved, loose)
    with pytest.raises(CheckpointError) as err:
        load_teacher(str(loose), 10, "cpu")
    assert str(err.value).startswith(f"distill.teacher: {loose} (its saved config): model.backbone: unknown "
                                     "backbone 'resnet_cifra'; did you mean 'resnet_cifar'?")


def test_a_teacher_without_the_manifold_mixing_stage_is_refused_at_start(teacher_run: Path, cifar10_root: Path,
                                                                        tmp_path: Path) -> None:
    """The teacher mixes its activations where the student does: a 3-stage teacher under a student mixing
    after stage 4 is refused when the run is built, not at its first step (issue 21)."""
    out = tmp_path / "student"
    cfg = load_config(CFG, student_overrides(cifar10_root, out, teacher_run, "model.backbone=resnet10",
                                             "model.backbone_params={}", "mix.name=manifold_mixup",
                                             "mix.params={location: stage4}"))
    with pytest.raises(ConfigError) as err:
        Trainer(cfg)
    assert str(err.value) == ("mix.params.location: 'stage4', but the teacher's backbone (distill.teacher) has 3 "
                              "stages (use stage1..stage3, pool or logits)")
    assert not (out / "metrics.jsonl").exists()
