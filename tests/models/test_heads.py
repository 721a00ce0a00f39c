"""Classifier heads (linear, cosine, LWS), tau-normalisation and the tau sweep."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import tiny_run_overrides
from fcc_lt.cli.main import main
from fcc_lt.config.load import load_config
from fcc_lt.data.augment import Normalize
from fcc_lt.data.datasets import ArrayDataset
from fcc_lt.data.loader import DeviceEvalLoader
from fcc_lt.engine.trainer import Trainer
from fcc_lt.evaluation.tau_sweep import parse_taus, sweep_tallies
from fcc_lt.methods.fcc import build_compression
from fcc_lt.models.heads import CosineHead, LinearHead, LWSHead, tau_normalize
from fcc_lt.models.network import build_network
from fcc_lt.models.tau_norm import tau_normalized_network
from fcc_lt.util.distributed import setup
from fcc_lt.util.errors import ConfigError
from fcc_lt.util.registry import HEADS

CFG = "cifar10_lt/ce_if100"




def test_registry_names() -> None:
    assert {"linear", "cosine", "lws"} <= set(HEADS.names())


def test_cosine_head_is_scaled_cosine_similarity() -> None:
    torch.manual_seed(0)
    head = CosineHead(5, 3, scale=2.5)
    f = torch.randn(4, 5, dtype=torch.float64)
    w = head.weight.detach().double()
    expected = torch.tensor([[2.5 * float(f[i] @ w[c]) / (f[i].norm() * w[c].norm()) for c in range(3)]
                             for i in range(4)], dtype=torch.float64)
    got = head(f.float()).double()
    assert torch.allclose(got, expected, atol=1e-5)
    # normalised features: a per-sample scale (what FCC does) leaves the logits unchanged
    factors = torch.tensor([[1.5], [2.0], [1.05], [1.0]])
    assert torch.allclose(head(f.float() * factors), head(f.float()), atol=1e-6)
    assert CosineHead.scale_invariant and not LinearHead.scale_invariant
    with pytest.raises(ConfigError, match="scale"):
        CosineHead(5, 3, scale=0.0)


def test_cosine_head_init_gives_every_class_vector_unit_norm() -> None:
    """LDAM-DRW's NormedLinear (the origin of this init) renormalises each class vector; the bag-of-tricks
    FCNorm transposed the weight but not the renorm axis, normalising each feature column instead."""
    torch.manual_seed(0)
    uniform = torch.empty(7, 5).uniform_(-1, 1)
    torch.manual_seed(0)
    head = CosineHead(5, 7)
    w = head.weight.detach()
    torch.testing.assert_close(w.norm(dim=1), torch.ones(7))  # per class (row of the (C, D) weight)
    torch.testing.assert_close(w, uniform / uniform.norm(dim=1, keepdim=True))  # same draws, rows scaled
    torch.manual_seed(0)
    bot = CosineHead(5, 7, init_norm="feature").weight.detach()
    torch.testing.assert_close(bot.norm(dim=0), torch.ones(5))  # per feature column, as the BoT code
    assert not torch.allclose(bot.norm(dim=1), torch.ones(7))


def test_lws_scales_a_frozen_linear_layer() -> None:
    torch.manual_seed(0)
    head = LWSHead(4, 3)
    assert [n for n, p in head.named_parameters() if p.requires_grad] == ["scales"]
    assert set(head.state_dict()) == {"fc.weight", "fc.bias", "scales"}
    assert torch.equal(head.scales.detach(), torch.ones(3))
    with torch.no_grad():
        head.scales.copy_(torch.tensor([0.5, 2.0, -1.0]))
    x = torch.randn(2, 4)
    w, b = head.fc.weight.detach(), head.fc.bias.detach()
    expected = torch.stack([torch.stack([(x[i] @ w[c] + b[c]) * s for c, s in enumerate([0.5, 2.0, -1.0])])
                            for i in range(2)])
    assert torch.allclose(head(x), expected, atol=1e-6)
    # a stage-1 linear head's weights load into it key for key, except the new scales
    linear = LinearHead(4, 3)
    missing = head.load_state_dict(linear.state_dict(), strict=False).missing_keys
    assert missing == ["scales"] and torch.equal(head.fc.weight, linear.fc.weight)


def test_tau_normalisation_by_hand() -> None:
    head = LinearHead(2, 2)
    with torch.no_grad():
        head.fc.weight.copy_(torch.tensor([[3.0, 4.0], [0.0, 2.0]]))  # row norms 5 and 2
        head.fc.bias.copy_(torch.tensor([0.25, -0.5]))
    x = torch.tensor([[1.0, 1.0]])
    # tau = 1: rows (0.6, 0.8) and (0, 1) -> logits 1.4 + 0.25, 1 - 0.5
    assert torch.allclose(tau_normalize(head, 1.0)(x), torch.tensor([[1.65, 0.5]]))
    # tau = 0.5: rows / sqrt(5) and / sqrt(2) -> 7/sqrt(5) + 0.25, 2/sqrt(2) - 0.5
    assert torch.allclose(tau_normalize(head, 0.5)(x),
                          torch.tensor([[7 / math.sqrt(5) + 0.25, math.sqrt(2) - 0.5]]), atol=1e-6)
    # tau = 0 is the head itself; the original head is untouched
    assert torch.allclose(tau_normalize(head, 0.0)(x), head(x))
    assert torch.equal(head.fc.weight, torch.tensor([[3.0, 4.0], [0.0, 2.0]]))
    with pytest.raises(ConfigError, match="cannot be tau-normalised"):
        tau_normalize(CosineHead(2, 2), 1.0)
    with pytest.raises(ConfigError, match="cannot be tau-normalised"):
        tau_normalize(LWSHead(2, 2), 1.0)


def test_parse_taus() -> None:
    taus = parse_taus("0:2:0.1")
    assert len(taus) == 21 and taus[3] == 0.3 and taus[-1] == 2.0
    assert parse_taus("1, 0.5,0,0:1:0.5") == [0.0, 0.5, 1.0]
    for bad in ("", "a", "1:0:0.1", "0:1:0.3", "0:1:0", "-1"):
        with pytest.raises(ConfigError, match="--tau-sweep"):
            parse_taus(bad)


def test_tau_config_validation() -> None:
    cfg = load_config(CFG, ["eval.tau_norm=1.0"])
    assert cfg.eval.tau_norm == 1.0
    with pytest.raises(ConfigError, match=r"eval\.tau_norm"):
        load_config(CFG, ["eval.tau_norm=-0.5"])
    with pytest.raises(ConfigError, match=r"eval\.tau_norm: model\.head 'cosine'"):
        load_config(CFG, ["eval.tau_norm=1.0", "model.head=cosine"])


def test_fcc_with_cosine_head_warns() -> None:
    cfg = load_config(CFG, ["fcc.enabled=true", "model.head=cosine", "model.backbone=resnet_cifar",
                            "model.backbone_params={depth: 8, width: 4}"])
    with pytest.warns(UserWarning, match="FCC is a no-op"):
        build_compression(cfg, [10] * 10)


def test_sweep_tallies_match_a_float64_recomputation() -> None:
    torch.manual_seed(0)
    cfg = load_config(CFG, ["model.backbone=resnet_cifar", "model.backbone_params={depth: 8, width: 4}"])
    net = build_network(cfg, 10).eval()
    with torch.no_grad():  # make the class norms very different so that tau changes predictions
        net.head.fc.weight.mul_(torch.logspace(0, 1.5, 10)[:, None])
    images = torch.randint(0, 256, (37, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(37) % 10
    ctx = setup("cpu")
    loader = DeviceEvalLoader(ArrayDataset(images, labels), 16, ctx.device,
                              normalize=Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)))
    taus = [0.0, 0.5, 1.0, 2.0]
    tallies = sweep_tallies(net, loader, taus, 10, ctx)
    with torch.no_grad():
        x = Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))(images)
        feats = net.features(x).double()
    w = net.head.fc.weight.detach().double()
    b = net.head.fc.bias.detach().double()
    preds = set()
    for tau, tally in zip(taus, tallies):
        logits = feats @ (w / w.norm(dim=1, keepdim=True) ** tau).T + b
        pred = logits.argmax(dim=1)
        preds.add(tuple(pred.tolist()))
        assert int(tally.top1.sum()) == int((pred == labels).sum())
        assert torch.equal(tally.total, torch.bincount(labels, minlength=10))
    assert len(preds) > 1  # the sweep really varied the predictions
    # the single-tau evaluation view agrees with the sweep
    view = tau_normalized_network(net, 1.0)
    with torch.no_grad():
        assert torch.allclose(view(x).double(), feats @ (w / w.norm(dim=1, keepdim=True)).T + b, atol=1e-4)


def test_tau_sweep_cli_selects_on_val(cifar10_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    cfg = load_config(CFG, tiny_run_overrides(cifar10_root, out, "train.epochs=1", "train.milestones=[]",
                                              "data.val_per_class=3"))
    Trainer(cfg).fit()
    # refused on test unless asked
    assert main(["eval", str(out), "--tau-sweep", "0:1:0.5", "--select-on", "val"]) == 0
    sweep = json.loads((out / "tau_sweep.json").read_text())
    assert sweep["taus"] == [0.0, 0.5, 1.0] and sweep["selected_on"] == "val"
    assert sweep["reported_on"] == "test"
    top1 = [r["top1"] for r in sweep["sweep"]]
    assert sweep["best_tau"] == sweep["taus"][top1.index(max(top1))]
    result = json.loads((out / "eval_tau_sweep.json").read_text())
    assert result["tau_norm"] == sweep["best_tau"] and result["split"] == "test"
    assert result["top1"] == sweep["result"]["top1"]
    # the reported number is the plain evaluation with eval.tau_norm set to the chosen tau
    assert main(["eval", str(out), f"eval.tau_norm={sweep['best_tau']}"]) == 0
    single = json.loads((out / f"eval_last_test_tau{sweep['best_tau']:g}.json").read_text())
    assert single["top1"] == result["top1"] and single["per_class"] == result["per_class"]
    capsys.readouterr()


def test_tau_sweep_refuses_test_selection_without_val(cifar10_root: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    cfg = load_config(CFG, tiny_run_overrides(cifar10_root, out, "train.epochs=1", "train.milestones=[]"))
    Trainer(cfg).fit()
    from fcc_lt.evaluation.tau_sweep import run_tau_sweep

    with pytest.raises(ConfigError, match="optimistic"):
        run_tau_sweep(out, cfg, [0.0, 1.0], select_on="test")
    assert main(["eval", str(out), "--tau-sweep", "0,1"]) == 2  # no val split: a clear error
    assert "was trained without a validation split" in capsys.readouterr().err
    assert main(["eval", str(out), "--tau-sweep", "0,1", "--select-on", "test"]) == 0
    assert json.loads((out / "tau_sweep.json").read_text())["selected_on"] == "test"
    # a tau-normalised evaluation never overwrites the run's own eval.json
    before = (out / "eval.json").read_text()
    assert main(["eval", str(out), "eval.tau_norm=1"]) == 0
    assert (out / "eval.json").read_text() == before and (out / "eval_last_test_tau1.json").exists()
