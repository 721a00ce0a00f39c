"""CAM-based sampling (bag of tricks, Zhang et al. 2021): new training images for the small classes, made
from a stage-1 model's class activation maps, for a second training stage.

For a training image of class y the class activation map is w_y . F (F the last feature maps, w_y the
classifier's class weight), min-max scaled to [0, 1] and upsampled to the image size; its foreground is
where the map is at least 3/4 of its mean. Each new image applies one random transform to the
foreground and pastes it on the untouched original image: a rotation (uniform in +-45 degrees, scale
uniform in [0.8, 1.2]) about the centre of the foreground's bounding box, a translation that keeps the
bounding box inside the image, or a horizontal flip of the foreground about its box's centre line.
Class c receives n_max + n_min - n_c new images (optionally capped), so every class ends with
n_max + n_min images.

Fixed against the original: the map is computed on the very (un-augmented) image it is applied to,
not on a randomly augmented view; and the bounding box spans the first to the LAST foreground
row/column, not the first to the second. The images are written as lossless PNGs with an annotation
JSON (``fcc_lt.data.annotations`` format) that a stage-2 run adds to its training split with
``data.extra_train_json``. Everything runs batched on the device: one backbone pass, one
``affine_grid``/``grid_sample`` per batch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fcc_lt.util.errors import ConfigError, DataError, OutputError
from fcc_lt.util.rng import derive_seed

ROTATE, TRANSLATE, FLIP = 0, 1, 2
TRANSFORM_NAMES = ("rotate", "translate", "flip")
FOREGROUND_RATIO = 0.75
MAX_ANGLE = math.pi / 4
SCALE_RANGE = (0.8, 1.2)


# ------------------------------------------------------------------------------------------ counts


def new_image_counts(class_counts: Sequence[int], cap: int | None = None) -> list[int]:
    """n_max + n_min - n_c per class; with ``cap``: 0 for classes of at least ``cap`` images, else at most cap."""
    if not class_counts:
        raise ValueError("class_counts is empty")
    n_max, n_min = max(class_counts), min(class_counts)
    counts = [n_max + n_min - n for n in class_counts]
    if cap is not None:
        if cap < 1:
            raise ConfigError(f"--cap: expected a positive number of images, got {cap}")
        counts = [0 if n >= cap else min(g, cap) for n, g in zip(class_counts, counts)]
    return counts


def draw_sources(labels: Tensor, counts: Sequence[int], generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """For every new image, its class and a uniformly drawn training image of that class (with replacement).

    Returns (source indices, classes), both (N,), ordered by class. Vectorised: one uniform per image.
    """
    num_classes = len(counts)
    labels = labels.cpu().long()
    have = torch.bincount(labels, minlength=num_classes)
    wanted = torch.as_tensor(list(counts), dtype=torch.long)
    if bool(((wanted > 0) & (have == 0)).any()):
        raise DataError("CAM generation: a class that should get new images has no training image")
    by_class = torch.sort(labels, stable=True).indices
    offsets = torch.cumsum(have, 0) - have
    classes = torch.repeat_interleave(torch.arange(num_classes), wanted)
    u = torch.rand(classes.numel(), generator=generator, dtype=torch.float64)
    within = (u * have[classes]).long().clamp_(max=(have[classes] - 1).clamp(min=0))
    return by_class[offsets[classes] + within], classes


# ------------------------------------------------------------------------------------ maps and boxes


def class_activation_maps(network: nn.Module, images: Tensor, labels: Tensor) -> Tensor:
    """(B, h, w): w_y . F for each image's own class y, from the last backbone feature maps F."""
    head = network.head
    if not hasattr(head, "class_weights"):
        raise ConfigError(f"CAM generation: the {type(head).__name__} head exposes no class weights")
    maps = network.backbone(images).float()
    weights = head.class_weights().float()[labels]
    return torch.einsum("bdhw,bd->bhw", maps, weights)


def minmax_scale(cams: Tensor) -> Tensor:
    """Per-map (x - min) / (max - min); a constant map becomes all zeros (every pixel foreground)."""
    flat = cams.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    span = (flat.max(dim=1).values.view(-1, 1, 1) - low)
    return torch.where(span > 0, (cams - low) / span.clamp_min(torch.finfo(cams.dtype).tiny), torch.zeros_like(cams))


def foreground_masks(cams: Tensor, size: tuple[int, int], ratio: float = FOREGROUND_RATIO) -> Tensor:
    """(B, H, W) bool: the min-max scaled map, bilinearly resized to ``size``, at least ``ratio`` x its mean."""
    scaled = minmax_scale(cams)
    up = F.interpolate(scaled[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return up >= ratio * up.mean(dim=(1, 2), keepdim=True)


def bounding_boxes(masks: Tensor) -> Tensor:
    """(B, 4) long (top, bottom, left, right), inclusive: the first and LAST foreground row and column.

    An empty mask gives the whole image.
    """
    _, h, w = masks.shape
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    top = rows.float().argmax(dim=1)
    bottom = h - 1 - rows.flip(1).float().argmax(dim=1)
    left = cols.float().argmax(dim=1)
    right = w - 1 - cols.flip(1).float().argmax(dim=1)
    box = torch.stack([top, bottom, left, right], dim=1)
    full = torch.tensor([0, h - 1, 0, w - 1], device=masks.device)
    return torch.where(rows.any(dim=1, keepdim=True), box, full)


# -------------------------------------------------------------------------------------- transforms


def inverse_affines(boxes: Tensor, params: Tensor, size: tuple[int, int]) -> Tensor:
    """(B, 2, 3) maps from output to input PIXEL coordinates (x, y) for each sample's transform.

    ``params`` (B, 5) uniforms in [0, 1): transform choice, angle, scale, x shift, y shift.
    """
    h, w = size
    dtype = torch.float64
    b = boxes.to(dtype)
    top, bottom, left, right = b.unbind(dim=1)
    choice = (params[:, 0] * 3).long().clamp_(max=2)
    n = boxes.shape[0]
    eye = torch.eye(2, 3, dtype=dtype, device=boxes.device).expand(n, 2, 3)

    # rotation by theta with scale s about the box centre c: p = c + R(-theta) (p' - c) / s
    theta = (params[:, 1] * 2 - 1) * MAX_ANGLE
    scale = SCALE_RANGE[0] + params[:, 2] * (SCALE_RANGE[1] - SCALE_RANGE[0])
    cos, sin = torch.cos(theta) / scale, torch.sin(theta) / scale
    cx, cy = (left + right) / 2, (top + bottom) / 2
    rotate = torch.stack([
        torch.stack([cos, sin, cx - cos * cx - sin * cy], dim=1),
        torch.stack([-sin, cos, cy + sin * cx - cos * cy], dim=1),
    ], dim=1)

    # translation by whole pixels that keeps the box inside the image: p = p' - d
    dx = torch.floor(params[:, 3] * (w - (right - left))) - left
    dy = torch.floor(params[:, 4] * (h - (bottom - top))) - top
    translate = eye.clone()
    translate[:, 0, 2] = -dx
    translate[:, 1, 2] = -dy

    # horizontal flip about the box's centre column: x = left + right - x'
    flip = eye.clone()
    flip[:, 0, 0] = -1
    flip[:, 0, 2] = left + right

    pick = choice.view(-1, 1, 1)
    return torch.where(pick == ROTATE, rotate, torch.where(pick == TRANSLATE, translate, flip))


def to_normalized(affine: Tensor, size: tuple[int, int]) -> Tensor:
    """Pixel-coordinate (B, 2, 3) maps -> the normalised [-1, 1] form of ``affine_grid`` (align_corners=False)."""
    h, w = size
    dtype, device = affine.dtype, affine.device
    d = torch.tensor([2.0 / w, 2.0 / h], dtype=dtype, device=device)
    o = torch.tensor([1.0 / w - 1.0, 1.0 / h - 1.0], dtype=dtype, device=device)
    a = affine[:, :, :2] * d.view(1, 2, 1) / d.view(1, 1, 2)  # D A D^-1
    t = -(a @ o) + d * affine[:, :, 2] + o
    return torch.cat([a, t[:, :, None]], dim=2)


def paste_transformed(images: Tensor, masks: Tensor, affine: Tensor) -> Tensor:
    """Warp image and foreground together, then paste the warped foreground on the original image.

    ``images`` uint8 (B, 3, H, W), ``masks`` bool (B, H, W), ``affine`` pixel-coordinate inverse maps.
    """
    size = (images.shape[2], images.shape[3])
    x = torch.cat([images.float(), masks[:, None].float()], dim=1)
    grid = F.affine_grid(to_normalized(affine, size).float(), list(x.shape), align_corners=False)
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    keep = warped[:, 3:] > 0.5
    out = torch.where(keep, warped[:, :3].round().clamp_(0, 255), images.float())
    return out.to(torch.uint8)


# --------------------------------------------------------------------------------------- generation


def _write_png(args: tuple[np.ndarray, Path]) -> None:
    from PIL import Image

    array, path = args
    Image.fromarray(array).save(path, format="PNG")


def source_images(splits: Any, cfg: Any, index: Tensor) -> Tensor:
    """uint8 (B, 3, H, W) training images at ``index``: from memory, or decoded as for evaluation."""
    from fcc_lt.data.datasets import ArrayDataset

    train = splits.train
    if isinstance(train, ArrayDataset):
        return train.images[index]
    from fcc_lt.data.image_loader import decode_all
    from fcc_lt.data.images import ImageFiles, eval_transform, workers_for

    if isinstance(train, ImageFiles):
        decoded = decode_all(train.subset(index.numpy()), eval_transform(cfg.data), workers=workers_for(cfg.data))
        return decoded.images
    raise DataError(f"{splits.name}: CAM generation cannot read training images of type {type(train).__name__}")


def generate(run_dir: Path, out: Path, *, cfg: Any, checkpoint: str = "last", cap: int | None = None,
             seed: int | None = None, batch_size: int = 256, overwrite: bool = False) -> dict[str, Any]:
    """`fcc data cam-generate`: write the CAM-augmented images of a stage-1 run and their annotation JSON."""
    from fcc_lt.data.augment import Normalize
    from fcc_lt.data.build import build_splits
    from fcc_lt.evaluation.run_loader import load_run, refuse_while_training
    from fcc_lt.util.distributed import resolve_device
    from fcc_lt.util.files import write_json

    refuse_while_training(run_dir, "fcc data cam-generate", checkpoint)
    json_path = out / "cam_train.json"
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputError(f"{out} is not empty; choose another --out or pass --overwrite")
    if batch_size < 1:
        raise ConfigError(f"--batch-size: expected a positive integer, got {batch_size}")
    run = load_run(run_dir, checkpoint, what="fcc data cam-generate", device=resolve_device(cfg.device),
                   tau_norm=False)
    network, device = run.network, run.device
    splits = build_splits(cfg)
    stats = run.stats or splits.stats
    if stats.num_classes != splits.num_classes:
        raise DataError(f"{run_dir}: the checkpoint was trained for {stats.num_classes} classes, but the data of "
                        f"its config ({splits.name}) has {splits.num_classes}")
    seed = cfg.seed if seed is None else seed
    generator = torch.Generator().manual_seed(derive_seed(seed, "cam"))
    # the protocol's counts and images: images a stage-1 run itself got from data.extra_train_json are
    # neither counted nor used as sources
    train_counts = list(stats.train_counts)
    counts = new_image_counts(train_counts, cap)
    if not any(counts):
        raise ConfigError(f"--cap {cap}: every class has at least {cap} images, so no image would be generated")
    sources, classes = draw_sources(splits.train.labels[:splits.protocol_size], counts, generator)
    params = torch.rand(sources.numel(), 5, generator=generator, dtype=torch.float64)
    normalize = Normalize(splits.mean, splits.std).to(device)
    width = len(str(max(sources.numel() - 1, 0)))
    entries: list[dict[str, Any]] = []
    try:
        for c in sorted(set(classes.tolist())):
            (out / "images" / str(c)).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create {out / 'images'}: {err.strerror or err}") from None
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool, torch.no_grad():
        for start in range(0, sources.numel(), batch_size):
            index = sources[start:start + batch_size]
            labels = classes[start:start + batch_size].to(device)
            images = source_images(splits, cfg, index).to(device)
            size = (images.shape[2], images.shape[3])
            masks = foreground_masks(class_activation_maps(network, normalize(images), labels), size)
            p = params[start:start + batch_size].to(device)
            new = paste_transformed(images, masks, inverse_affines(bounding_boxes(masks), p, size))
            arrays = new.permute(0, 2, 3, 1).contiguous().cpu().numpy()
            jobs = []
            for i in range(arrays.shape[0]):
                n = start + i
                c = int(classes[n])
                fpath = f"images/{c}/{n:0{width}d}.png"
                jobs.append((arrays[i], out / fpath))
                entries.append({"image_id": n, "fpath": fpath, "category_id": c, "im_height": size[0],
                                "im_width": size[1], "source_index": int(index[i]),
                                "transform": TRANSFORM_NAMES[min(int(p[i, 0] * 3), 2)]})
            try:
                list(pool.map(_write_png, jobs))
            except OSError as err:
                raise OutputError(f"cannot write CAM images under {out}: {err.strerror or err}") from None
    summary = {"run": str(run_dir), "checkpoint": run.shown_path(), "epoch": run.epoch, "seed": seed,
               "cap": cap, "train_counts": train_counts, "new_counts": counts}
    write_json(json_path, {"num_classes": splits.num_classes, "class_names": list(splits.class_names),
                           "cam_generation": summary, "annotations": entries}, compact=True)
    return {**summary, "json": str(json_path), "images": len(entries)}
