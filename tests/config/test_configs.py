"""Every shipped config loads, validates, builds and runs two training steps on tiny synthetic data.

The data root points at a fixture folder, the backbone at an 8-layer width-4 CIFAR ResNet (the head the
config chooses is kept), the batch at 8 and the run at 2 epochs (the schedule rescales, so DRW/DRS/FCC
switches fall inside it); the two steps run in the LAST epoch, where every deferred part is active.
Stage-2 configs are pointed at a tiny stage-1 run made once per session, which also serves as the DiVE
teacher.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import TINY_MODEL
from fcc_lt.cli.main import main
from fcc_lt.config.load import load_config
from fcc_lt.config.recipes import RECIPES
from fcc_lt.engine.trainer import Trainer
from two_steps import run_two_steps

ROOT = RECIPES
CONFIGS = sorted(p for p in ROOT.rglob("*.yaml") if not p.name.startswith("_")
                 and p.relative_to(ROOT).parts[0] != "sweeps")
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
    from fcc_lt.evaluation.run_loader import load_run_config
    from fcc_lt.methods.cam import generate

    return {dataset: Path(generate(run, run / "cam", cfg=load_run_config(run))["json"])
            for dataset, run in stage1.items()}


def test_every_config_is_listed(capsys: pytest.CaptureFixture) -> None:
    assert main(["configs", "--root", str(ROOT / "cifar10_lt")]) == 0  # a folder: its files by path
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert listed == [p.as_posix() for p in CONFIGS if p.parent == ROOT / "cifar10_lt"]
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


# ------------------------------------------------------------------ the shipped values against the original

def recipe(cfg) -> dict:
    """What a run trains: every value docs/config_sources.md compares (not paths, logging, eval batch)."""
    t = cfg.train
    return {"epochs": t.epochs, "batch": t.batch_size, "lr": t.lr, "momentum": t.momentum, "nesterov": t.nesterov,
            "weight_decay": t.weight_decay, "milestones": list(t.milestones), "lr_factor": t.lr_factor,
            "warmup": t.warmup_epochs, "scheduler": t.scheduler, "optimizer": t.optimizer,
            "loss": (cfg.loss.name, cfg.loss.params), "sampler": (cfg.sampler.name, cfg.sampler.params),
            "mix": (cfg.mix.name, cfg.mix.params), "backbone": cfg.model.backbone, "head": cfg.model.head,
            "init_exclude": cfg.model.init_exclude, "freeze": t.freeze, "tau_norm": cfg.eval.tau_norm,
            "fcc": (cfg.fcc.gamma, cfg.fcc.start_epoch, cfg.fcc.rank_by, cfg.fcc.round_decimals)
            if cfg.fcc.enabled else None,
            "data": (cfg.data.dataset, cfg.data.imbalance_factor, cfg.data.augment, cfg.data.color_jitter)}


# Deliberate differences (docs/config_sources.md): fcc's FCC factors, and remix's per-sample weights.
OURS_FCC = {"fcc.rank_by": "frequency", "fcc.round_decimals": None}


def imported_recipe(text: str, tmp_path: Path, **deliberate) -> dict:
    src = tmp_path / "original.yaml"
    src.write_text(text)
    out = tmp_path / "imported.yaml"
    assert main(["import-config", str(src), "-o", str(out)]) == 0
    mix_params = {k for k, v in deliberate.items() if k.startswith("mix.params.") and v is None}
    cfg = load_config(out, [f"{k}={'null' if v is None else v}" for k, v in deliberate.items() if k not in mix_params])
    for key in mix_params:  # a part parameter left out takes the part's default
        cfg.mix.params.pop(key.removeprefix("mix.params."))
    return recipe(cfg)


def gallery_cases() -> list[tuple[str, str, dict]]:
    """(shipped config, original file in the original's format, deliberate overrides) for the configs whose
    values this project had to correct against the original gallery, and one of each other kind."""
    from test_importer import CELS, DRW160, FCC_ON, MIX400, PRETRAINED, STAGE2, cifar, fcc_block, original

    remix = {**MIX400, "COMBINER": {"TYPE": "remix", "ALPHA": 1.0, "REMIX": {"KAPPA": 3.0, "TAU": 0.5}}}
    per_sample = {"mix.params.reproduce_original": None}  # fcc's default: per-sample weights
    cam2 = {"MAX_EPOCH": 40, "OPTIMIZER": {"BASE_LR": 0.001}, "LR_SCHEDULER": {"TYPE": "warmup", "LR_STEP": [20]},
            "SAMPLER": {"TYPE": "weighted sampler", "WEIGHTED_SAMPLER": {"TYPE": "balance"}}}
    multistep20 = {"TYPE": "multistep", "LR_STEP": [20]}

    def cam_data(ratio: float) -> dict:
        return {"DATASET": "IMBALANCECIFAR100", "IMBALANCECIFAR": {"RATIO": ratio}, "USE_CAM_BASED_DATASET": True,
                "CAM_DATA_JSON_SAVE_PATH": "x.json"}

    return [
        ("cifar10_lt/ce_if100.yaml", original("cifar", cifar(10, 0.01)), {}),
        ("cifar100_lt/ls_fcc_if50.yaml", original("cifar", cifar(100, 0.02, FCC=fcc_block(1.0), TRAIN=FCC_ON,
                                                                  LOSS=CELS)), OURS_FCC),
        ("cifar10_lt/mixup_if100.yaml", original("cifar", cifar(10, 0.01, TRAIN={
            **MIX400, "COMBINER": {"TYPE": "mix_up", "ALPHA": 1.0}})), {}),
        ("cifar100_lt/manifold_mixup_if50.yaml", original("cifar", cifar(100, 0.02, TRAIN={
            **MIX400, "COMBINER": {"TYPE": "manifold_mix_up", "ALPHA": 1.0}})), {}),
        ("cifar10_lt/remix_if50.yaml", original("cifar", cifar(10, 0.02, TRAIN=remix)), per_sample),
        ("cifar100_lt/remix_fcc_if100.yaml", original("cifar", cifar(100, 0.01, FCC=fcc_block(1.0), TRAIN={
            **remix, "COMBINER": {**remix["COMBINER"], "TYPE": "remix_fcc"}})), {**per_sample, **OURS_FCC}),
        ("cifar10_lt/cb_focal_if50.yaml", original("cifar", cifar(10, 0.02, LOSS={
            "LOSS_TYPE": "ClassBalanceFocal", "ClassBalanceFocal": {"BETA": 0.9999, "GAMMA": 2.0}})), {}),
        ("cifar100_lt/cb_focal_if50.yaml", original("cifar", cifar(100, 0.02, LOSS={
            "LOSS_TYPE": "ClassBalanceFocal", "ClassBalanceFocal": {"BETA": 0.99, "GAMMA": 1.0}})), {}),
        ("cifar10_lt/crt_if100.yaml", original("cifar", cifar(10, 0.01, NETWORK=PRETRAINED,
                                                               CLASSIFIER={"TYPE": "cRT"}, TRAIN=STAGE2)), {}),
        ("cifar100_lt/lws_if50.yaml", original("cifar", cifar(100, 0.02, NETWORK=PRETRAINED,
                                                               CLASSIFIER={"TYPE": "LWS"}, TRAIN=STAGE2)), {}),
        ("cifar10_lt/cam_stage1_if100.yaml", original("cifar", cifar(10, 0.01, TRAIN={"MAX_EPOCH": 160})), {}),
        ("cifar100_lt/cam_if100.yaml", original("cifar", cifar(100, 0.01, DATASET=cam_data(0.01),
                                                                NETWORK=PRETRAINED, TRAIN=cam2)), {}),
        ("cifar100_lt/cam_if50.yaml", original("cifar", cifar(100, 0.02, DATASET=cam_data(0.02), NETWORK=PRETRAINED,
                                                               TRAIN={**cam2, "LR_SCHEDULER": multistep20})),
         {}),
        ("cifar100_lt/cdt_drw_if50.yaml", original("cifar", cifar(100, 0.02, TRAIN=DRW160, LOSS={"LOSS_TYPE": "CDT"})),
         {}),
        ("cifar100_lt/drs_square_fcc_if100.yaml", original("cifar", cifar(100, 0.01, FCC=fcc_block(0.5), TRAIN={
            **FCC_ON, "TWO_STAGE": {"DRS": True, "START_EPOCH": 160},
            "SAMPLER": {"TYPE": "weighted sampler", "WEIGHTED_SAMPLER": {"TYPE": "square"}}})), OURS_FCC),
        ("imagenet_lt/resnet10/focal.yaml", original("imagenet", {
            "FCC": None, "TRAIN": {"COMBINER": {"TYPE": "default"}}, "LOSS": {"LOSS_TYPE": "FocalLoss"}}), {}),
        ("imagenet_lt/resnet10/focal_fcc.yaml", original("imagenet", {"LOSS": {"LOSS_TYPE": "FocalLoss"}, "TRAIN": {
            "LR_SCHEDULER": {"LR_FACTOR": 0.01}}}), OURS_FCC),
        ("imagenet_lt/resnet10/focal_fcc_original.yaml", original("imagenet", {
            "LOSS": {"LOSS_TYPE": "FocalLoss"}, "TRAIN": {"LR_SCHEDULER": {"LR_FACTOR": 0.01}}}), {}),
        ("imagenet_lt/resnet10/crt_fcc_original.yaml", original("imagenet", {
            "FCC": {"START_EPOCH": 0}, "CLASSIFIER": {"TYPE": "cRT"}, "NETWORK": PRETRAINED,
            "TRAIN": {**STAGE2, "LR_SCHEDULER": {"LR_STEP": [10, 20], "LR_FACTOR": 0.1}}}), {}),
        ("inat18/cb_ce_fcc_original.yaml", original("inat", {"LOSS": {
            "LOSS_TYPE": "ClassBalanceCE", "ClassBalanceCE": {"BETA": 0.9}}}), {"model.backbone": "resnet50"}),
    ]


@pytest.mark.parametrize("case", range(len(gallery_cases())), ids=[c[0] for c in gallery_cases()])
def test_shipped_values_are_the_original_gallerys(case: int, tmp_path: Path) -> None:
    """The shipped config trains what `fcc import-config` makes of the original file it comes from
    (docs/config_sources.md), apart from the differences that table names (passed as overrides)."""
    name, text, deliberate = gallery_cases()[case]
    ours = recipe(load_config(ROOT / name))
    theirs = imported_recipe(text, tmp_path, **deliberate)
    assert {k: v for k, v in theirs.items() if ours[k] != v} == {}, name


def test_paper_variants_differ_only_in_the_factors() -> None:
    variants = sorted(p for p in ROOT.rglob("*_fcc_original.yaml") if not p.name.startswith("_"))
    assert len(variants) == 12  # ImageNet-LT: 5 methods x 2 backbones; iNat18: 2
    for path in variants:
        original, ours = load_config(path), load_config(path.with_name(path.name.replace("_fcc_original", "_fcc")))
        assert (original.fcc.rank_by, original.fcc.round_decimals) == ("index", 2), path
        assert (ours.fcc.rank_by, ours.fcc.round_decimals) == ("frequency", None), path
        a, b = recipe(original), recipe(ours)
        assert {k for k in a if a[k] != b[k]} == {"fcc"}, path


def covered(pattern: str) -> str:
    """A docs/config_sources.md config pattern (`{IF}`, `*`, `{a,b}`) as a regular expression."""
    out = re.escape(pattern).replace(r"\{IF\}", "(100|50)").replace(r"\*", "[a-z0-9_/]+")
    return re.sub(r"\\\{([a-z_,]+)\\\}", lambda m: "(" + m.group(1).replace(",", "|") + ")", out)


def test_the_sources_table_names_every_config() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "config_sources.md").read_text()
    sections = {"cifar": text.split("## CIFAR")[1].split("## ImageNet")[0],
                "imagenet_lt": text.split("## ImageNet-LT")[1].split("## iNaturalist")[0],
                "inat18": text.split("## iNaturalist")[1]}
    for path in CONFIGS:
        rel = path.relative_to(ROOT)
        folder, name = rel.parts[0], rel.relative_to(rel.parts[0]).as_posix().removesuffix(".yaml")
        table = sections["cifar" if folder.startswith("cifar") else folder]
        first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
        patterns = [p for cell in first_cells for p in re.findall(r"`([^`]+)`", cell)]
        assert any(re.fullmatch(covered(p), name) for p in patterns), rel
