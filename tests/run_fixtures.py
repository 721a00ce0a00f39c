"""Fabricated run directories (config.yaml, metrics.jsonl, eval.json, features.json, confusion.csv,
features.npz) for report and plot tests: no training needed."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fcc_lt.config.schema import Config


def _shot_mean(per_class: Sequence[float | None], counts: Sequence[int], group: str) -> float | None:
    members = [p for p, n in zip(per_class, counts) if p is not None and
               {"many": n > 100, "medium": 20 <= n <= 100, "few": n < 20}[group]]
    return sum(members) / len(members) if members else None


def make_run(path: Path, *, seed: int = 0, fcc: bool = False, gamma: float = 0.5, epochs: int = 4,
             done_epochs: int | None = None, top1: float = 70.0, top5: float = 95.0,
             per_class: Sequence[float | None] = (90.0, 60.0, 30.0), train_counts: Sequence[int] = (500, 50, 5),
             class_names: Sequence[str] | None = None, evaluated: bool = True,
             features: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None) -> Path:
    """A run directory as `fcc train` leaves it; ``done_epochs`` < ``epochs`` makes it a stopped run."""
    cfg = Config().to_dict()
    cfg["seed"], cfg["out"] = seed, str(path)
    cfg["train"]["epochs"] = epochs
    cfg["fcc"].update(enabled=fcc, gamma=gamma)
    for dotted, value in (overrides or {}).items():
        *parents, leaf = dotted.split(".")
        node = cfg
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    done = epochs if done_epochs is None else done_epochs
    lines = [json.dumps({"epoch": e, "lr": 0.1 * 0.5 ** (e - 1), "train_loss": 2.0 / e, "train_acc": 20.0 + 10 * e,
                         "test_top1": 15.0 + 10 * e, "epoch_time": 1.0, "images_per_s": 100.0})
             for e in range(1, done + 1)]
    (path / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    if evaluated and done == epochs:
        names = list(class_names) if class_names is not None else [f"class{c}" for c in range(len(per_class))]
        present = [p for p in per_class if p is not None]
        result = {"top1": top1, "top5": top5, "mean_class": sum(present) / len(present),
                  **{g: _shot_mean(per_class, train_counts, g) for g in ("many", "medium", "few")},
                  "per_class": list(per_class), "num_samples": 100 * len(per_class), "class_names": names,
                  "train_counts": list(train_counts), "checkpoint": "checkpoints/last.pt", "epoch": epochs,
                  "split": "test"}
        (path / "eval.json").write_text(json.dumps(result))
    if features is not None:
        (path / "features.json").write_text(json.dumps(features))
    return path


def features_json(spread_ratio: Sequence[float], mean_norm: Sequence[float],
                  train_counts: Sequence[int]) -> dict[str, Any]:
    """A features.json as `fcc eval --features` writes it (only what the report and plots read)."""
    groups: dict[str, list[float]] = {"many": [], "medium": [], "few": []}
    for r, n in zip(spread_ratio, train_counts):
        groups["many" if n > 100 else "few" if n < 20 else "medium"].append(r)
    return {"mean_spread_ratio": sum(spread_ratio) / len(spread_ratio),
            "spread_ratio_by_group": {k: (sum(v) / len(v) if v else None) for k, v in groups.items()},
            "compactness": 0.5, "mean_norm": sum(mean_norm) / len(mean_norm), "train_counts": list(train_counts),
            "per_class": {"spread_ratio": list(spread_ratio), "mean_norm": list(mean_norm)}}


def write_confusion(path: Path, matrix: np.ndarray, names: Sequence[str]) -> None:
    """confusion.csv in the format of `fcc eval`."""
    rows = ["true\\pred," + ",".join(names)]
    rows += [f"{names[i]}," + ",".join(str(int(v)) for v in row) for i, row in enumerate(matrix)]
    (Path(path) / "confusion.csv").write_text("\n".join(rows) + "\n")


def write_features_npz(path: Path, features: np.ndarray, labels: np.ndarray, train_counts: Sequence[int],
                       names: Sequence[str]) -> None:
    """features.npz in the format of `fcc eval --features`."""
    np.savez_compressed(Path(path) / "features.npz", features=features.astype(np.float32),
                        labels=labels.astype(np.int64), train_counts=np.asarray(train_counts, dtype=np.int64),
                        class_names=np.asarray(list(names), dtype=str))
