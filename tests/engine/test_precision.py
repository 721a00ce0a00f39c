"""Mixed precision and memory format: dtype selection, bf16 and fp16 (with loss scaling) training on the
CPU, the grad scaler's state across a stop and resume, and channels-last."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import tiny_run_overrides
from fcc_lt.config.load import load_config
from fcc_lt.engine.signals import TrainingInterrupted
from fcc_lt.engine.trainer import Trainer
from fcc_lt.evaluation.run_loader import load_run_config
from fcc_lt.models.checkpoint_file import load_checkpoint
from fcc_lt.util.distributed import DistContext
from fcc_lt.util.errors import ConfigError
from fcc_lt.util.precision import autocast_dtype, grad_scaler

CPU, CUDA = torch.device("cpu"), torch.device("cuda")




def overrides(root: Path, out: Path, *extra: str) -> list[str]:
    return tiny_run_overrides(root, out, "eval.confusion_png_max_classes=0", *extra)


def trainer(root: Path, out: Path, *extra: str) -> Trainer:
    return Trainer(load_config(None, overrides(root, out, *extra)), overwrite=True, ctx=DistContext())


@pytest.mark.parametrize(("setting", "expected"), [
    ("off", None), ("auto", None), ("bf16", torch.bfloat16), ("fp16", torch.float16),
])
def test_dtype_on_cpu(setting: str, expected: torch.dtype | None) -> None:
    assert autocast_dtype(setting, CPU) is expected  # auto stays fp32 on the CPU


def test_amp_off_survives_yaml_booleans(tmp_path: Path) -> None:
    assert load_config(None, ["train.amp=off"]).train.amp == "off"  # YAML 1.1 reads off as False
    (tmp_path / "c.yaml").write_text("train:\n  amp: off\n")
    assert load_config(tmp_path / "c.yaml").train.amp == "off"


def test_dtype_on_cuda_follows_bf16_support(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype("auto", CUDA) is torch.bfloat16
    assert autocast_dtype("bf16", CUDA) is torch.bfloat16
    assert autocast_dtype("off", CUDA) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert autocast_dtype("auto", CUDA) is torch.float16  # e.g. V100, T4: fp16 with loss scaling
    assert autocast_dtype("fp16", CUDA) is torch.float16
    with pytest.raises(ConfigError, match=r"train\.amp: bf16, but the GPU"):
        autocast_dtype("bf16", CUDA)


def test_only_fp16_gets_a_grad_scaler() -> None:
    scaler = grad_scaler(CPU, torch.float16)
    assert isinstance(scaler, torch.amp.GradScaler) and scaler.is_enabled()
    assert grad_scaler(CPU, torch.bfloat16) is None
    assert grad_scaler(CPU, None) is None


def test_bf16_training_runs_autocast_and_keeps_fp32_weights(cifar10_root: Path, tmp_path: Path) -> None:
    runs = {}
    for amp in ("off", "bf16"):
        t = trainer(cifar10_root, tmp_path / amp, f"train.amp={amp}", "train.epochs=1", "train.milestones=[1]")
        seen: list[torch.dtype] = []
        t.model.head.register_forward_hook(lambda _m, _i, out, seen=seen: seen.append(out.dtype))
        t.fit()
        runs[amp] = (t, seen)
    bf16, seen = runs["bf16"]
    assert set(seen) == {torch.bfloat16}  # logits of training steps and evaluation
    assert set(runs["off"][1]) == {torch.float32}
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    assert bf16.scaler is None and load_checkpoint(bf16.run_dir / "checkpoints" / "last.pt")["scaler"] is None
    w_bf16 = bf16.model.state_dict()["head.fc.weight"]
    w_fp32 = runs["off"][0].model.state_dict()["head.fc.weight"]
    assert bool(torch.isfinite(w_bf16).all())
    assert not torch.equal(w_bf16, w_fp32)  # bf16 rounding shows in the weights
    torch.testing.assert_close(w_bf16, w_fp32, rtol=0, atol=0.05)  # ... but it trains the same model


def test_fp16_with_scaler_resumes_to_identical_weights_and_scaler_state(cifar10_root: Path, tmp_path: Path) -> None:
    extra = ("train.amp=fp16", "train.log_every=1", "train.epochs=1", "train.milestones=[1]")
    straight = trainer(cifar10_root, tmp_path / "straight", *extra)
    straight.fit()
    stopped = trainer(cifar10_root, tmp_path / "stopped", *extra)
    stopped.step_callback = lambda t, epoch, step: t.request_stop() if (epoch, step) == (1, 5) else None
    with pytest.raises(TrainingInterrupted):
        stopped.fit()
    saved = load_checkpoint(stopped.run_dir / "checkpoints" / "last.pt")["scaler"]
    assert set(saved) >= {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"}
    assert saved["_growth_tracker"] > 0  # steps since the last change of scale: the state is live
    resumed = Trainer(load_run_config(stopped.run_dir), resume=True, ctx=DistContext())
    assert resumed.scaler is not None and resumed.scaler.state_dict() == saved
    resumed.fit()
    assert resumed.scaler.state_dict() == straight.scaler.state_dict()
    a, b = resumed.model.state_dict(), straight.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fp16_overflow_skips_the_step_and_lowers_the_scale(cifar10_root: Path, tmp_path: Path) -> None:
    t = trainer(cifar10_root, tmp_path / "run", "train.amp=fp16")
    t.step.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40)  # fp16 gradients overflow at 65504
    images, labels = next(iter(t.train_loader.epoch(1)))
    before = {k: v.clone() for k, v in t.model.named_parameters()}
    out = t.step(images, labels, 1, 0, labels.numel())
    assert bool(torch.isfinite(out.loss))  # the loss itself is fine: only the scaled gradients overflowed
    assert all(torch.equal(before[k], v) for k, v in t.model.named_parameters())
    assert t.step.scaler.get_scale() == 2.0 ** 39
    t.step.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    t.step(images, labels, 1, 1, labels.numel())
    assert not torch.equal(before["head.fc.weight"], t.model.head.fc.weight)


def test_channels_last_model_and_batches_give_the_same_step(cifar10_root: Path, tmp_path: Path) -> None:
    ref = trainer(cifar10_root, tmp_path / "ref")
    cl = trainer(cifar10_root, tmp_path / "cl", "train.channels_last=true")
    conv = cl.model.backbone.stem[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    images, labels = next(iter(cl.train_loader.epoch(1)))
    assert images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()
    ref_images, ref_labels = next(iter(ref.train_loader.epoch(1)))
    assert torch.equal(images, ref_images) and torch.equal(labels, ref_labels)  # same values, other layout
    loss_cl = cl.step(images, labels, 1, 0, labels.numel()).loss
    loss_ref = ref.step(ref_images, ref_labels, 1, 0, labels.numel()).loss
    torch.testing.assert_close(loss_cl, loss_ref, rtol=1e-5, atol=1e-6)
    # channels-last convolutions sum in another order: the updates (~1e-3 at lr 0.05) agree to ~1e-5
    for (name, p), q in zip(cl.model.named_parameters(), ref.model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=2e-5, msg=name)


def test_an_overflowing_first_fp16_step_leaves_no_trace_in_the_fused_sgd_state(cifar10_root: Path,
                                                                               tmp_path: Path) -> None:
    """fp16's first loss scale often overflows and the scaler skips that step. PyTorch's fused SGD made its
    momentum buffers with torch.empty at that skipped first step, so the next real step started from
    whatever memory held (fp16 on the CPU diverged by step 3): here a skipped step must change nothing."""
    skipped = trainer(cifar10_root, tmp_path / "skipped", "train.amp=fp16")
    straight = trainer(cifar10_root, tmp_path / "straight", "train.amp=fp16")
    assert skipped.optimizer.defaults.get("fused") is True
    images, labels = next(iter(skipped.train_loader.epoch(1)))
    skipped.step.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40)  # overflows: the step is skipped
    skipped.step(images, labels, 1, 0, labels.numel())
    assert skipped.step.scaler.get_scale() == 2.0 ** 39
    assert all(torch.isfinite(s["momentum_buffer"]).all() for s in skipped.optimizer.state.values())
    for t in (skipped, straight):
        t.step.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
        t.step(images, labels, 1, 1, labels.numel())
    for (name, a), b in zip(straight.model.named_parameters(), skipped.model.parameters()):
        assert torch.equal(a, b), name


def test_a_non_finite_loss_under_fp16_names_fp16_overflow(cifar10_root: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from fcc_lt.util.errors import TrainingError
    from fcc_lt.util.registry import LOSSES

    ce = LOSSES.get("ce")
    real = ce.forward
    monkeypatch.setattr(ce, "forward", lambda self, *a, **k: real(self, *a, **k) * float("inf"))
    t = trainer(cifar10_root, tmp_path / "run", "train.amp=fp16", "train.log_every=1")
    with pytest.raises(TrainingError, match=r"non-finite loss at epoch 1, step 1 of 15; .* With train\.amp=fp16, "
                                            r"values beyond fp16's range \(65504\) overflow: train with "
                                            r"train\.amp=bf16"):
        t.fit()
