"""`fcc predict`: classify image files with a trained run, without needing its training data.

Everything comes from the run directory through the run loader (``fcc_lt.evaluation.run_loader``): the network from
``config.yaml``, the weights and class names from the checkpoint, the tau-normalisation of
``eval.tau_norm`` (so predictions agree with the run's eval.json), and the evaluation transform and
normalisation of the run's data config (CIFAR runs: the image resized to 32x32; image datasets:
shorter side to size/ratio, centre crop). Images are decoded by DataLoader workers, in the order given;
the result is a CSV with the top-k classes and their softmax probabilities per file.
"""

from __future__ import annotations

import csv
import io
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from fcc_lt.config.schema import Config
from fcc_lt.data.augment import Normalize
from fcc_lt.data.cifar import cifar_mean_std
from fcc_lt.data.image_loader import _data_loader, _next, _Sequential, stop_workers
from fcc_lt.data.images import CenterResizeCrop, ImageFiles, eval_transform, image_mean_std, workers_for
from fcc_lt.evaluation.metrics import NonFiniteOutputs
from fcc_lt.evaluation.passes import nonfinite_hint
from fcc_lt.evaluation.run_loader import load_run, num_classes_of, refuse_while_training
from fcc_lt.util.distributed import resolve_device
from fcc_lt.util.errors import DataError, file_problem, path_problem, short_repr
from fcc_lt.util.files import atomic_write_text
from fcc_lt.util.precision import autocast, autocast_dtype

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def collect_images(inputs: Iterable[str]) -> list[str]:
    """Files as given, and the image files under given folders (sorted); errors name the input and say
    what it is instead (missing, a device or FIFO, a folder without images, an unusable name)."""
    paths: list[str] = []
    for item in inputs:
        problem = path_problem(item)
        if problem is not None:
            raise DataError(f"{short_repr(item, 80)} {problem}")
        p = Path(item)
        try:
            mode = os.stat(p).st_mode
        except FileNotFoundError:
            raise DataError(f"{p}: no such file or folder") from None
        except OSError as err:
            raise DataError(f"{p}: cannot be read: {err.strerror or err}") from None
        if stat.S_ISDIR(mode):
            try:
                found = sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            except OSError as err:
                raise DataError(f"{p}: cannot list this folder: {err.strerror or err}") from None
            if not found:
                raise DataError(f"{p}: a folder with no image files ({', '.join(sorted(IMAGE_SUFFIXES))}), "
                                "also in its subfolders")
            paths.extend(found)
        elif stat.S_ISREG(mode):
            paths.append(str(p))
        else:
            raise DataError(f"{p}: {file_problem(p)}, so it cannot be an image file")
    return paths


def transform_and_normalisation(cfg: Config) -> tuple[CenterResizeCrop, Sequence[float], Sequence[float]]:
    """A run's evaluation preprocessing: the image transform (resize, centre crop) and the mean / std."""
    d = cfg.data
    if d.dataset in ("cifar10", "cifar100"):
        return CenterResizeCrop(32, 1.0, d.jpeg_draft), *cifar_mean_std(d)
    mean, std = image_mean_std(d)
    return eval_transform(d), mean, std


@torch.no_grad()
def predict(run_dir: Path, cfg: Config, inputs: Sequence[str], *, checkpoint: str = "last", top_k: int = 5,
            batch_size: int = 64, strict: bool = False) -> list[dict[str, Any]]:
    """Top-k predictions for every image of ``inputs``: [{path, classes: [...], names, probs, error}].

    An image that cannot be read gets a row with empty predictions and ``error`` saying why, so that one
    bad file among thousands costs one row, not the job; ``strict`` makes it a DataError instead. The
    inputs are checked before the model is loaded.
    """
    if top_k < 1 or batch_size < 1:
        raise ValueError(f"top_k and batch_size must be >= 1, got {top_k} and {batch_size}")
    refuse_while_training(run_dir, "fcc predict", checkpoint)
    paths = collect_images(inputs)
    # the run loader: the run's network, weights and tau-normalisation (eval.tau_norm), as its eval.json
    run = load_run(run_dir, checkpoint, what="fcc predict", device=resolve_device(cfg.device))
    model, device = run.model, run.device
    num_classes = num_classes_of(run)
    names = run.class_names or [str(c) for c in range(num_classes)]
    transform, mean, std = transform_and_normalisation(cfg)
    files = ImageFiles(paths, torch.zeros(len(paths), dtype=torch.long), "the images to predict")
    plan = _Sequential(range(len(paths)), batch_size)
    loader = _data_loader(files, transform, plan, workers=min(workers_for(cfg.data), 4), prefetch=2,
                          pin=device.type == "cuda", persistent=False)
    normalize = Normalize(mean, std).to(device)
    amp = autocast_dtype(cfg.train.amp, device)
    k = min(top_k, num_classes)
    rows: list[dict[str, Any]] = []
    batches = iter(loader)
    try:
        for _ in range(len(plan)):
            images, _, errors = _next(batches)  # errors[i]: "" or "PATH: why it could not be decoded"
            good = [i for i, e in enumerate(errors) if not e]
            predicted: list[tuple[list[int], list[float]]] = []
            if good:
                x = normalize(images[good].to(device, non_blocking=True).permute(0, 3, 1, 2)).contiguous()
                predicted = _top_k(model, x, k, amp, [paths[len(rows) + i] for i in good])
            shown = iter(predicted)
            for error in errors:
                path = paths[len(rows)]
                if error:
                    why = error.removeprefix(f"{path}: ")
                    if strict:
                        raise DataError(f"{path}: {why} (without --strict, such images are skipped and listed in "
                                        "the CSV's error column)")
                    rows.append({"path": path, "classes": [], "names": [], "probs": [], "error": why})
                else:
                    c, p = next(shown)
                    rows.append({"path": path, "classes": c, "names": [names[i] for i in c], "probs": p, "error": ""})
    except KeyboardInterrupt:  # the workers go first, quietly; main() then says "interrupted" (exit 130)
        stop_workers(batches)
        raise
    if rows and all(row["error"] for row in rows):
        shown_errors = "\n  ".join(f"{r['path']}: {r['error']}" for r in rows[:5])
        raise DataError(f"none of the {len(rows)} images could be read; the first:\n  {shown_errors}")
    return rows


def _top_k(model: torch.nn.Module, x: torch.Tensor, k: int, amp: torch.dtype | None,
           paths: Sequence[str]) -> list[tuple[list[int], list[float]]]:
    """The top-k classes and softmax probabilities of a batch (``paths``: its files). Non-finite logits are an
    error naming the first such file: their "probabilities" would be NaN, or a class chosen by accident."""
    with autocast(x.device, amp):
        logits = model(x).float()
    finite = torch.isfinite(logits).all(dim=1).cpu()  # predict reads every batch back anyway
    if not bool(finite.all()):
        bad = [paths[i] for i in (~finite).nonzero().flatten().tolist()]
        more = f" and {len(bad) - 1} more of this batch" if len(bad) > 1 else ""
        raise NonFiniteOutputs(f"the network gave non-finite logits (NaN or inf) for {bad[0]}{more}, so it "
                               f"predicts nothing{nonfinite_hint(amp)}")
    probs, classes = logits.softmax(dim=1).topk(k, dim=1)
    return list(zip(classes.cpu().tolist(), probs.cpu().tolist()))


def write_csv(rows: Sequence[dict[str, Any]], out: Path) -> None:
    """path, then class, name and probability for each of the top k, then ``error``: one row per image,
    with empty predictions and the reason in ``error`` for an image that could not be read."""
    k = max((len(row["classes"]) for row in rows), default=0)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["path"] + [f"{what}{i + 1}" for i in range(k) for what in ("class", "name", "prob")]
                    + ["error"])
    for row in rows:
        cells: list[Any] = [row["path"]]
        for c, n, p in zip(row["classes"], row["names"], row["probs"]):
            cells += [c, n, f"{p:.6f}"]
        cells += [""] * (1 + 3 * k - len(cells))
        writer.writerow([*cells, row.get("error", "")])
    atomic_write_text(out, buf.getvalue())
