"""Speed choices (fcc_lt.engine.speed): memory format and compilation per device, the compiled training forward
(same results, no recompilation per epoch or when FCC switches on, a clean eager fallback, a shared
cache), the fused optimizer and evaluation in the model's memory format. Nothing here times anything:
speed is measured by benchmarks/, side by side."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import TINY_MODEL, tiny_run_overrides
from fcc_lt.config.load import load_config
from fcc_lt.config.schema import TrainConfig
from fcc_lt.data.augment import Normalize
from fcc_lt.data.datasets import ArrayDataset
from fcc_lt.data.loader import DeviceEvalLoader
from fcc_lt.engine import speed
from fcc_lt.engine.build import build_optimizer
from fcc_lt.engine.speed import SpeedPlan, compile_mode_for, compile_training, compiled_call, use_channels_last
from fcc_lt.engine.step import TrainingForward
from fcc_lt.engine.trainer import Trainer
from fcc_lt.evaluation.passes import run_eval
from fcc_lt.models.network import build_network, model_memory_format
from fcc_lt.util.distributed import DistContext
from fcc_lt.util.errors import ConfigError

CPU, CUDA, META = torch.device("cpu"), torch.device("cuda"), torch.device("meta")


def tiny_trainer(root: Path, out: Path, *extra: str) -> Trainer:
    cfg = load_config(None, tiny_run_overrides(root, out, "eval.confusion_png_max_classes=0", *extra))
    return Trainer(cfg, overwrite=True, ctx=DistContext())


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


# ------------------------------------------------------------------------------------ the choices

@pytest.mark.parametrize(("setting", "device", "amp", "expected"), [
    ("auto", CPU, None, True),  # oneDNN convolutions: NHWC pays on the CPU
    ("auto", CUDA, torch.bfloat16, True),  # tensor cores
    ("auto", CUDA, torch.float16, True),
    ("auto", CUDA, None, False),  # fp32 on CUDA stays NCHW
    ("auto", META, None, False),
    (True, CUDA, None, True), (False, CPU, None, False),  # forced
])
def test_channels_last_per_device(setting: bool | str, device: torch.device, amp: torch.dtype | None,
                                  expected: bool) -> None:
    assert use_channels_last(setting, device, amp) is expected


@pytest.mark.parametrize(("overrides", "device", "mode"), [
    ({}, CPU, "default"),  # the default 200 epochs
    ({"epochs": 2}, CPU, None),
    ({"epochs": 99}, CPU, None),
    ({"epochs": 100}, CPU, "default"),
    ({"epochs": 29}, CUDA, None),
    ({"epochs": 30}, CUDA, "default"),
    ({"epochs": 200, "max_steps_per_epoch": 3}, CUDA, None),  # smoke run
    ({"epochs": 200, "deterministic": True}, CUDA, None),
    ({"epochs": 200}, META, None),
    ({"epochs": 2, "compile": "on"}, CPU, "default"),
    ({"epochs": 2, "compile": "on", "compile_mode": "reduce-overhead"}, CUDA, "reduce-overhead"),
    ({"epochs": 200, "compile_mode": "max-autotune-no-cudagraphs"}, CUDA, "max-autotune-no-cudagraphs"),
    ({"epochs": 200, "compile": "off"}, CUDA, None),
])
def test_compile_where_it_pays(overrides: dict, device: torch.device, mode: str | None) -> None:
    got, why = compile_mode_for(TrainConfig(**overrides), device)
    assert got == mode and why


def test_speed_keys_are_validated() -> None:
    assert load_config(None, []).train.channels_last == "auto"
    assert load_config(None, ["train.channels_last=false"]).train.channels_last is False
    assert load_config(None, ["train.compile=off"]).train.compile == "off"  # YAML 1.1 reads off as False
    with pytest.raises(ConfigError, match=r"train\.channels_last: expected bool or one of 'auto'"):
        load_config(None, ["train.channels_last=nhwc"])
    with pytest.raises(ConfigError, match=r"train\.compile_mode: reduce-overhead does nothing with train\.compile=off"):
        load_config(None, ["train.compile=off", "train.compile_mode=reduce-overhead"])
    with pytest.raises(ConfigError, match=r"train\.compile: expected one of"):
        load_config(None, ["train.compile=always"])


# ------------------------------------------------------------------------- the trainer on the CPU

def test_cpu_default_is_channels_last_and_eager(cifar10_root: Path, tmp_path: Path) -> None:
    t = tiny_trainer(cifar10_root, tmp_path / "run")
    assert model_memory_format(t.model) == torch.channels_last
    assert isinstance(t.forward, TrainingForward) and compiled_call(t.forward) is None  # 2 epochs: not worth it
    images, _ = next(iter(t.train_loader.epoch(1)))
    assert images.is_contiguous(memory_format=torch.channels_last)
    plain = tiny_trainer(cifar10_root, tmp_path / "plain", "train.channels_last=false")
    assert model_memory_format(plain.model) == torch.contiguous_format
    assert isinstance(plain.forward, TrainingForward) and compiled_call(plain.forward) is None
    assert plain.forward.memory_format == torch.contiguous_format


def test_the_optimizer_is_fused_where_the_device_has_the_kernel(cifar10_root: Path, tmp_path: Path) -> None:
    cfg = load_config(None, tiny_run_overrides(cifar10_root, tmp_path / "r"))
    net = build_network(cfg, 10)
    assert build_optimizer(cfg, net).defaults.get("fused") is True
    adam = load_config(None, tiny_run_overrides(cifar10_root, tmp_path / "r", "train.optimizer=adamw"))
    assert build_optimizer(adam, net).defaults.get("fused") is True
    on_meta = build_network(cfg, 10).to("meta")  # no fused kernel on the meta device: the default optimizer
    assert not build_optimizer(cfg, on_meta).defaults.get("fused")


def test_the_fused_sgd_built_from_the_config_makes_nesterovs_update(cifar10_root: Path, tmp_path: Path) -> None:
    """build_optimizer's fused SGD gets the config's lr, momentum, weight decay and Nesterov: its weights
    after three steps match Nesterov SGD re-derived in float64 from those keys."""
    cfg = load_config(None, tiny_run_overrides(cifar10_root, tmp_path / "r", "train.lr=0.05", "train.momentum=0.8",
                                               "train.weight_decay=0.01", "train.nesterov=true"))
    torch.manual_seed(0)
    net = build_network(cfg, 10)
    opt = build_optimizer(cfg, net)
    assert opt.defaults.get("fused") is True
    params = [p for p in net.parameters() if p.requires_grad]
    expected = [p.detach().double().clone() for p in params]
    buffers = [torch.zeros_like(w) for w in expected]
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        grads = [torch.randn(p.shape, generator=g) for p in params]
        for p, grad in zip(params, grads):
            p.grad = grad.clone()
        opt.step()
        for w, buf, grad in zip(expected, buffers, grads):
            d = grad.double() + 0.01 * w  # weight decay
            buf.mul_(0.8).add_(d)  # momentum buffer (the first step's buffer is d itself)
            w.sub_(0.05 * (d + 0.8 * buf))  # Nesterov
    for p, w in zip(params, expected):
        torch.testing.assert_close(p.detach().double(), w, rtol=1e-5, atol=1e-6)


def test_eval_brings_batches_into_the_models_memory_format(cifar10_root: Path) -> None:
    cfg = load_config(None, TINY_MODEL)
    torch.manual_seed(0)
    net = build_network(cfg, 10).eval()
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(20) % 10
    loader = DeviceEvalLoader(ArrayDataset(images, labels), 8, CPU, normalize=Normalize([0.5] * 3, [0.25] * 3))
    ref = run_eval(net, loader, 10, DistContext())
    seen: list[bool] = []
    nhwc = build_network(cfg, 10)
    nhwc.load_state_dict(net.state_dict())
    nhwc.to(memory_format=torch.channels_last)
    nhwc.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    got = run_eval(nhwc, loader, 10, DistContext())  # the loader makes NCHW batches
    assert seen == [True, True, True]
    assert torch.equal(ref.top1, got.top1) and torch.equal(ref.confusion, got.confusion)


def test_eval_on_the_cpu_runs_the_forward_in_chunks_with_the_same_tallies(monkeypatch: pytest.MonkeyPatch) -> None:
    import fcc_lt.evaluation.passes

    torch.manual_seed(0)
    net = build_network(load_config(None, TINY_MODEL), 10).eval()
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    loader = DeviceEvalLoader(ArrayDataset(images, torch.arange(20) % 10), 8, CPU,
                              normalize=Normalize([0.5] * 3, [0.25] * 3))
    sizes: list[int] = []
    net.register_forward_pre_hook(lambda m, args: sizes.append(len(args[0])))
    monkeypatch.setattr(fcc_lt.evaluation.passes, "CPU_FORWARD_CHUNK", None)
    whole = run_eval(net, loader, 10, DistContext())
    assert sizes == [8, 8, 4]
    sizes.clear()
    monkeypatch.setattr(fcc_lt.evaluation.passes, "CPU_FORWARD_CHUNK", 3)
    chunked = run_eval(net, loader, 10, DistContext())
    assert sizes == [3, 3, 2, 3, 3, 2, 2, 2]  # equal parts of at most 3: few shapes for a compiled forward
    for a, b in ((whole.total, chunked.total), (whole.top1, chunked.top1), (whole.top5, chunked.top5),
                 (whole.confusion, chunked.confusion)):
        assert torch.equal(a, b)


# ------------------------------------------------------------------------------ compiled forward

def tiny_forward(seed: int = 0) -> TrainingForward:
    torch.manual_seed(seed)
    net = build_network(load_config(None, TINY_MODEL), 10).to(memory_format=torch.channels_last)
    return TrainingForward(net)


def test_compiled_forward_gives_eager_results_and_leaves_no_trace_of_its_probe(monkeypatch: pytest.MonkeyPatch
                                                                              ) -> None:
    monkeypatch.setattr(speed, "compile_backend", "aot_eager")  # the real graph capture, no code generation
    eager, compiled = tiny_forward(), tiny_forward()
    sf = compile_training(compiled, SpeedPlan(channels_last=True, compile_mode="default"))
    x = torch.randn(8, 3, 32, 32)  # NCHW: brought into NHWC by the training forward
    factors = torch.linspace(1.0, 1.5, 8)
    for _ in range(2):
        (le, fe), (lc, fc) = eager(x.contiguous(memory_format=torch.channels_last), factors), sf(x, factors)
        torch.testing.assert_close(lc, le, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fc, fe, rtol=1e-5, atol=1e-5)
        le.square().mean().backward()
        lc.square().mean().backward()
    assert sf.compiled.active and sf.compiled.seconds is not None
    # the probe's extra forward (BatchNorm statistics) was undone, and it stored no gradient
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_manifold_mixing_steps_run_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    from fcc_lt.methods.mixers import FeatureMix

    monkeypatch.setattr(speed, "compile_backend", "aot_eager")
    sf = compile_training(tiny_forward(), SpeedPlan(channels_last=True, compile_mode="default"))
    mix = FeatureMix("stage1", torch.tensor(0.3), torch.randperm(4))
    sf(torch.randn(4, 3, 32, 32), torch.ones(4), mix)
    assert sf.compiled.seconds is None  # nothing was compiled for it


def counted_trainer(root: Path, out: Path, counter: object, monkeypatch: pytest.MonkeyPatch, *extra: str) -> Trainer:
    monkeypatch.setattr(speed, "compile_backend", counter)
    return tiny_trainer(root, out, "train.compile=on", *extra)


def test_no_recompilation_across_epochs_lr_changes_and_the_fcc_start(cifar10_root: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    extra = ("train.epochs=4", "train.warmup_epochs=2", "train.milestones=[4]", "fcc.enabled=true",
             "fcc.start_epoch=3", "loss.name=balanced_softmax", "loss.params.drw_start_epoch=3")
    trainer = counted_trainer(cifar10_root, tmp_path / "c", counter, monkeypatch, *extra)
    frames: list[int] = []
    trainer.step_callback = lambda t, epoch, step: frames.append(counter.frame_count) if step == 0 else None
    trainer.fit()
    # the training forward compiled once in epoch 1, the evaluation forward once at its end (on the CPU),
    # never again although the lr, FCC and DRW changed and every epoch evaluated
    assert frames == [1, 2, 2, 2]
    assert counter.frame_count == 2
    # and it trained what the eager trainer trains
    eager = tiny_trainer(cifar10_root, tmp_path / "e", *extra)
    eager.fit()
    for (name, a), b in zip(weights(eager).items(), weights(trainer).values()):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4, msg=name)


def test_a_failed_compilation_warns_once_and_trains_eagerly_from_the_same_state(
        cifar10_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        raise RuntimeError("no working C++ compiler (test)")

    torch._dynamo.reset()
    monkeypatch.setattr(speed, "_warned", False)
    failing = counted_trainer(cifar10_root, tmp_path / "f", broken, monkeypatch, "fcc.enabled=true")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        failing.fit()
    fallbacks = [w for w in caught if issubclass(w.category, speed.CompileFallbackWarning)]
    assert len(fallbacks) == 1 and "no working C++ compiler (test)" in str(fallbacks[0].message)
    assert compiled_call(failing.forward).failed and not compiled_call(failing.forward).active
    eager = tiny_trainer(cifar10_root, tmp_path / "e", "fcc.enabled=true")
    eager.fit()
    a, b = weights(eager), weights(failing)
    assert all(torch.equal(a[k], b[k]) for k in a)  # the failed attempt left no trace


def test_the_compile_cache_is_shared(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(speed.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert speed.shared_cache_dir() == tmp_path / "xdg" / "fcc" / "inductor"
    assert os.environ[speed.CACHE_ENV] == str(tmp_path / "xdg" / "fcc" / "inductor")  # children inherit it
    monkeypatch.setenv(speed.CACHE_ENV, str(tmp_path / "mine"))
    assert speed.shared_cache_dir() == tmp_path / "mine" and (tmp_path / "mine").is_dir()
    # importing torch._dynamo fills the variable in with inductor's default: that is not a choice
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv(speed.CACHE_ENV, default_cache_dir())
    assert speed.shared_cache_dir() == tmp_path / "xdg" / "fcc" / "inductor"


@pytest.mark.slow
def test_inductor_compiles_the_tiny_trainer_once_and_a_second_build_loads_it_from_the_cache(
        cifar10_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real compiler (C++ code generation): the step eager computes, one graph each for forward,
    backward and evaluation whatever the epoch, and a fresh compile of the same model served from the disk
    cache."""
    from torch._dynamo.utils import counters

    monkeypatch.setenv(speed.CACHE_ENV, str(tmp_path / "cache"))
    torch._dynamo.reset()
    counters.clear()
    extra = ("train.epochs=3", "train.milestones=[3]", "fcc.enabled=true", "fcc.start_epoch=2")
    compiled = tiny_trainer(cifar10_root, tmp_path / "c", "train.compile=on", *extra)
    eager = tiny_trainer(cifar10_root, tmp_path / "e", *extra)
    for step, (images, labels) in zip(range(2), compiled.train_loader.epoch(1)):
        out_c = compiled.step(images, labels, 1, step, labels.numel())
        out_e = eager.step(images, labels, 1, step, labels.numel())
        torch.testing.assert_close(out_c.loss, out_e.loss, rtol=1e-5, atol=1e-5)
    # generated kernels sum in another order: after two updates the weights agree to ~1e-5 (training
    # amplifies such differences step by step, as any change of summation order does)
    for (name, a), b in zip(weights(eager).items(), weights(compiled).values()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-4, msg=name)
    graphs: list[int] = []
    compiled.step_callback = lambda t, e, s: graphs.append(counters["stats"]["unique_graphs"]) if s == 0 else None
    compiled.fit()
    assert compiled_call(compiled.forward).active and graphs == [1, 2, 2]  # training, then evaluation (CPU)
    assert counters["inductor"]["fxgraph_cache_miss"] == 3  # forward, backward, evaluation: each once
    # a second run (another process in a sweep) finds both graphs in the cache
    torch._dynamo.reset()
    counters.clear()
    again = tiny_trainer(cifar10_root, tmp_path / "again", "train.compile=on", "train.epochs=1",
                         "train.milestones=[]", "train.max_steps_per_epoch=2", "fcc.enabled=true")
    again.fit()
    assert counters["inductor"]["fxgraph_cache_hit"] == 3 and not counters["inductor"]["fxgraph_cache_miss"]


def test_the_compiled_training_forward_holds_the_network_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speed, "compile_backend", "aot_eager")
    forward = tiny_forward()
    network = forward.network
    sf = compile_training(forward, SpeedPlan(channels_last=True, compile_mode="default"))
    assert sf is forward and not isinstance(sf.compiled, nn.Module)  # no module layer around it
    assert [n for n, _ in sf.named_modules() if n.count(".") == 0 and n] == ["network"]
    assert sum(1 for _ in sf.parameters()) == sum(1 for _ in network.parameters())
    assert sf.state_dict().keys() == {f"network.{k}" for k in network.state_dict()}


def test_no_cpp_compiler_means_eager(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The real inductor with no C++ compiler (and an empty cache, so nothing compiled before is found)."""
    monkeypatch.setenv(speed.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", (str(tmp_path / "no-such-g++"),))
    monkeypatch.setattr(speed, "_warned", False)
    torch._dynamo.reset()
    eager, compiled = tiny_forward(), tiny_forward()
    sf = compile_training(compiled, SpeedPlan(channels_last=True, compile_mode="default"))
    x, factors = torch.randn(4, 3, 32, 32), torch.ones(4)
    with pytest.warns(speed.CompileFallbackWarning, match="C\\+\\+ compiler"):
        logits, _ = sf(x, factors)
    assert sf.compiled.failed
    torch.testing.assert_close(logits, eager(x.contiguous(memory_format=torch.channels_last), factors)[0],
                               rtol=0, atol=0)


def test_evaluation_is_compiled_where_the_run_compiles_on_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speed, "compile_backend", "aot_eager")
    cpu_long = load_config(None, ["train.epochs=200"])
    assert speed.plan_speed(cpu_long, CPU).compile_eval
    assert not speed.plan_speed(load_config(None, ["train.epochs=2", "train.warmup_epochs=0",
                                                  "train.milestones=[]"]), CPU).compile_eval
    cuda_long = load_config(None, ["train.epochs=200", "train.amp=off"])  # amp off: no CUDA needed to plan
    assert speed.plan_speed(cuda_long, CUDA).compile_mode == "default"
    assert not speed.plan_speed(cuda_long, CUDA).compile_eval  # evaluation is a small share of a GPU run
    torch.manual_seed(0)
    net = build_network(load_config(None, TINY_MODEL), 10).eval()
    assert speed.eval_forward(net) is net  # not planned: the model itself
    speed.remember_plan(net, speed.plan_speed(cpu_long, CPU))
    forward = speed.eval_forward(net)
    assert isinstance(forward, speed.EvalForward) and speed.eval_forward(net) is forward  # made once
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    loader = DeviceEvalLoader(ArrayDataset(images, torch.arange(20) % 10), 8, CPU,
                              normalize=Normalize([0.5] * 3, [0.25] * 3))
    compiled = run_eval(net, loader, 10, DistContext())
    assert forward.compiled is not None
    speed._PLANS.pop(net)
    eager = run_eval(net, loader, 10, DistContext())
    assert torch.equal(compiled.top1, eager.top1) and torch.equal(compiled.confusion, eager.confusion)
