"""Checkpoints of the original FCC / bag-of-tricks code: recognised, converted to fcc's names, and loaded
into fcc's ResNet-32 / ResNet-10 / ResNet-50 with every head, giving the same logits.

The checkpoints are built here in the original's layout from fcc networks: the original's Network has
``backbone`` (stem ``conv1``/``bn1``, stages ``layer1..4``, projection shortcuts ``downsample``),
``module`` (pooling, no weights) and ``classifier`` (``classifier.weight/bias`` for FC and cRT, only
``classifier.weight`` for FCNorm, ``classifier.fc.*`` and ``classifier.scales`` for LWS), saved as
{'state_dict': DataParallel(model).state_dict(), 'epoch': ..., 'best_result': <a NumPy float>, ...}.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from fcc_lt.config.load import load_config
from fcc_lt.evaluation.original_checkpoint import (
    convert_original_state,
    is_original_state,
    load_original_checkpoint,
    original_state_dict,
)
from fcc_lt.models.network import build_network
from fcc_lt.util.errors import CheckpointError

CLASSIFIER = {"linear": "FC", "cosine": "FCNorm", "lws": "LWS"}


def network(backbone: str, head: str, classes: int = 3, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = build_network(load_config(None, [f"model.backbone={backbone}", f"model.head={head}"]), classes)
    with torch.no_grad():  # give every buffer and the LWS scales values that a wrong mapping would betray
        for name, t in net.state_dict().items():
            if name.endswith(("running_mean", "running_var", "scales")):
                t.copy_(torch.rand_like(t) + 0.5)
            elif name.endswith("num_batches_tracked"):
                t.fill_(1234)
    return net.eval()


def original_name(key: str, classifier: str) -> str:
    """How the original code names one of fcc's weights (written from the original's module tree)."""
    if key.startswith("head."):
        leaf = key.rsplit(".", 1)[1]
        if classifier == "LWS":
            return "classifier.scales" if leaf == "scales" else f"classifier.fc.{leaf}"
        return f"classifier.{leaf}"
    parts = key.split(".")
    assert parts[0] == "backbone"
    if parts[1] == "stem":
        return f"backbone.{ {'0': 'conv1', '1': 'bn1'}[parts[2]] }.{parts[3]}"
    assert parts[1] == "stages"
    stage, block, rest = int(parts[2]), parts[3], parts[4:]
    if rest[0] == "shortcut":
        rest = ["downsample", *rest[1:]]
    return ".".join(["backbone", f"layer{stage + 1}", block, *rest])


def original_checkpoint(net: torch.nn.Module, classifier: str, prefix: str = "module.") -> dict:
    state = {prefix + original_name(k, classifier): v.clone() for k, v in net.state_dict().items()}
    return {"state_dict": state, "epoch": 200, "best_result": np.float64(0.4321), "best_epoch": 187,
            "scheduler": {"milestones": [160, 180], "last_epoch": 200}, "optimizer": {"state": {}, "param_groups": []},
            "amp": {}}


def test_the_test_layout_is_the_originals_resnet32() -> None:
    # res32_cifar: conv1/bn1, three stages of five blocks (conv1, bn1, conv2, bn2; option-A shortcuts have
    # no weights), then the FC classifier: 6 + 15 * 12 + 2 = 188 keys, listed here by hand.
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    expected = {"backbone.conv1.weight", *(f"backbone.bn1.{b}" for b in bn), "classifier.weight", "classifier.bias"}
    for layer in (1, 2, 3):
        for block in range(5):
            p = f"backbone.layer{layer}.{block}"
            expected |= {f"{p}.conv1.weight", f"{p}.conv2.weight", *(f"{p}.bn1.{b}" for b in bn),
                         *(f"{p}.bn2.{b}" for b in bn)}
    built = set(original_checkpoint(network("resnet32", "linear"), "FC", prefix="")["state_dict"])
    assert built == expected and len(expected) == 188


def test_the_test_layout_of_resnet10_and_resnet50_has_the_originals_downsample() -> None:
    r10 = set(original_checkpoint(network("resnet10", "linear"), "FC", prefix="")["state_dict"])
    assert "backbone.layer2.0.downsample.0.weight" in r10 and "backbone.layer2.0.downsample.1.running_var" in r10
    assert not any(k.startswith("backbone.layer1.0.downsample") for k in r10)  # 64 -> 64, stride 1: identity
    r50 = set(original_checkpoint(network("resnet50", "linear"), "FC", prefix="")["state_dict"])
    assert {"backbone.layer1.0.downsample.0.weight", "backbone.layer4.2.bn3.running_var",
            "backbone.layer3.5.conv3.weight"} <= r50
    assert len(r50) == 320


@pytest.mark.parametrize("backbone", ["resnet32", "resnet10", "resnet50"])
@pytest.mark.parametrize("head", ["linear", "cosine", "lws"])
def test_round_trip_gives_identical_logits(backbone: str, head: str, tmp_path: Path) -> None:
    trained = network(backbone, head, seed=1)
    path = tmp_path / "epoch_200.pth"
    torch.save(original_checkpoint(trained, CLASSIFIER[head]), path)
    raw = load_original_checkpoint(path)
    assert is_original_state(raw)
    fresh = network(backbone, head, seed=2)
    state = convert_original_state(raw, fresh, str(path))
    assert set(state) == set(fresh.state_dict())
    fresh.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 32 if backbone == "resnet32" else 64, 32 if backbone == "resnet32" else 64)
    with torch.no_grad():
        assert torch.equal(fresh(x), trained(x))
    assert int(fresh.state_dict()[next(k for k in state if k.endswith("num_batches_tracked"))]) == 1234


def test_a_first_stage_fc_checkpoint_starts_an_lws_stage(tmp_path: Path) -> None:
    stage1 = network("resnet32", "linear", seed=3)
    ckpt = original_checkpoint(stage1, "FC")
    lws = network("resnet32", "lws", seed=4)
    with pytest.raises(CheckpointError, match=r"head\.scales"):
        convert_original_state(ckpt, lws, "stage1.pth")
    state = convert_original_state(ckpt, lws, "stage1.pth", exclude=["head.scales"])
    assert "head.scales" not in state
    assert torch.equal(state["head.fc.weight"], stage1.state_dict()["head.fc.weight"])


def test_key_names_alone_or_a_state_dict_as_target() -> None:
    net = network("resnet32", "cosine")
    ckpt = original_checkpoint(net, "FCNorm", prefix="")
    by_keys = convert_original_state(ckpt, list(net.state_dict()), "x.pth")
    by_state = convert_original_state(ckpt["state_dict"], net.state_dict(), "x.pth")  # a bare state dict
    assert set(by_keys) == set(by_state) == set(net.state_dict())
    assert torch.equal(by_keys["head.weight"], net.state_dict()["head.weight"])


def names_in(message: str) -> set[str]:
    return set(re.findall(r"[a-z_]+(?:\.[A-Za-z0-9_]+)+", message))


def test_what_cannot_map_is_named() -> None:
    net = network("resnet32", "linear")
    ckpt = original_checkpoint(net, "FC")
    ckpt["state_dict"]["module.backbone.fc_add.weight"] = torch.zeros(2)  # the OLTR ResNet's unused layer
    del ckpt["state_dict"]["module.backbone.layer3.4.bn2.running_var"]
    with pytest.raises(CheckpointError) as err:
        convert_original_state(ckpt, net, "orig.pth")
    message = str(err.value)
    assert message.startswith("orig.pth: ")
    assert {"backbone.fc_add.weight", "backbone.stages.2.4.bn2.running_var"} <= names_in(message)


def test_an_lws_checkpoint_does_not_fit_a_linear_head() -> None:
    ckpt = original_checkpoint(network("resnet32", "lws"), "LWS")
    with pytest.raises(CheckpointError, match=r"classifier\.scales \(as head\.scales\)"):
        convert_original_state(ckpt, network("resnet32", "linear"), "lws.pth")


def test_shapes_are_checked() -> None:
    ckpt = original_checkpoint(network("resnet32", "linear", classes=10), "FC")
    with pytest.raises(CheckpointError, match=r"head\.fc\.weight: checkpoint \(10, 64\) vs model \(3, 64\)"):
        convert_original_state(ckpt, network("resnet32", "linear", classes=3), "c10.pth")
    other = original_checkpoint(network("resnet10", "linear"), "FC")
    with pytest.raises(CheckpointError, match="does not fit"):  # a ResNet-10 checkpoint into a ResNet-50
        convert_original_state(other, network("resnet50", "linear"), "r10.pth")


def test_recognition() -> None:
    net = network("resnet32", "linear")
    ours = net.state_dict()
    original = original_checkpoint(net, "FC")
    assert is_original_state(original)
    assert is_original_state(original["state_dict"])  # a bare state dict with module. prefixes
    assert is_original_state(original_checkpoint(net, "FC", prefix="")["state_dict"])  # its names alone
    assert not is_original_state(ours)  # fcc's own names
    assert not is_original_state({"format": "fcc-checkpoint", "version": 1, "model": ours})
    assert not is_original_state({"state_dict": {"a": 1}})
    assert not is_original_state([1, 2]) and not is_original_state({})
    # an fcc model saved from a DataParallel wrapper: recognised, and its names pass through
    wrapped = {"module." + k: v for k, v in ours.items()}
    assert set(convert_original_state(wrapped, net, "dp.pth")) == set(ours)
    assert original_state_dict({"state_dict": {"module.a": torch.zeros(1), "a": torch.zeros(1)}}) is None
    with pytest.raises(CheckpointError, match="not a checkpoint of the original"):
        convert_original_state(ours, net, "mine.pt")


class Payload:
    """Something a malicious pickle could build: refused by the weights-only reader."""


def test_unsafe_or_missing_files_are_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"module.classifier.weight": torch.zeros(1)}, "extra": Payload()}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        load_original_checkpoint(evil)
    with pytest.raises(CheckpointError, match="not found"):
        load_original_checkpoint(tmp_path / "absent.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"a text file \(it starts with 'not a checkpoint'\), not a checkpoint"):
        load_original_checkpoint(junk)
    mine = tmp_path / "mine.pth"
    torch.save({"model": network("resnet32", "linear").state_dict()}, mine)
    with pytest.raises(CheckpointError, match="not a checkpoint of the original"):
        load_original_checkpoint(mine)


# ------------------------------------------------- through the commands: fcc eval, init_from, teacher

def _tiny_original(tmp_path: Path, cifar10_root: Path) -> tuple[Path, torch.nn.Module, list[str]]:
    """An original-layout .pth of a tiny CIFAR network (a NumPy best_result, module. prefixes) and the
    overrides that describe that network to fcc."""
    from conftest import tiny_run_overrides

    overrides = tiny_run_overrides(cifar10_root, tmp_path / "unused")
    cfg = load_config(None, overrides)
    torch.manual_seed(3)
    net = build_network(cfg, 10).eval()
    path = tmp_path / "best_model.pth"
    torch.save(original_checkpoint(net, "FC"), path)
    return path, net, overrides


def test_original_checkpoints_evaluate_initialise_and_teach(tmp_path: Path, cifar10_root: Path) -> None:
    import json

    from fcc_lt.cli.main import main
    from fcc_lt.data.build import build_eval_loader, build_splits
    from fcc_lt.engine.trainer import Trainer
    from fcc_lt.evaluation.passes import run_eval
    from fcc_lt.methods.distill import load_teacher
    from fcc_lt.util.distributed import DistContext

    path, net, overrides = _tiny_original(tmp_path, cifar10_root)
    config = tmp_path / "cfg.yaml"
    config.write_text("")  # the defaults, with the tiny network given as overrides
    out = tmp_path / "eval"
    assert main(["eval", str(config), "--checkpoint", str(path), *overrides, f"out={out}"]) == 0
    result = json.loads((out / "eval_best_model_test.json").read_text())  # named after the checkpoint file
    cfg = load_config(config, overrides)
    splits = build_splits(cfg)
    tally = run_eval(net, build_eval_loader(cfg, splits, splits.test, DistContext()), 10, DistContext())
    assert result["top1"] == 100.0 * int(tally.top1.sum()) / int(tally.total.sum())  # the converted network
    # model.init_from: the stage-1 weights of the original code start an fcc run
    trainer = Trainer(load_config(None, [*overrides, f"out={tmp_path / 'init'}", f"model.init_from={path}"]))
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in net.state_dict().items())
    # a DiVE teacher of the student's architecture, as the original built it
    teacher = load_teacher(path, 10, "cpu", fallback=cfg)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(teacher(x), net(x))
    assert main(["eval", str(config), *overrides]) == 2  # a config alone names no checkpoint


def test_a_classifier_for_another_number_of_classes_is_refused_before_evaluating(
        tmp_path: Path, cifar10_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import tiny_run_overrides
    from fcc_lt.cli.main import main

    overrides = tiny_run_overrides(cifar10_root, tmp_path / "unused")
    path = tmp_path / "cifar100_model.pth"
    torch.save(original_checkpoint(build_network(load_config(None, overrides), 100), "FC"), path)
    config = tmp_path / "cfg.yaml"
    config.write_text("")
    out = tmp_path / "eval"
    # before: evaluated, then crashed in the confusion tally (a traceback)
    assert main(["eval", str(config), "--checkpoint", str(path), *overrides, f"out={out}"]) == 2
    err = capsys.readouterr().err
    assert "holds a classifier for 100 classes, but the data of the config (CIFAR-10-LT (IF 10)) has 10" in err
    assert not list(out.glob("eval*"))


def test_module_x_beside_x_is_named_for_what_it_is(tmp_path: Path) -> None:
    """The original's layout with each weight twice (``module.x`` and ``x``): a benign file, not 'unsafe'."""
    from fcc_lt.evaluation.run_loader import read_run

    net = network("resnet32", "linear")
    doubled = original_checkpoint(net, "FC")
    doubled["state_dict"].update(original_checkpoint(net, "FC", prefix="")["state_dict"])
    path = tmp_path / "doubled.pth"
    torch.save(doubled, path)
    for read in (load_original_checkpoint, lambda p: read_run(p, what="fcc eval --checkpoint")):
        with pytest.raises(CheckpointError) as err:
            read(path)
        message = str(err.value)
        count = len(net.state_dict())
        assert f"holds {count} weight(s) twice, with and without the DataParallel 'module.' prefix" in message
        assert "module.backbone.conv1.weight and backbone.conv1.weight" in message
        assert "refused" not in message and "Python objects" not in message
