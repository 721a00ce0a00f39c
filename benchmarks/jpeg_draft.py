"""`data.jpeg_draft`: decode time against pixel difference for large JPEGs.

With ``jpeg_draft`` PIL decodes a JPEG at 1/2, 1/4 or 1/8 scale (DCT scaling) when the region the
transform keeps still has at least the output resolution; without it every file is decoded whole and then
resized, as the original code's cv2 read did. For each image size this script writes ``--count``
photograph-like JPEGs (1/f noise, the power spectrum of natural images, plus smooth shading and fine
sensor-like noise, quality ``--quality``), runs the evaluation transform (shorter side to 256, centre crop
224) and the training transform (random-resized crop 224 + flip, the same seeds on both sides) with and
without draft, and prints per transform: the CPU time per image of each (median of ``--rounds``
alternating rounds, process time, so other load on a shared machine hardly changes it), the speed-up,
and how far the draft outputs are from the full decodes in grey levels (0-255): the mean absolute
difference over the pixels of the outputs that changed, the largest single difference, and how many
outputs changed at all (draft applies only when the kept region is at least twice the output size).

    python benchmarks/jpeg_draft.py [--sizes 500x375 800x600 1024x768] [--count 24] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from fcc_lt.data.images import CenterResizeCrop, RandomResizedCropFlip
from fcc_lt.util.argtypes import int_at_least


def image_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", text)
    if m is None or min(int(m.group(1)), int(m.group(2))) < 1:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 800x600, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def photo_like(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (H, W, 3): 1/f noise per channel (correlated across channels), shading and fine noise."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    shared = rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)
    channels = []
    for _ in range(3):
        own = rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)
        spectrum = (0.8 * shared + 0.6 * own) / f
        spectrum[0, 0] = 0
        field = np.fft.irfft2(spectrum, s=(height, width))
        channels.append((field - field.mean()) / field.std())
    yy, xx = np.mgrid[0:height, 0:width]
    shading = 30 * np.sin(xx / width * np.pi * rng.uniform(0.5, 2)) * np.cos(yy / height * np.pi * rng.uniform(0.5, 2))
    pixels = np.stack(channels, axis=2) * 40 + 120 + shading[:, :, None] + rng.normal(0, 4, size=(height, width, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def write_jpegs(folder: Path, size: tuple[int, int], count: int, quality: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"{size[0]}x{size[1]}_{i:03d}.jpg"
        Image.fromarray(photo_like(*size, rng)).save(path, quality=quality)
        paths.append(str(path))
    return paths


def cpu_seconds(paths: list[str], transform: Callable[[str, int], np.ndarray]) -> float:
    start = time.process_time()
    for i, path in enumerate(paths):
        transform(path, i)
    return time.process_time() - start


def compare(paths: list[str], make: Callable[[bool], Callable[[str, int], np.ndarray]], rounds: int
            ) -> tuple[float, float, float, float, int]:
    """(ms per image with draft, without, mean |diff|, max |diff|, images whose output changed)."""
    draft, full = make(True), make(False)
    times: dict[bool, list[float]] = {True: [], False: []}
    for r in range(rounds):  # alternate the order so that drift hits both alike
        for use in ((True, False) if r % 2 == 0 else (False, True)):
            times[use].append(cpu_seconds(paths, draft if use else full))
    diffs = [np.abs(draft(p, i).astype(np.int16) - full(p, i).astype(np.int16)) for i, p in enumerate(paths)]
    changed = [d for d in diffs if d.any()]
    per_image = 1000 / len(paths)
    return (statistics.median(times[True]) * per_image, statistics.median(times[False]) * per_image,
            float(np.mean([d.mean() for d in changed])) if changed else 0.0,
            float(max(d.max() for d in diffs)), len(changed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=image_size, nargs="+", default=[(500, 375), (800, 600), (1024, 768)])
    parser.add_argument("--count", type=int_at_least(1), default=24, help="JPEGs per size")
    parser.add_argument("--rounds", type=int_at_least(1), default=5)
    parser.add_argument("--quality", type=int_at_least(1), default=90)
    parser.add_argument("--size", type=int_at_least(1), default=224, help="output size (crops of size x size)")
    parser.add_argument("--seed", type=int_at_least(0), default=0)
    args = parser.parse_args()
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Pillow {Image.__version__}; {args.count} JPEGs per size, quality {args.quality}, output {args.size}, "
          f"median of {args.rounds} rounds of CPU time")
    transforms: dict[str, Callable[[bool], Callable[[str, int], np.ndarray]]] = {
        "eval (resize + centre crop)": lambda d: CenterResizeCrop(args.size, 0.875, jpeg_draft=d),
        "train (rrc + flip)": lambda d: RandomResizedCropFlip(args.size, jpeg_draft=d),
    }
    print("| image | transform | ms/image draft | ms/image full | speed-up | mean abs diff | max abs diff "
          "| outputs changed |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            paths = write_jpegs(Path(tmp), size, args.count, args.quality, args.seed)
            for name, make in transforms.items():
                with_draft, full, mean_diff, max_diff, changed = compare(paths, make, args.rounds)
                print(f"| {size[0]}x{size[1]} | {name} | {with_draft:.2f} | {full:.2f} | {full / with_draft:.2f}x "
                      f"| {mean_diff:.2f} | {max_diff:.0f} | {changed}/{len(paths)} |", flush=True)


if __name__ == "__main__":
    main()
