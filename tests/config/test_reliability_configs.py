"""Bad configs and checkpoints that do not fit: a ConfigError/CheckpointError naming the key or file,
exit status 2 from the CLI with one line on stderr, never a traceback from inside torch."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fcc_lt.cli import main as cli
from fcc_lt.config.load import load_config
from fcc_lt.engine.trainer import Trainer
from fcc_lt.evaluation.run_loader import load_run_config
from fcc_lt.models.checkpoint_file import save_checkpoint
from fcc_lt.models.network import build_network
from fcc_lt.util.errors import CheckpointError, ConfigError, FccError
from reliability_support import env, inprocess_reference, one_thread, run_overrides

SHORT = ["train.epochs=10", "train.milestones=[8]", "train.warmup_epochs=1"]


@pytest.mark.parametrize(("overrides", "message"), [
    # unknown keys, with the nearest valid one
    (["trian.epochs=3"], "unknown key 'trian.epochs'; did you mean 'train.epochs'?"),
    (["fcc.gama=0.5"], "unknown key 'fcc.gama'; did you mean 'fcc.gamma'?"),
    (["train.batchsize=8"], "did you mean 'train.batch_size'?"),
    (["loss.name=focal", "loss.params.gama=2"],
     "loss.params.gama: loss 'focal' has no parameter 'gama'; did you mean 'gamma'?"),
    (["loss.name=focall"], "loss.name: unknown loss 'focall'; did you mean 'focal'?"),
    (["model.backbone=resnet23"], "did you mean 'resnet32'?"),
    (["train.epochs.max=3"], "'train.epochs' has no sub-keys"),
    # wrong types
    (["train.epochs=ten"], "train.epochs: expected int, got 'ten'"),
    (["train.epochs=2.5"], "train.epochs: expected int, got 2.5"),
    (["fcc.enabled=maybe"], "fcc.enabled: expected bool, got 'maybe'"),
    (["train.lr=[0.1]"], "train.lr: expected float, got [0.1]"),
    (["data.imbalance_factor=true"], "data.imbalance_factor: expected float, got True"),
    (["train.milestones=5"], "train.milestones: expected a list of int"),
    (["train.lr=.inf"], "train.lr: expected a finite number"),
    (["train.lr=1e999"], "train.lr: expected a finite number"),
    (["train.optimizer=sgdd"], "did you mean 'sgd'?"),
    # out-of-range values
    (["fcc.gamma=-0.5"], "fcc.gamma: expected a non-negative number, got -0.5"),
    (["data.imbalance_factor=0.5"], "data.imbalance_factor: expected a number >= 1, got 0.5"),
    (["train.batch_size=0"], "train.batch_size: expected an integer >= 1, got 0"),
    (["eval.batch_size=0"], "eval.batch_size: expected an integer >= 1, got 0"),
    (["train.epochs=0"], "train.epochs: expected an integer >= 1"),
    (["train.lr=0"], "train.lr: expected a positive number"),
    (["train.momentum=1"], "train.momentum: expected a number in [0, 1)"),
    (["train.grad_accum_steps=3", "train.batch_size=16"],
     "train.grad_accum_steps: expected a divisor of train.batch_size"),
    (["train.milestones=[11]"], "train.milestones: expected epochs in [1, 10]"),
    (["data.subset_seed=-1"], "data.subset_seed: expected an integer in [0, 2**32)"),
    (["seed=-3"], "seed: expected a non-negative integer"),
    (["device=gpu"], "device: expected auto, cpu, cuda or cuda:N"),
    # a start epoch past the end (or before the start) of the run, for FCC and every *start_epoch part param
    (["fcc.start_epoch=11"], "fcc.start_epoch: expected the first active epoch, in [1, train.epochs=10], got 11"),
    (["fcc.start_epoch=0"], "fcc.start_epoch: expected the first active epoch, in [1, train.epochs=10], got 0"),
    (["loss.name=ldam", "loss.params.drw_start_epoch=11"],
     "loss.params.drw_start_epoch: expected the first active epoch, in [1, train.epochs=10]"),
    (["loss.name=focal", "loss.params.drw_start_epoch=0"],
     "loss.params.drw_start_epoch: expected the first active epoch"),
    (["sampler.name=progressive", "sampler.params.drs_start_epoch=12"],
     "sampler.params.drs_start_epoch: expected the first active epoch"),
    # malformed override text and YAML values
    (["train.epochs"], "expected key.sub=value"),
    (["=3"], "is not a dotted key"),
    (["train.lr=[0.1"], "value is not valid YAML"),
    (["out=2001-02-30"], "value is not valid YAML"),  # PyYAML raises ValueError for this date
    (["out=!!int abc"], "value is not valid YAML"),
    (["data.root=!!timestamp x"], "value is not valid YAML"),  # ... and AttributeError for this one
    (["train.lr=" + "[" * 600], "value is not valid YAML"),  # ... and RecursionError
    (["train.lr=" + "9" * 400], "train.lr: expected float"),  # beyond the float range
])
def test_bad_config_is_a_config_error_naming_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [*SHORT, *overrides])
    assert message in str(err.value)


def test_unknown_key_in_a_file_names_file_and_key(tmp_path: Path) -> None:
    base = tmp_path / "_base.yaml"
    base.write_text("train:\n  epochs: 10\n  milestones: [8]\n  warmup_epochs: 1\n")
    cfg = tmp_path / "run.yaml"
    cfg.write_text("base: _base.yaml\nfcc:\n  enabled: true\n  gama: 0.5\n")
    with pytest.raises(ConfigError, match=rf"{cfg}: unknown key 'fcc.gama'; did you mean 'fcc.gamma'\?"):
        load_config(cfg)


def test_yaml_tags_cannot_run_code(tmp_path: Path) -> None:
    """Configs are read with yaml.safe_load: a python/object tag is an error, not a call."""
    marker = tmp_path / "pwned"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(f"out: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(cfg)
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(None, [f"out=!!python/object/apply:os.system ['touch {marker}']"])
    assert not marker.exists()


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.backbone_params={depth: 7, width: 4}"],
     "model.backbone_params: backbone 'resnet_cifar' rejects these parameters: CIFAR ResNet depth must be 6n+2"),
    (["model.backbone_params={depth: 8, width: 0}"],
     "model.backbone_params: backbone 'resnet_cifar' rejects these parameters: CIFAR ResNet widths must be >= 1"),
    (["loss.name=focal", "loss.params.gamma=-1"], "loss.params.gamma: expected a non-negative number, got -1.0"),
    (["loss.name=class_balanced_ce", "loss.params.beta=1.5"], "loss.params.beta: expected a number in [0, 1)"),
    (["mix.name=mixup", "mix.params.alpha=-1"], "mix.params.alpha: expected a finite number > 0"),
    (["model.head=cosine", "model.head_params.scale=0"], "model.head_params.scale: expected a positive number"),
    (["data.imbalance_factor=100"], "data.imbalance_factor 100 leaves classes"),  # the fixture has 60 per class
])
def test_cli_rejects_bad_values_before_training(
        cifar10_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], overrides: list[str],
        message: str) -> None:
    """Values only a part's constructor (or the data) can check: still exit 2 and one line, and no
    epoch has been trained."""
    out = tmp_path / "run"
    assert cli.main(["train", *run_overrides(cifar10_root, out, *overrides)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert not any("Traceback" in line for line in err)
    assert not (out / "metrics.jsonl").exists() and not (out / "checkpoints" / "last.pt").exists()


# ------------------------------------------------------------------------ checkpoints that do not fit


def test_init_from_a_checkpoint_of_another_model_names_the_mismatch(cifar10_root: Path, tmp_path: Path) -> None:
    wider = load_config(None, run_overrides(cifar10_root, tmp_path / "x", "model.backbone_params={depth: 8, width: 8}"))
    ckpt = tmp_path / "wider.pt"
    save_checkpoint({"model": build_network(wider, 10).state_dict()}, ckpt)
    cfg = load_config(None, run_overrides(cifar10_root, tmp_path / "run", f"model.init_from={ckpt}"))
    with pytest.raises(CheckpointError) as err:
        Trainer(cfg)
    text = str(err.value)
    assert text.startswith(f"model.init_from {ckpt} does not fit the model: shape mismatch for ")
    assert "backbone.stem.0.weight: checkpoint (8, 3, 3, 3) vs model (4, 3, 3, 3)" in text


def test_init_from_a_checkpoint_with_other_classes_names_the_head(cifar10_root: Path, tmp_path: Path) -> None:
    cfg100 = load_config(None, run_overrides(cifar10_root, tmp_path / "x"))
    ckpt = tmp_path / "c100.pt"
    save_checkpoint({"model": build_network(cfg100, 100).state_dict()}, ckpt)
    cfg = load_config(None, run_overrides(cifar10_root, tmp_path / "run", f"model.init_from={ckpt}"))
    with pytest.raises(CheckpointError, match=r"head\.fc\.weight: checkpoint \(100, 16\) vs model \(10, 16\)"):
        Trainer(cfg)
    # the documented way out: leave the head at its initial values
    ok = load_config(None, run_overrides(cifar10_root, tmp_path / "run2", f"model.init_from={ckpt}",
                                         "model.init_exclude=[head]"))
    Trainer(ok)


@pytest.mark.parametrize(("override", "message"), [
    ("model.backbone_params={depth: 8, width: 8}", "does not fit the model: shape mismatch"),
    ("model.backbone_params={depth: 14, width: 4}", "does not fit the model: missing"),
    ("data.imbalance_factor=20", "saved for a training set with other class counts"),
])
def test_resume_with_a_changed_model_or_data_is_refused(
        cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], override: str, message: str) -> None:
    with one_thread():
        reference = inprocess_reference(cifar10_root, tmp_path_factory)
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    # the checkpoint itself refuses a network or training set other than its own ...
    with pytest.raises(CheckpointError, match=message):
        Trainer(load_run_config(run_dir, [override]), resume=True)
    # ... and the command refuses such an override before even reading it, naming the key
    assert cli.main(["train", "--resume", str(run_dir), override]) == 2
    err = capsys.readouterr().err
    key = override.split("=")[0]
    assert f"error: override {override!r}: {key} cannot change when resuming" in err and "Traceback" not in err


def test_init_from_missing_or_garbage_files(cifar10_root: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match=f"model.init_from: checkpoint not found: {missing}"):
        Trainer(load_config(None, run_overrides(cifar10_root, tmp_path / "a", f"model.init_from={missing}")))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match=f"{garbage}: a text file .*, not a checkpoint"):
        Trainer(load_config(None, run_overrides(cifar10_root, tmp_path / "b", f"model.init_from={garbage}")))


def test_resume_of_a_directory_that_is_no_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Also what a kill during start-up leaves: a run directory without its config."""
    (tmp_path / "checkpoints").mkdir()
    assert cli.main(["train", "--resume", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path} is not a run directory: {tmp_path / 'config.yaml'} is missing" in err
    assert "start it again from its config file" in err and "Traceback" not in err


def test_a_start_epoch_past_the_end_of_the_written_schedule_is_not_clamped_away(tmp_path: Path) -> None:
    """A shortened run rescales epoch keys; a value already outside the schedule it was written for must
    still be an error, not be clamped into range."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epochs: 200\n  schedule_epochs: 200\n  milestones: [160, 180]\n"
                   "fcc:\n  enabled: true\n  start_epoch: 250\n")
    with pytest.raises(ConfigError, match=r"fcc.start_epoch: expected an epoch in \[1, 200\] of the 200-epoch "
                                          r"schedule it is written for \(train.schedule_epochs\), got 250"):
        load_config(cfg, ["train.epochs=10"])
    cfg.write_text("train:\n  epochs: 200\n  schedule_epochs: 200\n  milestones: [160, 180]\n"
                   "loss:\n  name: ldam\n  params: {drw_start_epoch: 0}\n")
    with pytest.raises(ConfigError, match=r"loss.params.drw_start_epoch: expected an epoch in \[1, 200\]"):
        load_config(cfg, ["train.epochs=10"])
    cfg.write_text("train:\n  epochs: 200\n  schedule_epochs: 200\n  milestones: [160, 180]\n"
                   "fcc:\n  enabled: true\n  start_epoch: 101\n")
    loaded = load_config(cfg, ["train.epochs=10"])  # in range: rescaled as documented
    assert (loaded.fcc.start_epoch, loaded.train.milestones) == (6, [9, 10])  # 1 + round(100 * 10 / 200), ...


def test_every_fcc_error_from_the_console_script_is_one_line_without_traceback(tmp_path: Path) -> None:
    """The real `python -m fcc_lt` process: exit status 2, the message on stderr, nothing on stdout."""
    done = subprocess.run([sys.executable, "-m", "fcc_lt", "train", "trian.epochs=3"], capture_output=True,
                          text=True, env=env(), timeout=300)
    assert done.returncode == 2
    assert done.stderr == ("error: override 'trian.epochs=3': unknown key 'trian.epochs'; "
                           "did you mean 'train.epochs'?\n")
    assert done.stdout == ""


def test_error_types_carry_their_exit_codes() -> None:
    assert ConfigError.exit_code == CheckpointError.exit_code == FccError.exit_code == 2
    assert issubclass(ConfigError, FccError) and issubclass(CheckpointError, FccError)
