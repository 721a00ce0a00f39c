"""Experiment trackers (train.tracker): MLflow's local file store and W&B offline, both without network.
What the tracker holds is read back and compared with the run's own metrics.jsonl and eval.json."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from conftest import tiny_run_overrides
from fcc_lt.config.load import load_config
from fcc_lt.engine.signals import TrainingInterrupted
from fcc_lt.engine.trainer import Trainer
from fcc_lt.util.errors import ConfigError


def test_mlflow_file_store_holds_the_config_every_epoch_and_the_final_result(
        cifar10_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = (tmp_path / "mlruns").as_uri()
    out = tmp_path / "run"
    overrides = tiny_run_overrides(cifar10_root, out, "train.tracker=mlflow", f"train.tracker_uri={store}",
                                   "train.tracker_project=lt-study", "fcc.enabled=true")
    trainer = Trainer(load_config(None, [*overrides, "train.epochs=3", "train.milestones=[3]"]))
    trainer.step_callback = lambda t, epoch, step: t.request_stop() if (epoch, step) == (2, 3) else None
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    run_id = json.loads((out / "tracker.json").read_text())["run_id"]
    client = MlflowClient(store)
    assert client.get_run(run_id).info.status == "KILLED"
    # resumed: the same MLflow run continues
    Trainer(load_config(out / "config.yaml"), resume=True).fit()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "lt-study"
    assert run.data.params["fcc.enabled"] == "True" and run.data.params["train.batch_size"] == "16"
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    history = client.get_metric_history(run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [(m["epoch"], m["train_loss"]) for m in lines]
    result = json.loads((out / "eval.json").read_text())
    assert run.data.metrics["final/top1"] == pytest.approx(result["top1"])
    assert result["many"] is None and "final/many" not in run.data.metrics  # no many-shot class: not logged
    assert run.data.metrics["final/medium"] == pytest.approx(result["medium"])


def test_wandb_offline_run_records_the_metrics(cifar10_root: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline is fcc's default: no network, no account
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    Trainer(load_config(None, tiny_run_overrides(cifar10_root, out, "train.tracker=wandb"))).fit()
    ids = json.loads((out / "tracker.json").read_text())
    assert ids["tracker"] == "wandb" and ids["mode"] == "offline"
    runs = list((out / "wandb").glob(f"offline-run-*-{ids['run_id']}"))
    assert len(runs) == 1
    log = runs[0] / f"run-{ids['run_id']}.wandb"
    keys = (b"train_loss", b"test_top1", b"final/top1", b"batch_size")
    deadline = time.monotonic() + 60  # W&B's service process may still be writing its log after finish()
    while not all(k in log.read_bytes() for k in keys) and time.monotonic() < deadline:
        time.sleep(0.5)
    data = log.read_bytes()
    for key in keys:
        assert key in data, key  # W&B's offline log (protobuf records) names every logged key


def test_a_missing_tracker_package_is_named_before_training(cifar10_root: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow fails as if it were not installed
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    out = tmp_path / "run"
    needs = r"train\.tracker: mlflow needs the mlflow package; pip install 'fcc-lt\[mlflow\]'"
    with pytest.raises(ConfigError, match=needs):
        Trainer(load_config(None, tiny_run_overrides(cifar10_root, out, "train.tracker=mlflow")))
    assert not out.exists()
    with pytest.raises(ConfigError, match=r"train\.tracker_uri: an MLflow tracking URI"):
        load_config(None, ["train.tracker_uri=file:///x"])


class FailingTracker:
    """A tracker that started fine and fails at every call afterwards (its store filled up)."""

    calls: list[str]

    def __init__(self) -> None:
        self.calls = []

    def _fail(self, what: str) -> None:
        self.calls.append(what)
        raise OSError(28, f"No space left on device (tracker {what})")

    def log(self, record: dict) -> None:
        self._fail("log")

    def final(self, result: dict) -> None:
        self._fail("final")

    def close(self, status: str) -> None:
        self._fail("close")


def test_a_tracker_failing_after_start_up_is_a_warning_and_the_run_finishes(
        cifar10_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import fcc_lt.engine.trackers
    from fcc_lt.cli.main import main

    tracker = FailingTracker()
    monkeypatch.setattr(fcc_lt.engine.trackers, "build_tracker", lambda run_dir, cfg, resuming: tracker)
    out = tmp_path / "run"
    assert main(["train", *tiny_run_overrides(cifar10_root, out, "train.tracker=mlflow")]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    warned = [line for line in err.splitlines() if line.startswith("warning: train.tracker=mlflow failed")]
    assert len(warned) == 1 and "No space left on device (tracker log)" in warned[0]
    assert tracker.calls == ["log"]  # dropped after its first failure: the run went on without it
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert json.loads((out / "eval.json").read_text())["epoch"] == 2
