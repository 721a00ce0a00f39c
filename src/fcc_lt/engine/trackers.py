"""Experiment trackers researchers use, besides metrics.jsonl and tensorboard: MLflow and Weights & Biases.

Chosen by ``train.tracker`` (none, mlflow, wandb); each is an optional extra (``pip install
'fcc-lt[mlflow]'`` / ``'fcc-lt[wandb]'``) and is checked when the run starts, not after its first epoch. Both
work without a network: MLflow writes its local file store (``./mlruns`` unless ``train.tracker_uri``
says otherwise), W&B runs offline unless WANDB_MODE says otherwise (``wandb sync`` uploads later). A
resumed run continues the same tracker run (its id is kept in ``RUN/tracker.json``).

What is logged: the resolved config as parameters (dotted keys), every epoch record as metrics at
step = epoch, and the final evaluation (``final/top1``, ``final/many``, ...).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fcc_lt.config.schema import Config, flat_keys
from fcc_lt.util.errors import ConfigError, FccError
from fcc_lt.util.files import atomic_write_text, read_input

FINAL_KEYS = ("top1", "top5", "mean_class", "many", "medium", "few")


def numbers(record: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric entries of a record (None, strings and NaN are not metrics)."""
    return {k: float(v) for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _missing(package: str, extra: str) -> ConfigError:
    return ConfigError(f"train.tracker: {extra} needs the {package} package; pip install 'fcc-lt[{extra}]' (or "
                       "set train.tracker=none)")


class _IdFile:
    """RUN/tracker.json: which tracker run this run directory logs to (so that a resume continues it)."""

    def __init__(self, run_dir: Path, kind: str) -> None:
        self.path = Path(run_dir) / "tracker.json"
        self.kind = kind

    def read(self) -> str | None:
        try:
            if not self.path.exists():
                return None
            data = json.loads(read_input(self.path, "tracker id file", max_bytes=1 << 20))
        except (FccError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        return data.get("run_id") if isinstance(data, dict) and data.get("tracker") == self.kind else None

    def write(self, run_id: str, **extra: Any) -> None:
        atomic_write_text(self.path, json.dumps({"tracker": self.kind, "run_id": run_id, **extra}, indent=2) + "\n")


class MlflowTracker:
    def __init__(self, run_dir: Path, cfg: Config, *, resuming: bool) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise _missing("mlflow", "mlflow") from None
        uri = cfg.train.tracker_uri or Path("mlruns").resolve().as_uri()
        if uri.startswith("file:"):
            # MLflow keeps its local file store in "maintenance mode" behind this switch; it is the store
            # that needs no server or database, which is what a training run on any machine can count on
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            self.client = MlflowClient(tracking_uri=uri)
            project = cfg.train.tracker_project
            experiment = self.client.get_experiment_by_name(project)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(project)
            ids = _IdFile(run_dir, "mlflow")
            self.run_id = ids.read() if resuming else None
            if self.run_id is None:
                run = self.client.create_run(experiment_id, run_name=Path(run_dir).name,
                                             tags={"fcc_lt.engine.run_dir": str(Path(run_dir).resolve())})
                self.run_id = run.info.run_id
                ids.write(self.run_id, tracking_uri=uri, experiment=project)
            else:
                self.client.update_run(self.run_id, status="RUNNING")
            self._log_params(cfg)
        except Exception as err:  # MLflow raises its own types for unusable URIs and stores
            raise ConfigError(f"train.tracker: mlflow at {uri}: {type(err).__name__}: {err}") from None

    def _log_params(self, cfg: Config) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params
        params = [Param(k, str(v)[:500]) for k, v in flat_keys(cfg.to_dict()).items()
                  if k not in existing or existing[k] == str(v)[:500]]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[start:start + 100])

    def log(self, record: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        step = int(record.get("epoch", 0))
        metrics = [Metric(k, v, stamp, step) for k, v in numbers(record).items() if k != "epoch"]
        self.client.log_batch(self.run_id, metrics=metrics)

    def final(self, result: Mapping[str, Any]) -> None:
        self.log({"epoch": result.get("epoch") or 0,
                  **{f"final/{k}": result.get(k) for k in FINAL_KEYS}})

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, {"finished": "FINISHED", "failed": "FAILED"}.get(status, "KILLED"))


class WandbTracker:
    def __init__(self, run_dir: Path, cfg: Config, *, resuming: bool) -> None:
        try:
            import wandb
        except ImportError:
            raise _missing("wandb", "wandb") from None
        ids = _IdFile(run_dir, "wandb")
        run_id = ids.read() if resuming else None
        mode = os.environ.get("WANDB_MODE", "offline")
        try:
            self.run = wandb.init(project=cfg.train.tracker_project, name=Path(run_dir).name, dir=str(run_dir),
                                  config=cfg.to_dict(), id=run_id, resume="allow" if run_id else None, mode=mode,
                                  reinit="create_new")
        except Exception as err:  # wandb raises many types (network, auth, bad settings)
            raise ConfigError(f"train.tracker: wandb ({mode}): {type(err).__name__}: {err}") from None
        if run_id is None:
            ids.write(self.run.id, mode=mode, project=cfg.train.tracker_project)

    def log(self, record: Mapping[str, Any]) -> None:
        values = numbers(record)
        step = int(values.pop("epoch", 0))
        self.run.log(values, step=step)

    def final(self, result: Mapping[str, Any]) -> None:
        values = {f"final/{k}": v for k, v in numbers({k: result.get(k) for k in FINAL_KEYS}).items()}
        step = result.get("epoch")
        self.run.log(values, step=step if isinstance(step, int) else None)  # in the history, as MLflow has it
        for key, value in values.items():
            self.run.summary[key] = value

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "finished" else 1)


def build_tracker(run_dir: Path, cfg: Config, *, resuming: bool) -> MlflowTracker | WandbTracker | None:
    kind = cfg.train.tracker
    if kind == "mlflow":
        return MlflowTracker(run_dir, cfg, resuming=resuming)
    if kind == "wandb":
        return WandbTracker(run_dir, cfg, resuming=resuming)
    return None
