"""The files a run directory keeps about an evaluation (written by rank 0 only).

``eval.json`` (the training run's own final evaluation; `fcc eval` writes
``eval_<checkpoint>_<split>[_tau<t>].json`` instead, so it never replaces it) holds top1, top5, many, medium,
few, per_class (percentages), the protocol's training counts the shot groups were taken from, which
checkpoint and epoch were evaluated, and on which split; ``confusion.csv`` (and ``confusion.png`` up to
``eval.confusion_png_max_classes`` classes) hold the confusion matrix; ``features.json`` and
``features.npz`` hold feature-cluster statistics and the raw pooled test features.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from fcc_lt.evaluation.metrics import ClassificationTally, summarize
from fcc_lt.util.files import atomic_write_bytes, atomic_write_text, write_json


def write_confusion(run_dir: Path, stem: str, confusion: Tensor, class_names: Sequence[str],
                    png_max_classes: int) -> list[str]:
    """confusion CSV (rows true, columns predicted) and a PNG for small class counts."""
    written = []
    header = "true\\pred," + ",".join(name.replace(",", " ") for name in class_names)
    rows = [header] + [
        f"{class_names[i].replace(',', ' ')}," + ",".join(str(v) for v in row)
        for i, row in enumerate(confusion.tolist())
    ]
    csv_path = run_dir / f"{stem}.csv"
    text = "\n".join(rows) + "\n"
    atomic_write_text(csv_path, text)
    written.append(csv_path.name)
    if len(class_names) <= png_max_classes:
        png_path = run_dir / f"{stem}.png"
        plot_confusion(confusion, class_names, png_path)
        written.append(png_path.name)
    return written


def plot_confusion(confusion: Tensor, class_names: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = len(class_names)
    totals = confusion.sum(dim=1, keepdim=True).clamp(min=1)
    rates = (confusion.double() / totals).numpy()
    size = min(4 + 0.35 * c, 24)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if c <= 20:
        ax.set_xticks(range(c), labels=class_names, rotation=90)
        ax.set_yticks(range(c), labels=class_names)
        for i in range(c):
            for j in range(c):
                if confusion[i, j]:
                    ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rates[i, j] > 0.5 else "black")
    fig.tight_layout()
    atomic_write_bytes(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)


def write_eval_outputs(run_dir: Path, tally: ClassificationTally, train_counts: Sequence[int],
                       class_names: Sequence[str], info: dict[str, Any], *, many_min: int = 101,
                       few_max: int = 19, png_max_classes: int = 100, stem: str = "eval") -> dict[str, Any]:
    """Summarise ``tally`` and write ``<stem>.json`` and the confusion files; returns the summary."""
    summary = summarize(tally, train_counts, many_min, few_max)
    result = {**info, **summary, "class_names": list(class_names), "train_counts": list(train_counts)}
    confusion = tally.confusion_matrix()
    if confusion is not None:
        cstem = "confusion" if stem == "eval" else f"confusion_{stem.removeprefix('eval_')}"
        result["confusion_files"] = write_confusion(run_dir, cstem, confusion, class_names, png_max_classes)
    write_json(run_dir / f"{stem}.json", result)
    return result


def format_summary(result: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "  n/a" if v is None else f"{v:5.2f}"

    return (f"top1 {pct(result['top1'])}  top5 {pct(result['top5'])}  many {pct(result['many'])}  "
            f"medium {pct(result['medium'])}  few {pct(result['few'])}")


def format_features(result: dict[str, Any]) -> str:
    """The feature statistics `fcc report` shows (spread ratio overall and by shot group, feature norm) and
    compactness, in one line."""
    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4g}"

    groups = result.get("spread_ratio_by_group") or {}
    return (f"spread ratio {num(result.get('mean_spread_ratio'))} (many {num(groups.get('many'))}, medium "
            f"{num(groups.get('medium'))}, few {num(groups.get('few'))}), feature norm {num(result.get('mean_norm'))}, "
            f"compactness {num(result.get('compactness'))}")


def write_features_npz(path: Path, features: Tensor, labels: Tensor, train_counts: Sequence[int],
                       class_names: Sequence[str]) -> None:
    """The pooled, unscaled features of a split for users' own analysis: features (N, D) float32,
    labels (N,) int64, train_counts (C,) int64 (the protocol's), class_names (C,) str."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, features=features.float().cpu().numpy(), labels=labels.long().cpu().numpy(),
                        train_counts=np.asarray(list(train_counts), dtype=np.int64),
                        class_names=np.asarray(list(class_names), dtype=str))
    data = buffer.getbuffer()
    atomic_write_bytes(path, lambda f: f.write(data))
