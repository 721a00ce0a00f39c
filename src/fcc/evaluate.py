"""Evaluation of a model on a split, and the files a run directory keeps about it.

``eval.json`` holds top1, top5, many, medium, few, per_class (percentages), which checkpoint and epoch
were evaluated, and on which split; ``confusion.csv`` (and ``confusion.png`` up to
``eval.confusion_png_max_classes`` classes) hold the confusion matrix.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from fcc.checkpoint import atomic_write_bytes, atomic_write_text, load_checkpoint, load_model_state, run_checkpoint
from fcc.config import Config
from fcc.data.build import build_eval_loader, build_splits
from fcc.data.datasets import DataSplits
from fcc.data.loader import EvalLoader
from fcc.distributed import DistContext, barrier, setup
from fcc.metrics import ClassificationTally, FeatureTally, feature_summary, summarize
from fcc.precision import autocast, autocast_dtype


@torch.no_grad()
def run_eval(model: nn.Module, loader: EvalLoader, num_classes: int, ctx: DistContext,
             amp_dtype: torch.dtype | None = None, transform_logits: Any = None) -> ClassificationTally:
    """Tally predictions over this rank's share of the split, then sum across ranks."""
    was_training = model.training
    model.eval()
    tally = ClassificationTally(num_classes, ctx.device)
    try:
        for images, labels in loader:
            with autocast(ctx.device, amp_dtype):
                logits = model(images)
            logits = logits.float()
            if transform_logits is not None:
                logits = transform_logits(logits)
            tally.update(logits, labels)
    finally:
        model.train(was_training)
    return tally.all_reduce(ctx)


@torch.no_grad()
def run_feature_stats(model: nn.Module, loader: EvalLoader, num_classes: int, ctx: DistContext,
                      amp_dtype: torch.dtype | None = None) -> FeatureTally:
    """Tally the pooled, unscaled features (``Network.features``) of this rank's share, summed over ranks."""
    net = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    was_training = net.training
    net.eval()
    tally: FeatureTally | None = None
    try:
        for images, labels in loader:
            with autocast(ctx.device, amp_dtype):
                features = net.features(images)
            if tally is None:
                tally = FeatureTally(num_classes, features.shape[1], ctx.device)
            tally.update(features.float(), labels)
    finally:
        net.train(was_training)
    if tally is None:
        raise ValueError("feature statistics of an empty split")
    return tally.all_reduce(ctx)


def write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    atomic_write_text(path, text)


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


def evaluate_to_files(run_dir: Path, cfg: Config, model: nn.Module, splits: DataSplits, ctx: DistContext, *,
                      split: str, info: dict[str, Any], amp_dtype: torch.dtype | None = None,
                      loader: EvalLoader | None = None, stem: str = "eval") -> dict[str, Any]:
    """Evaluate ``model`` on ``split`` and write ``<stem>.json`` plus confusion files (rank 0)."""
    loader = loader or build_eval_loader(cfg, splits, splits.split(split), ctx)
    if cfg.eval.tau_norm is not None:
        from fcc.tau_norm import tau_normalized_network

        model = tau_normalized_network(model, cfg.eval.tau_norm)
        info = {**info, "tau_norm": cfg.eval.tau_norm}
    tally = run_eval(model, loader, splits.num_classes, ctx, amp_dtype)
    result: dict[str, Any] = {}
    if ctx.is_main:
        e = cfg.eval
        selected = "validation split (best.pt)" if info.get("checkpoint", "").endswith("best.pt") else \
            "none: the checkpoint's own epoch"
        info = {**info, "split": split, "selected_on": selected, "units": "percent"}
        result = write_eval_outputs(run_dir, tally, splits.class_counts, splits.class_names, info,
                                    many_min=e.many_shot_min, few_max=e.few_shot_max,
                                    png_max_classes=e.confusion_png_max_classes, stem=stem)
        tqdm.write(f"{split} ({info['checkpoint']}, epoch {info.get('epoch')}): {format_summary(result)}")
    barrier(ctx)
    return result


def load_run_model(run_dir: Path, cfg: Config, checkpoint: str = "last"
                   ) -> tuple[DistContext, DataSplits, nn.Module, dict[str, Any]]:
    """Rebuild a run's data and network and load ``checkpoint`` ('last', 'best' or a file).

    Returns the context, the splits, the model on the device and {checkpoint, epoch} for the eval files.
    """
    from fcc.models import build_network

    ctx = setup(cfg.device)
    splits = build_splits(cfg)
    model = build_network(cfg, splits.class_counts)
    path = run_checkpoint(run_dir, checkpoint)
    state = load_checkpoint(path, map_location="cpu")
    load_model_state(model, state["model"], str(path))
    model.to(ctx.device)
    epoch = int(state["next_epoch"]) - 1 if "next_epoch" in state else None
    if state.get("next_step"):
        epoch = f"{state['next_epoch']} (stopped after step {state['next_step']})"
    try:
        shown = str(path.resolve().relative_to(run_dir.resolve()))
    except ValueError:
        shown = str(path)
    return ctx, splits, model, {"checkpoint": shown, "epoch": epoch}


def feature_stats_run(run_dir: Path, cfg: Config, checkpoint: str = "last", split: str = "test") -> dict[str, Any]:
    """`fcc eval --features`: cluster statistics of a checkpoint's features -> features[_<ckpt>_<split>].json."""
    ctx, splits, model, info = load_run_model(run_dir, cfg, checkpoint)
    loader = build_eval_loader(cfg, splits, splits.split(split), ctx)
    tally = run_feature_stats(model, loader, splits.num_classes, ctx, autocast_dtype(cfg.train.amp, ctx.device))
    result: dict[str, Any] = {}
    if ctx.is_main:
        e = cfg.eval
        result = {**info, "split": split,
                  **feature_summary(tally, splits.class_counts, e.many_shot_min, e.few_shot_max)}
        default = checkpoint == "last" and split == "test"
        write_json(run_dir / ("features.json" if default else f"features_{Path(checkpoint).stem}_{split}.json"),
                   result)
        tqdm.write(f"{split} features ({info['checkpoint']}): mean norm {result['mean_norm']:.4g}, within-class "
                   f"spread {result['within_class_spread']:.4g}, centroid separation "
                   f"{result['centroid_separation']:.4g}, compactness {result['compactness']:.4g}")
    barrier(ctx)
    return result


def evaluate_run(run_dir: Path, cfg: Config, checkpoint: str = "last", split: str = "test") -> dict[str, Any]:
    """`fcc eval`: rebuild a run's data and network, load a checkpoint, write the eval files.

    The default (last checkpoint, test split, no tau-normalisation) writes eval.json; any other choice
    writes eval_<checkpoint>_<split>[_tau<t>].json so the run's own final numbers are never overwritten.
    """
    ctx, splits, model, info = load_run_model(run_dir, cfg, checkpoint)
    tau = cfg.eval.tau_norm
    default = checkpoint == "last" and split == "test" and tau is None
    stem = "eval" if default else f"eval_{Path(checkpoint).stem}_{split}" + (f"_tau{tau:g}" if tau is not None else "")
    return evaluate_to_files(run_dir, cfg, model, splits, ctx, split=split, info=info,
                             amp_dtype=autocast_dtype(cfg.train.amp, ctx.device), stem=stem)
