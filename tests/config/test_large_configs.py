"""The ImageNet-LT and iNaturalist 2018 configs: the original protocols, stage-1/stage-2 wiring, and two
training steps of each on a tiny JSON image dataset written by the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TINY_MODEL
from fcc_lt.config.load import load_config
from fcc_lt.config.recipes import RECIPES
from fcc_lt.config.schema import Config
from fcc_lt.engine.trainer import Trainer
from image_fixtures import write_json_dataset
from two_steps import run_two_steps

ROOT = RECIPES
IMAGENET = sorted(p for p in (ROOT / "imagenet_lt").rglob("*.yaml") if not p.name.startswith("_"))
INAT = sorted(p for p in (ROOT / "inat18").glob("*.yaml") if not p.name.startswith("_"))
CONFIGS = IMAGENET + INAT
IDS = [p.relative_to(ROOT).as_posix().removesuffix(".yaml") for p in CONFIGS]




def method(path: Path) -> str:
    return path.stem.removesuffix("_original").removesuffix("_fcc")


def check_factors(cfg: Config, path: Path) -> None:
    """*_fcc ranks by frequency unrounded (fcc's fix); *_fcc_original has the original's (paper's) factors."""
    if path.stem.endswith("_fcc_original"):
        assert (cfg.fcc.rank_by, cfg.fcc.round_decimals) == ("index", 2)
    elif cfg.fcc.enabled:
        assert (cfg.fcc.rank_by, cfg.fcc.round_decimals) == ("frequency", None)


def test_gallery_is_complete() -> None:
    for net in ("resnet10", "resnet50"):
        stems = {p.stem for p in (ROOT / "imagenet_lt" / net).glob("*.yaml") if not p.name.startswith("_")}
        assert stems == {f"{m}{f}" for m in ("ce", "focal", "bsce", "crt", "tau_norm")
                         for f in ("", "_fcc", "_fcc_original")}
    assert {p.stem for p in INAT} == {"ce", "ce_fcc", "ce_fcc_original", "cb_ce", "cb_ce_fcc", "cb_ce_fcc_original"}


@pytest.mark.parametrize("path", IMAGENET, ids=[i for i in IDS if i.startswith("imagenet")])
def test_imagenet_lt_protocol(path: Path) -> None:
    cfg = load_config(path)
    net = path.parent.name
    assert cfg.model.backbone == net and cfg.model.head == "linear"
    d = cfg.data
    assert (d.dataset, d.image_size, d.augment, d.color_jitter, d.test_crop_ratio) == ("json", 224, "rrc_flip", 0.4,
                                                                                       0.875)
    assert d.train_json.endswith("ImageNet_LT_train.json") and d.test_json.endswith("ImageNet_LT_test.json")
    t = cfg.train
    fcc = "_fcc" in path.stem
    assert cfg.fcc.enabled is fcc and cfg.out == f"runs/imagenet_lt_{net}/{path.stem}"
    check_factors(cfg, path)
    if fcc:
        assert cfg.fcc.gamma == pytest.approx(0.1)
    if method(path) == "crt":
        assert (t.epochs, t.lr, t.weight_decay, t.milestones, t.lr_factor) == (30, 0.1, 5e-4, [10, 20], 0.1)
        assert (t.freeze, t.freeze_bn, cfg.model.init_exclude, cfg.sampler.name) == (["backbone"], True, ["head"],
                                                                                     "class_balanced")
        stage1 = load_config(path.with_name(f"ce{path.stem.removeprefix('crt')}.yaml"))
        assert cfg.model.init_from == f"{stage1.out}/checkpoints/last.pt"
        assert not fcc or cfg.fcc.start_epoch == 1  # the original's START_EPOCH 0: every epoch
        return
    assert (t.epochs, t.batch_size, t.lr, t.weight_decay, t.milestones) == (200, 64, 0.2, 1e-4, [160, 180])
    assert (t.warmup_epochs, t.nesterov, t.momentum, cfg.sampler.name) == (0, True, 0.9, "instance")
    # the original's LR factors: 0.01 for tau-norm and focal+FCC, 0.1 otherwise (its focal without FCC too)
    assert t.lr_factor == {"ce": 0.1, "bsce": 0.1, "focal": 0.01 if fcc else 0.1, "tau_norm": 0.01}[method(path)]
    assert cfg.loss.name == {"ce": "ce", "bsce": "balanced_softmax", "focal": "focal", "tau_norm": "ce"}[method(path)]
    assert cfg.eval.tau_norm == (1.0 if method(path) == "tau_norm" else None)
    assert not fcc or cfg.fcc.start_epoch == 51  # the original's START_EPOCH 50, strict >


@pytest.mark.parametrize("path", INAT, ids=[i for i in IDS if i.startswith("inat")])
def test_inat18_protocol(path: Path) -> None:
    cfg = load_config(path)
    t = cfg.train
    assert cfg.model.backbone == "resnet50"  # not the original's CIFAR ResNet-32
    assert (t.epochs, t.batch_size, t.lr, t.weight_decay, t.milestones, t.lr_factor, t.warmup_epochs) == \
        (100, 128, 0.2, 1e-4, [60, 80], 0.1, 0)
    assert (cfg.data.dataset, cfg.data.augment, cfg.data.color_jitter) == ("json", "rrc_flip", 0.0)
    assert cfg.fcc.enabled is ("_fcc" in path.stem)
    check_factors(cfg, path)
    if cfg.fcc.enabled:
        assert (cfg.fcc.gamma, cfg.fcc.start_epoch) == (pytest.approx(0.1), 1)
    if method(path) == "cb_ce":
        assert (cfg.loss.name, cfg.loss.params) == ("class_balanced_ce", {"beta": 0.9})


# ------------------------------------------------------------------------- two steps on tiny images


@pytest.fixture(scope="module")
def tiny_json(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_json")
    train, test = write_json_dataset(root, [12, 9, 7, 5, 3, 2], test_per_class=2, size=(40, 40))
    return {"train": train, "test": test}


def data_overrides(shipped: Config, tiny: dict[str, Path]) -> list[str]:
    out = [f"data.train_json={tiny['train']}", f"data.test_json={tiny['test']}", "data.image_size=32",
           "data.workers=0", "data.check_images=exists"]
    if shipped.data.val_json:
        out.append(f"data.val_json={tiny['test']}")
    return out


def common(out: Path, *extra: str) -> list[str]:
    return ["device=cpu", f"out={out}", "train.epochs=2", "train.batch_size=8", "train.progress=false",
            "eval.batch_size=100", "eval.confusion_png_max_classes=0", *extra]


@pytest.fixture(scope="module")
def stage1(tiny_json: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Untrained stage-1 run directories (tiny model, and ResNet-10) for the cRT configs."""
    runs = {}
    for name, model in (("tiny", TINY_MODEL), ("resnet10", [])):
        out = tmp_path_factory.mktemp(f"stage1_{name}") / "run"
        path = ROOT / "imagenet_lt" / "resnet10" / "ce.yaml"
        cfg = load_config(path, [*common(out, *model), *data_overrides(load_config(path), tiny_json)])
        Trainer(cfg).save("last")
        runs[name] = out
    return runs


@pytest.mark.parametrize("path", CONFIGS, ids=IDS)
def test_config_runs_two_steps_on_json_images(path: Path, tiny_json: dict[str, Path], stage1: dict[str, Path],
                                              tmp_path: Path) -> None:
    shipped = load_config(path)
    extra = [*TINY_MODEL]
    if shipped.model.init_from:
        extra.append(f"model.init_from={stage1['tiny'] / 'checkpoints' / 'last.pt'}")
    cfg = load_config(path, [*common(tmp_path / "run", *extra), *data_overrides(shipped, tiny_json)])
    assert cfg.fcc.start_epoch <= 2  # rescaled with the schedule: FCC is active in the steps below
    run_two_steps(cfg)


@pytest.mark.parametrize("name", ["imagenet_lt/resnet10/crt_fcc", "inat18/cb_ce_fcc", "imagenet_lt/resnet50/focal"])
def test_real_backbones_run_two_steps(name: str, tiny_json: dict[str, Path], stage1: dict[str, Path],
                                      tmp_path: Path) -> None:
    path = ROOT / f"{name}.yaml"
    shipped = load_config(path)
    extra = [f"model.init_from={stage1['resnet10'] / 'checkpoints' / 'last.pt'}"] if shipped.model.init_from else []
    cfg = load_config(path, [*common(tmp_path / "run", *extra), *data_overrides(shipped, tiny_json)])
    assert cfg.model.backbone == shipped.model.backbone
    run_two_steps(cfg)
