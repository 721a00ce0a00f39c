"""What state a run directory is in, read from its files alone (no torch import, no dataset).

Used by `fcc report` (unfinished runs are listed, not fatal), `fcc sweep` (finished runs are skipped,
interrupted ones resumed) and `fcc eval` (a run still training is not evaluated).

States:
- ``running``: another process holds the run directory's lock (``RUN/.lock``, see fcc_lt.util.run_lock);
- ``finished``: ``eval.json`` exists and ``metrics.jsonl`` reached the config's last epoch;
- ``stopped``: a checkpoint or epoch lines exist but the run did not finish (resume it);
- ``empty``: a config was written but nothing was trained yet;
- ``missing``: not a run directory (no ``config.yaml``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fcc_lt.util.run_lock import is_locked

STATES = ("running", "finished", "stopped", "empty", "missing")


@dataclass(frozen=True)
class RunStatus:
    state: str
    epoch: int | None = None  # the last epoch with a line in metrics.jsonl
    epochs: int | None = None  # train.epochs of the run's config
    detail: str = ""

    @property
    def finished(self) -> bool:
        return self.state == "finished"


def last_epoch(metrics_path: Path) -> int | None:
    """The largest epoch of the complete lines of a metrics.jsonl (a line cut by a kill is ignored)."""
    best: int | None = None
    try:
        text = Path(metrics_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        try:
            epoch = json.loads(line).get("epoch")
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(epoch, int) and not isinstance(epoch, bool):
            best = epoch if best is None else max(best, epoch)
    return best


def read_config(run_dir: Path) -> dict[str, Any] | None:
    """The run's resolved config.yaml as a mapping, or None when absent or unreadable."""
    try:
        data = yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def run_status(run_dir: Path) -> RunStatus:
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    if cfg is None:
        return RunStatus("missing", detail=f"{run_dir}: no readable config.yaml")
    epochs = (cfg.get("train") or {}).get("epochs")
    epochs = epochs if isinstance(epochs, int) else None
    epoch = last_epoch(run_dir / "metrics.jsonl")
    if is_locked(run_dir):
        return RunStatus("running", epoch, epochs, "in use by another fcc process")
    if (run_dir / "eval.json").is_file() and epoch is not None and epochs is not None and epoch >= epochs:
        return RunStatus("finished", epoch, epochs)
    if epoch is not None or (run_dir / "checkpoints" / "last.pt").is_file():
        return RunStatus("stopped", epoch, epochs, f"stopped after epoch {epoch or 0} of {epochs}")
    return RunStatus("empty", None, epochs, "nothing trained yet")
