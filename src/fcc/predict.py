"""`fcc predict`: classify image files with a trained run, without needing its training data.

Everything comes from the run directory: the network from ``config.yaml``, the weights, class names and
class counts from the checkpoint, and the evaluation transform and normalisation of the run's data config
(CIFAR runs: the image resized to 32x32; image datasets: shorter side to size/ratio, centre crop).
Images are decoded by DataLoader workers, in the order given; the result is a CSV with the top-k classes
and their softmax probabilities per file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from fcc.checkpoint import atomic_write_text, load_checkpoint, load_model_state, run_checkpoint
from fcc.config import Config
from fcc.data.augment import Normalize
from fcc.data.cifar import cifar_mean_std
from fcc.data.image_loader import WorkerEvalLoader
from fcc.data.images import CenterResizeCrop, ImageFiles, eval_transform, image_mean_std, workers_for
from fcc.distributed import resolve_device
from fcc.errors import CheckpointError, DataError
from fcc.models import build_network
from fcc.precision import autocast, autocast_dtype

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def collect_images(inputs: Iterable[str]) -> list[str]:
    """Files as given, and the image files under given folders (sorted); errors name what is missing."""
    paths: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"{p}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
            paths.extend(found)
        elif p.is_file():
            paths.append(str(p))
        else:
            raise DataError(f"{p}: no such file or folder")
    return paths


def _transform_and_normalisation(cfg: Config) -> tuple[CenterResizeCrop, Sequence[float], Sequence[float]]:
    d = cfg.data
    if d.dataset in ("cifar10", "cifar100"):
        return CenterResizeCrop(32, 1.0, d.jpeg_draft), *cifar_mean_std(d)
    mean, std = image_mean_std(d)
    return eval_transform(d), mean, std


@torch.no_grad()
def predict(run_dir: Path, cfg: Config, inputs: Sequence[str], *, checkpoint: str = "last", top_k: int = 5,
            batch_size: int = 64) -> list[dict[str, Any]]:
    """Top-k predictions for every image of ``inputs``: [{path, classes: [...], names, probs}]."""
    path = run_checkpoint(run_dir, checkpoint)
    state = load_checkpoint(path, map_location="cpu")
    counts = state.get("class_counts")
    if not counts:
        raise CheckpointError(f"{path}: has no class counts (not written by fcc train); cannot rebuild the network")
    names = state.get("class_names") or [str(c) for c in range(len(counts))]
    model = build_network(cfg, counts)
    load_model_state(model, state["model"], str(path))
    device = resolve_device(cfg.device)
    model.to(device).eval()
    transform, mean, std = _transform_and_normalisation(cfg)
    paths = collect_images(inputs)
    files = ImageFiles(paths, torch.zeros(len(paths), dtype=torch.long), "the images to predict")
    loader = WorkerEvalLoader(files, batch_size, device, transform=transform, normalize=Normalize(mean, std),
                              workers=min(workers_for(cfg.data), 4))
    amp = autocast_dtype(cfg.train.amp, device)
    k = min(top_k, len(counts))
    rows: list[dict[str, Any]] = []
    for images, _ in loader:
        with autocast(device, amp):
            logits = model(images)
        probs, classes = logits.float().softmax(dim=1).topk(k, dim=1)
        for c, p in zip(classes.cpu().tolist(), probs.cpu().tolist()):
            rows.append({"classes": c, "names": [names[i] for i in c], "probs": p})
    for row, p in zip(rows, paths):
        row["path"] = p
    return rows


def write_csv(rows: Sequence[dict[str, Any]], out: Path) -> None:
    """path, then class, name and probability for each of the top k, one row per image."""
    k = len(rows[0]["classes"]) if rows else 0
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["path"] + [f"{what}{i + 1}" for i in range(k) for what in ("class", "name", "prob")])
    for row in rows:
        cells: list[Any] = [row["path"]]
        for c, n, p in zip(row["classes"], row["names"], row["probs"]):
            cells += [c, n, f"{p:.6f}"]
        writer.writerow(cells)
    atomic_write_text(out, buf.getvalue())
