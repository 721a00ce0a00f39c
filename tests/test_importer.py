"""`fcc import-config`: original (yacs) configs become fcc configs with the original's behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest

from fcc.cli import main
from fcc.config import load_config
from fcc.errors import ConfigError
from fcc.importer import convert

REPO = Path(__file__).resolve().parents[1]

# The original's configs/FCC/cifar/two_stage/drs/balance/cifar10_im100.yaml (values as published).
DRS_CIFAR10 = """
NAME: 'cbs-drs_fcc'
OUTPUT_DIR: './output/cifar10_im100'
SHOW_STEP: 100
VALID_STEP: 1
INPUT_SIZE: (32, 32)
FCC:
  WORK: True
  C_TYPE: 'edc'
  START_EPOCH: 50
  GAMMA: 0.5
DATASET:
  DATASET: 'IMBALANCECIFAR10'
  IMBALANCECIFAR:
    RATIO: 0.01
BACKBONE:
  TYPE: 'res32_cifar'
CLASSIFIER:
  TYPE: 'FC'
  BIAS: True
LOSS:
  LOSS_TYPE: 'CrossEntropy'
TRAIN:
  TWO_STAGE:
    DRS: True
    START_EPOCH: 160
  BATCH_SIZE: 128
  MAX_EPOCH: 200
  COMBINER:
    TYPE: 'fcc'
  OPTIMIZER:
    TYPE: 'SGD'
    BASE_LR: 0.1
    MOMENTUM: 0.9
    WEIGHT_DECAY: 2e-4
  LR_SCHEDULER:
    TYPE: 'warmup'
    LR_STEP: [160, 180]
    LR_FACTOR: 0.01
    WARM_EPOCH: 5
  SAMPLER:
    TYPE: 'weighted sampler'
    WEIGHTED_SAMPLER:
      TYPE: 'balance'
TRANSFORMS:
  TRAIN_TRANSFORMS: ('random_crop', 'random_horizontal_flip')
  TEST_TRANSFORMS: ()
"""

CRT_IMAGENET = """
NAME: 'crt_fcc'
OUTPUT_DIR: './output/ImageNet_LT/'
INPUT_SIZE: (224, 224)
FCC: {WORK: True, START_EPOCH: 0, GAMMA: 0.1}
DATASET: {DATASET: 'iNaturalist', TRAIN_JSON: 'ImageNet_LT_train.json', VALID_JSON: 'ImageNet_LT_val.json'}
BACKBONE: {TYPE: 'res10'}
NETWORK: {PRETRAINED: True, PRETRAINED_MODEL: './output/ImageNet_LT/baseline_fcc/models/epoch_200.pth'}
CLASSIFIER: {TYPE: 'cRT', BIAS: True}
TRAIN:
  BATCH_SIZE: 64
  MAX_EPOCH: 30
  COMBINER: {TYPE: 'fcc'}
  OPTIMIZER: {TYPE: 'SGD', BASE_LR: 0.1, MOMENTUM: 0.9, WEIGHT_DECAY: 5e-4}
  LR_SCHEDULER: {TYPE: 'multistep', LR_STEP: [10, 20], LR_FACTOR: 0.1}
  SAMPLER: {TYPE: 'weighted sampler', WEIGHTED_SAMPLER: {TYPE: 'balance'}}
TRANSFORMS:
  TRAIN_TRANSFORMS: ("random_resized_crop", "random_horizontal_flip", "color_jitter")
  TEST_TRANSFORMS: ("shorter_resize_for_crop", "center_crop")
"""


def imported(tmp_path: Path, text: str):
    src = tmp_path / "original.yaml"
    src.write_text(text)
    out = tmp_path / "ours.yaml"
    assert main(["import-config", str(src), "-o", str(out)]) == 0
    return load_config(out)


def test_drs_config_matches_the_shipped_gallery(tmp_path: Path) -> None:
    cfg = imported(tmp_path, DRS_CIFAR10)
    ours = load_config(REPO / "configs/cifar10_lt/drs_balanced_fcc_if100.yaml")
    for section in ("loss", "sampler", "mix"):
        assert getattr(cfg, section) == getattr(ours, section)
    t, o = cfg.train, ours.train
    for key in ("epochs", "batch_size", "lr", "momentum", "weight_decay", "nesterov", "milestones", "lr_factor",
                "warmup_epochs"):
        assert getattr(t, key) == getattr(o, key), key
    assert (cfg.fcc.enabled, cfg.fcc.gamma, cfg.fcc.start_epoch) == (True, 0.5, 51) == (
        ours.fcc.enabled, ours.fcc.gamma, ours.fcc.start_epoch)
    assert (cfg.fcc.rank_by, cfg.fcc.round_decimals) == ("index", 2)  # the original's exact tau
    assert (cfg.data.dataset, cfg.data.imbalance_factor, cfg.model.backbone) == ("cifar10", 100, "resnet32")
    assert cfg.out == "output/cifar10_im100/cbs-drs_fcc" and cfg.train.eval_every == 1


def test_crt_stage_two_on_json_images(tmp_path: Path) -> None:
    cfg = imported(tmp_path, CRT_IMAGENET)
    assert (cfg.data.dataset, cfg.data.train_json, cfg.data.test_json) == (
        "json", "ImageNet_LT_train.json", "ImageNet_LT_val.json")
    assert (cfg.data.augment, cfg.data.color_jitter, cfg.data.image_size) == ("rrc_flip", 0.4, 224)
    assert (cfg.model.backbone, cfg.model.head, cfg.model.init_exclude) == ("resnet10", "linear", ["head"])
    assert cfg.model.init_from.endswith("epoch_200.pth") and cfg.train.freeze == ["backbone"]
    assert (cfg.fcc.enabled, cfg.fcc.start_epoch, cfg.fcc.gamma) == (True, 1, 0.1)  # START_EPOCH 0: all epochs
    assert (cfg.train.milestones, cfg.train.lr_factor, cfg.train.warmup_epochs) == ([10, 20], 0.1, 0)
    assert cfg.sampler.name == "class_balanced" and "drs_start_epoch" not in cfg.sampler.params
    text = (tmp_path / "ours.yaml").read_text()
    assert "# note: model.init_from" in text and "# note: DATASET.VALID_JSON" in text


def base(**changes: object) -> dict:
    cfg: dict = {"DATASET": {"DATASET": "IMBALANCECIFAR100", "IMBALANCECIFAR": {"RATIO": 0.02}},
                 "BACKBONE": {"TYPE": "res32_cifar"}, "TRAIN": {"MAX_EPOCH": 200, "LR_SCHEDULER": {"LR_STEP": [160]}}}
    for dotted, value in changes.items():
        node = cfg
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return cfg


def test_drw_losses_use_the_original_switch_epochs() -> None:
    drw = {"TRAIN__TWO_STAGE__DRW": True, "TRAIN__TWO_STAGE__START_EPOCH": 160}
    out, _ = convert(base(**drw))  # CrossEntropy under DRW was n_min/n_c weighted CE
    assert out["loss"] == {"name": "cost_sensitive_ce", "params": {"gamma": 1.0, "drw_start_epoch": 161}}
    assert out["data"]["imbalance_factor"] == 50
    out, _ = convert(base(LOSS__LOSS_TYPE="LDAMLoss", **drw))  # LDAM switched one epoch earlier
    assert out["loss"]["params"] == {"scale": 30.0, "max_margin": 0.5, "reweight": True, "drw_start_epoch": 160}
    assert out["model"]["head"] == "cosine"
    out, _ = convert(base(LOSS__LOSS_TYPE="BalancedSoftmaxCE", **drw))
    assert out["loss"] == {"name": "balanced_softmax", "params": {"drw_start_epoch": 161}}


def test_fcc_only_where_the_combiner_ran_it() -> None:
    out, notes = convert(base(FCC__WORK=True, TRAIN__COMBINER__TYPE="mix_up"))
    assert out["fcc"]["enabled"] is False and out["mix"] == {"name": "mixup", "params": {"alpha": 1.0}}
    assert any("never ran FCC" in n for n in notes)
    out, _ = convert(base(FCC__WORK=True, TRAIN__COMBINER__TYPE="remix_fcc"))
    assert out["fcc"]["enabled"] is True and out["mix"]["name"] == "remix"
    out, _ = convert(base(TRAIN__COMBINER__TYPE="manifold_mix_up", TRAIN__COMBINER__MANIFOLD_MIX_UP__LOCATION="fc"))
    assert out["mix"]["params"]["location"] == "logits"


@pytest.mark.parametrize(("changes", "message"), [
    ({"TRAIN__LR": 0.1}, "'TRAIN.LR' is not a key of the original"),
    ({"TRAIN__COMBINER__TYPE": "dataspread"}, "'dataspread' does not exist in the original either"),
    ({"LOSS__LOSS_TYPE": "Mystery"}, "LOSS.LOSS_TYPE 'Mystery' has no fcc equivalent"),
    ({"FCC__C_TYPE": "other"}, "FCC.C_TYPE"),
    ({"DATASET__GENERATE_CAM_BASED_DATASET": True}, "fcc data cam-generate"),
])
def test_what_cannot_be_imported_is_named(changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        convert(base(**changes))


@pytest.mark.parametrize(("text", "message"), [
    ("TRAIN:\n  BATCH_SIZE: !!int abc\n", "not valid YAML: ValueError"),  # PyYAML raises ValueError here
    ("TRAIN: [unclosed\n", "not valid YAML"),
    (b"NAME: caf\xe9\n", "cannot read original config: not UTF-8"),
])
def test_unreadable_original_files_are_config_errors(text: str | bytes, message: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "original.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert main(["import-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err and "Traceback" not in err
