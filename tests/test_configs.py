"""Every shipped config loads, validates, builds and runs two training steps on tiny synthetic data.

The data root points at a fixture folder, the backbone at an 8-layer width-4 CIFAR ResNet (the head the
config chooses is kept), the batch at 8 and the run at 2 epochs (the schedule rescales, so DRW/DRS/FCC
switches fall inside it); the two steps run in the LAST epoch, where every deferred part is active.
Stage-2 configs are pointed at a tiny stage-1 run made once per session, which also serves as the DiVE
teacher.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TINY_MODEL
from fcc.cli import main
from fcc.config import load_config
from fcc.train import Trainer
from two_steps import run_two_steps

ROOT = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(p for p in ROOT.rglob("*.yaml") if not p.name.startswith("_"))
IDS = [p.relative_to(ROOT).as_posix().removesuffix(".yaml") for p in CONFIGS]
CIFAR_OVERRIDES = {"cifar10": ["data.imbalance_factor=10"], "cifar100": ["data.imbalance_factor=5"]}


def data_overrides(dataset: str, roots: dict[str, Path]) -> list[str]:
    """Point a config's data at the fixture of its dataset kind (CIFAR folders, or a tiny JSON image set
    standing in for ImageNet-LT / iNaturalist: 5 classes of 40x36 PNGs decoded at 32 px)."""
    if dataset == "json":
        root = roots["json"]
        return [f"data.train_json={root / 'train.json'}", f"data.test_json={root / 'test.json'}",
                f"data.val_json={root / 'test.json'}", "data.image_root=null", "data.image_size=32",
                "data.workers=0", "data.check_images=exists"]
    return [f"data.root={roots[dataset]}", "data.download=false", *CIFAR_OVERRIDES[dataset]]


def common(out: Path) -> list[str]:
    return ["device=cpu", f"out={out}", "train.epochs=2", "train.batch_size=8", "train.progress=false",
            "eval.batch_size=100", *TINY_MODEL]




@pytest.fixture(scope="session")
def roots(cifar10_root: Path, cifar100_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from image_fixtures import write_json_dataset

    images = tmp_path_factory.mktemp("json_images")
    write_json_dataset(images, [12, 8, 5, 3, 2], size=(40, 36))
    return {"cifar10": cifar10_root, "cifar100": cifar100_root, "json": images}


@pytest.fixture(scope="session")
def stage1(roots: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Per dataset, an untrained tiny CE run directory (config.yaml + checkpoints/last.pt)."""
    runs = {}
    for dataset, ref in (("cifar10", "cifar10_lt"), ("cifar100", "cifar100_lt"), ("json", "cifar10_lt")):
        out = tmp_path_factory.mktemp(f"stage1_{dataset}") / "run"
        cfg = load_config(ROOT / ref / "ce_if100.yaml", [*common(out), f"data.dataset={dataset}",
                                                          *data_overrides(dataset, roots)])
        Trainer(cfg).save("last")
        runs[dataset] = out
    return runs


@pytest.fixture(scope="session")
def cam_json(stage1: dict[str, Path]) -> dict[str, Path]:
    """Per dataset, CAM-based images generated from the stage-1 run (for the CAM stage-2 configs)."""
    from fcc.cam import generate
    from fcc.train import load_run_config

    return {dataset: Path(generate(run, run / "cam", cfg=load_run_config(run))["json"])
            for dataset, run in stage1.items()}


def test_every_config_is_listed(capsys: pytest.CaptureFixture) -> None:
    assert main(["configs", "--root", str(ROOT)]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert listed == [p.as_posix() for p in CONFIGS]
    # the CIFAR galleries: every method with and without FCC, at IF 100 and 50
    for folder in ("cifar10_lt", "cifar100_lt"):
        stems = {p.stem for p in (ROOT / folder).glob("*.yaml") if not p.name.startswith("_")}
        methods = {s.rsplit("_if", 1)[0].removesuffix("_fcc") for s in stems}
        assert len(methods) >= 30
        for m in methods:
            assert {f"{m}_if100", f"{m}_fcc_if100", f"{m}_if50", f"{m}_fcc_if50"} <= stems, m


@pytest.mark.parametrize("path", CONFIGS, ids=IDS)
def test_config_runs_two_steps(path: Path, roots: dict[str, Path], stage1: dict[str, Path],
                               cam_json: dict[str, Path], tmp_path: Path) -> None:
    shipped = load_config(path)  # as shipped: loads and validates
    dataset = shipped.data.dataset
    if dataset not in roots:
        pytest.skip(f"{dataset}: no synthetic fixture here; loaded and validated only")
    extra = []
    if shipped.model.init_from:
        extra.append(f"model.init_from={stage1[dataset] / 'checkpoints' / 'last.pt'}")
    if shipped.distill.teacher:
        extra.append(f"distill.teacher={stage1[dataset]}")
    if shipped.data.extra_train_json:
        extra.append(f"data.extra_train_json={cam_json[dataset]}")
    cfg = load_config(path, [*common(tmp_path / "run"), *data_overrides(dataset, roots), *extra])
    for key in ("model.head", "loss.name", "sampler.name", "mix.name", "fcc.enabled", "eval.tau_norm"):
        section, name = key.split(".")
        assert getattr(getattr(cfg, section), name) == getattr(getattr(shipped, section), name), key
    run_two_steps(cfg)
