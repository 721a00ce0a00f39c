"""On a CUDA GPU: device placement, bf16/fp16 steps, the compiled step (the same step as eager, compiled
once, no host-device synchronisation after it), CUDA graphs (reduce-overhead), DDP over NCCL with one
process. Skipped without CUDA; benchmarks/gpu_check.sh runs them (``pytest -m cuda``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import tiny_run_overrides
from fcc_lt.config.load import load_config
from fcc_lt.engine import speed
from fcc_lt.engine.build import wrap_for_training
from fcc_lt.engine.speed import SpeedPlan, compiled_call
from fcc_lt.engine.step import TrainingForward
from fcc_lt.engine.trainer import Trainer
from fcc_lt.models.network import build_network, model_memory_format
from fcc_lt.util.distributed import DistContext

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def cuda_trainer(root: Path, out: Path, *extra: str) -> Trainer:
    cfg = load_config(None, tiny_run_overrides(root, out, "device=cuda", "eval.confusion_png_max_classes=0", *extra))
    return Trainer(cfg, overwrite=True)


def test_everything_lives_on_the_gpu(cifar10_root: Path, tmp_path: Path) -> None:
    t = cuda_trainer(cifar10_root, tmp_path / "run", "train.epochs=1", "train.milestones=[]", "fcc.enabled=true")
    assert all(p.is_cuda for p in t.model.parameters()) and all(b.is_cuda for b in t.model.buffers())
    assert t.optimizer.defaults.get("fused") is True
    assert t.amp_dtype in (torch.bfloat16, torch.float16)  # auto: half precision on CUDA
    assert model_memory_format(t.model) == torch.channels_last  # auto: NHWC under autocast
    images, labels = next(iter(t.train_loader.epoch(1)))
    assert images.is_cuda and labels.is_cuda
    out = t.step(images, labels, 1, 0, labels.numel())
    assert out.loss.is_cuda and bool(torch.isfinite(out.loss))
    result = t.fit()
    assert 0 <= result["top1"] <= 100


def test_fp32_on_cuda_stays_nchw_and_batches_follow_the_model(cifar10_root: Path, tmp_path: Path) -> None:
    t = cuda_trainer(cifar10_root, tmp_path / "run", "train.amp=off")
    assert model_memory_format(t.model) == torch.contiguous_format
    seen: list[bool] = []
    t.model.backbone.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous()))
    images, labels = next(iter(t.train_loader.epoch(1)))
    t.model.train()
    t.step(images, labels, 1, 0, labels.numel())
    assert seen and all(seen)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_half_precision_steps(amp: str, cifar10_root: Path, tmp_path: Path) -> None:
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    t = cuda_trainer(cifar10_root, tmp_path / amp, f"train.amp={amp}", "train.epochs=1", "train.milestones=[]",
                     "fcc.enabled=true", "mix.name=remix")
    assert (t.scaler is not None) == (amp == "fp16")  # fp16 needs loss scaling, bf16 does not
    t.fit()
    line = (tmp_path / amp / "metrics.jsonl").read_text().splitlines()[-1]
    assert '"train_loss": ' in line and "NaN" not in line


def strict(fn):
    """``fn`` under torch.cuda.set_sync_debug_mode('error'): any host-device synchronisation raises."""
    def run(*args, **kwargs):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return fn(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return run


def test_the_compiled_step_is_the_eager_step_compiled_once_and_sync_free(cifar10_root: Path, tmp_path: Path) -> None:
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    extra = ("train.epochs=3", "train.milestones=[3]", "fcc.enabled=true", "fcc.start_epoch=2", "train.amp=bf16",
             "train.log_every=4")
    compiled = cuda_trainer(cifar10_root, tmp_path / "c", "train.compile=on", *extra)
    eager = cuda_trainer(cifar10_root, tmp_path / "e", "train.compile=off", *extra)
    images, labels = next(iter(compiled.train_loader.epoch(1)))
    compiled.model.train()
    eager.model.train()
    loss_c = compiled.step(images, labels, 1, 0, labels.numel()).loss
    loss_e = eager.step(images, labels, 1, 0, labels.numel()).loss
    torch.testing.assert_close(loss_c, loss_e, rtol=2e-2, atol=2e-2)  # bf16: kernels round differently
    assert compiled_call(compiled.forward).active and compiled_call(compiled.forward).seconds is not None
    # from now on every step runs without a host-device synchronisation, and nothing recompiles
    step_class = type(compiled.step)
    compiled.step.__class__ = type("StrictStep", (step_class,), {"__call__": strict(step_class.__call__)})
    graphs: list[int] = []
    compiled.step_callback = lambda t, e, s: graphs.append(counters["stats"]["unique_graphs"]) if s == 0 else None
    compiled.fit()
    assert graphs == [1, 1, 1]


def test_cuda_graphs_reduce_overhead_trains(cifar10_root: Path, tmp_path: Path) -> None:
    torch._dynamo.reset()
    t = cuda_trainer(cifar10_root, tmp_path / "ro", "train.compile=on", "train.compile_mode=reduce-overhead",
                     "fcc.enabled=true", "fcc.start_epoch=2", "train.amp=bf16")
    result = t.fit()
    assert compiled_call(t.forward).active and 0 <= result["top1"] <= 100


def test_ddp_over_nccl_with_one_process_wraps_the_compiled_forward(cifar10_root: Path, tmp_path: Path) -> None:
    import torch.distributed as dist

    torch._dynamo.reset()
    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        cfg = load_config(None, tiny_run_overrides(cifar10_root, tmp_path / "d", "device=cuda"))
        device = torch.device("cuda", torch.cuda.current_device())
        nets = []
        for _ in range(2):
            torch.manual_seed(0)
            nets.append(build_network(cfg, 10).to(device).to(memory_format=torch.channels_last))
        speed.remember_plan(nets[0], SpeedPlan(channels_last=True, compile_mode="default"))
        # a DistContext claiming two processes makes wrap_for_training take its DDP path on this 1-process group
        ddp = wrap_for_training(nets[0], DistContext(rank=0, world_size=2, device=device))
        assert isinstance(ddp, torch.nn.parallel.DistributedDataParallel) and isinstance(ddp.module, TrainingForward)
        assert compiled_call(ddp) is not None
        plain = TrainingForward(nets[1])
        x = torch.randn(16, 3, 32, 32, device=device)
        factors = torch.linspace(1, 1.5, 16, device=device)
        for forward in (ddp, plain):
            logits, _ = forward(x, factors)
            logits.square().mean().backward()
        for (name, a), b in zip(nets[1].named_parameters(), nets[0].parameters()):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-4, msg=name)
    finally:
        dist.destroy_process_group()
