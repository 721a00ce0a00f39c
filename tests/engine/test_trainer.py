"""The trainer: resume equality, FCC in a real run, the run directory's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import tiny_run_overrides
from fcc_lt.config.load import load_config
from fcc_lt.engine.signals import TrainingInterrupted
from fcc_lt.engine.trainer import Trainer
from fcc_lt.evaluation.run_loader import load_run_config
from fcc_lt.models.checkpoint_file import load_checkpoint
from fcc_lt.util.errors import ConfigError, OutputError


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def straight_run(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("straight") / "run"
    cfg = load_config(None, tiny_run_overrides(cifar10_root, out, "train.epochs=3", "fcc.enabled=true",
                                               "fcc.start_epoch=2"))
    trainer = Trainer(cfg)
    trainer.fit()
    return out, weights(trainer)


@pytest.mark.parametrize(("stop_epoch", "stop_step"), [(2, 4), (1, 14)])  # mid-epoch, and at an epoch's last step
def test_stopped_and_resumed_run_ends_with_identical_weights(
        straight_run: tuple[Path, dict], cifar10_root: Path, tmp_path: Path, stop_epoch: int, stop_step: int) -> None:
    straight_dir, straight_weights = straight_run
    out = tmp_path / "run"
    cfg = load_config(None, tiny_run_overrides(cifar10_root, out, "train.epochs=3", "fcc.enabled=true",
                                               "fcc.start_epoch=2"))
    trainer = Trainer(cfg)
    steps = trainer.train_loader.steps_per_epoch(1)
    assert steps == 15  # fixture: 240 long-tailed images (60 * 10^(-k/9) per class), batch 16, drop_last

    def stop(t: Trainer, epoch: int, step: int) -> None:
        if (epoch, step) == (stop_epoch, stop_step):
            t.request_stop()

    trainer.step_callback = stop
    with pytest.raises(TrainingInterrupted, match="stopped by SIGTERM; checkpoint saved") as err:
        trainer.fit()
    assert err.value.exit_code == 128 + 15
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    if stop_step + 1 < steps:
        assert (state["next_epoch"], state["next_step"]) == (stop_epoch, stop_step + 1)
    else:
        assert (state["next_epoch"], state["next_step"]) == (stop_epoch + 1, 0)

    resumed = Trainer(load_run_config(out), resume=True)
    resumed.fit()
    assert same(weights(resumed), straight_weights)
    ours, theirs = metrics(out), metrics(straight_dir)
    assert [m["epoch"] for m in ours] == [1, 2, 3]
    for a, b in zip(ours, theirs):
        assert a["train_loss"] == b["train_loss"] and a["test_top1"] == b["test_top1"]
    assert json.loads((out / "eval.json").read_text())["top1"] == json.loads(
        (straight_dir / "eval.json").read_text())["top1"]


def test_fcc_changes_training_only_from_its_start_epoch(cifar10_root: Path, tmp_path: Path) -> None:
    runs = {}
    for name, extra in (("plain", []), ("fcc", ["fcc.enabled=true", "fcc.gamma=0.9", "fcc.start_epoch=2"])):
        cfg = load_config(None, tiny_run_overrides(cifar10_root, tmp_path / name, *extra))
        Trainer(cfg).fit()
        runs[name] = metrics(tmp_path / name)
    assert runs["plain"][0]["train_loss"] == runs["fcc"][0]["train_loss"]  # epoch 1: FCC not active yet
    assert runs["plain"][0]["test_top1"] == runs["fcc"][0]["test_top1"]
    assert runs["plain"][1]["train_loss"] != runs["fcc"][1]["train_loss"]  # epoch 2: features scaled


def test_run_directory_contents(straight_run: tuple[Path, dict]) -> None:
    out, _ = straight_run
    names = {p.name for p in out.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "checkpoints", "eval.json", "confusion.csv", "confusion.png"} <= names
    assert not list(out.glob("checkpoints/.*tmp*"))
    cfg = load_run_config(out)
    assert cfg.fcc.enabled and cfg.train.epochs == 3
    lines = metrics(out)
    assert set(lines[0]) >= {"epoch", "lr", "train_loss", "train_acc", "test_top1", "epoch_time", "images_per_s"}
    result = json.loads((out / "eval.json").read_text())
    assert {"top1", "top5", "many", "medium", "few", "per_class"} <= set(result)
    assert result["checkpoint"] == "checkpoints/last.pt" and result["epoch"] == 3 and result["split"] == "test"
    assert result["top1"] == lines[-1]["test_top1"]  # the final eval is the last epoch's model
    assert len((out / "confusion.csv").read_text().splitlines()) == 11


def test_existing_run_is_not_overwritten(straight_run: tuple[Path, dict], cifar10_root: Path) -> None:
    out, _ = straight_run
    cfg = load_config(None, tiny_run_overrides(cifar10_root, out))
    with pytest.raises(OutputError, match="already holds a run"):
        Trainer(cfg)


def test_validation_split_keeps_best_checkpoint(cifar10_root: Path, tmp_path: Path) -> None:
    cfg = load_config(None, tiny_run_overrides(cifar10_root, tmp_path / "run", "data.val_per_class=2",
                                               "eval.checkpoint=best"))
    result = Trainer(cfg).fit()
    lines = metrics(tmp_path / "run")
    best_epoch = max(range(len(lines)), key=lambda i: (lines[i]["val_top1"], -i)) + 1
    assert result["checkpoint"] == "checkpoints/best.pt" and result["epoch"] == best_epoch
    assert result["selected_on"].startswith("validation split")
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert state["best"]["epoch"] == best_epoch


def test_tensorboard_events_or_a_clear_error(cifar10_root: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorboard")
    cfg = load_config(None, tiny_run_overrides(cifar10_root, tmp_path / "tb", "train.epochs=1",
                                               "train.milestones=[]", "train.tensorboard=true"))
    Trainer(cfg).fit()
    events = list((tmp_path / "tb" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
    # without the package: one ConfigError that says how to get it
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    cfg = load_config(None, tiny_run_overrides(cifar10_root, tmp_path / "tb2", "train.tensorboard=true"))
    with pytest.raises(ConfigError, match=r"pip install 'fcc-lt\[tensorboard\]'"):
        Trainer(cfg)
