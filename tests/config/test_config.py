"""Config loading: YAML + base includes, overrides, types, validation errors, schedule rescaling."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fcc_lt.config.load import load_config
from fcc_lt.config.schedule import rescale_schedule
from fcc_lt.config.schema import Config, all_keys
from fcc_lt.util.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_and_required_keys_exist() -> None:
    keys = set(all_keys())
    for key in ("seed", "device", "out", "data.root", "data.dataset", "data.imbalance_factor", "train.epochs",
                "train.batch_size", "fcc.enabled", "fcc.gamma", "fcc.start_epoch"):
        assert key in keys
    cfg = load_config()
    assert cfg.train.epochs == 200 and cfg.fcc.enabled is False and cfg.out == "runs/default"


def test_base_chain_and_overrides(tmp_path: Path) -> None:
    write(tmp_path / "_base.yaml", "train:\n  epochs: 50\n  milestones: [40]\nfcc:\n  gamma: 0.3\n")
    cfg_file = write(tmp_path / "run.yaml", "base: _base.yaml\nfcc:\n  enabled: true\n  start_epoch: 11\n")
    cfg = load_config(cfg_file, ["train.batch_size=64", "fcc.gamma=0.7", "train.weight_decay=5e-4",
                                 "loss.params={}"])
    assert (cfg.train.epochs, cfg.train.milestones, cfg.train.batch_size) == (50, [40], 64)
    assert (cfg.fcc.enabled, cfg.fcc.gamma, cfg.fcc.start_epoch) == (True, 0.7, 11)
    assert cfg.train.weight_decay == pytest.approx(5e-4)  # "5e-4" is a YAML string: coerced to float
    assert cfg.out == "runs/run"


def test_dump_round_trips(tmp_path: Path) -> None:
    cfg = load_config(None, ["train.epochs=7", "train.milestones=[3, 5]", "train.warmup_epochs=1"])
    path = write(tmp_path / "resolved.yaml", cfg.dump())
    again = load_config(path)
    again.out = cfg.out
    assert again == cfg
    assert isinstance(yaml.safe_load(cfg.dump()), dict)


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("train.epoch=3", "did you mean 'train.epochs'"),
        ("fcc.gama=1", "did you mean 'fcc.gamma'"),
        ("trian.epochs=3", "did you mean 'train.epochs'"),
        ("train.epochs=three", "train.epochs: expected int"),
        ("train.epochs=2.5", "train.epochs: expected int"),
        ("fcc.enabled=1", "fcc.enabled: expected bool"),
        ("train.amp=fp8", "train.amp: expected one of"),
        ("train.batch_size=0", "train.batch_size: expected an integer >= 1"),
        ("fcc.gamma=-0.5", "fcc.gamma: expected a non-negative number"),
        ("data.imbalance_factor=0.5", "data.imbalance_factor: expected a number >= 1"),
        ("fcc.start_epoch=201", "fcc.start_epoch: expected the first active epoch"),
        ("train.milestones=[180, 160]", "train.milestones"),
        ("train.lr=nan", "train.lr: expected a finite number"),
        ("loss.name=cross_entropy", "unknown loss 'cross_entropy'"),
        ("device=gpu", "device: expected auto, cpu, cuda or cuda:N"),
        ("train.epochs", "expected key.sub=value"),
    ],
)
def test_bad_values_name_the_key(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert fragment in str(err.value)


def test_unknown_key_in_file_names_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path / "x.yaml", "train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"x\.yaml: unknown key 'train\.epochz'; did you mean 'train\.epochs'"):
        load_config(path)


def test_unknown_part_param_is_caught_at_load_time() -> None:
    with pytest.raises(ConfigError, match=r"loss\.params\.gamma: loss 'ce' has no parameter 'gamma'"):
        load_config(None, ["loss.params={gamma: 2}"])


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path / "bad.yaml", "train: [1,\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path / "list.yaml", "- 1\n- 2\n"))
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "a.yaml")


def test_shortened_schedule_rescales_epoch_keys() -> None:
    cfg = load_config("cifar10_lt/ce_fcc_if100", ["train.epochs=30"])
    # first-active epoch s of 200 -> 1 + round((s - 1) * 30 / 200)
    assert cfg.train.milestones == [1 + round(159 * 0.15), 1 + round(179 * 0.15)] == [25, 28]
    assert cfg.fcc.start_epoch == 1 + round(50 * 0.15 + 1e-9) == 9  # 7.5 rounds half up
    assert cfg.train.warmup_epochs == 1 and cfg.train.schedule_epochs == 30
    # keys given on the command line are taken as written
    cfg = load_config("cifar10_lt/ce_fcc_if100", ["train.epochs=30", "fcc.start_epoch=5"])
    assert cfg.fcc.start_epoch == 5 and cfg.train.milestones == [25, 28]


def test_rescale_is_identity_at_full_length() -> None:
    cfg = load_config("cifar10_lt/ce_fcc_if100")
    assert rescale_schedule(cfg) == {}
    assert (cfg.train.milestones, cfg.fcc.start_epoch, cfg.train.warmup_epochs) == ([160, 180], 51, 5)


def test_shipped_protocol_matches_the_original() -> None:
    for name, gamma in (("cifar10_lt", 0.5), ("cifar100_lt", 1.0)):
        for imb in (100, 50):
            cfg: Config = load_config(f"{name}/ce_fcc_if{imb}")
            t = cfg.train
            assert (t.epochs, t.batch_size, t.lr, t.momentum, t.weight_decay) == (200, 128, 0.1, 0.9, 2e-4)
            assert (t.warmup_epochs, t.milestones, t.lr_factor) == (5, [160, 180], 0.01)
            assert (cfg.fcc.enabled, cfg.fcc.gamma, cfg.fcc.start_epoch) == (True, gamma, 51)
            assert cfg.data.imbalance_factor == imb
            plain = load_config(f"{name}/ce_if{imb}")
            assert plain.fcc.enabled is False
