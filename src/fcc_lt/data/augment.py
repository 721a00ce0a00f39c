"""Batched augmentation on the training device: whole batches at once, no per-sample Python.

Random parameters are drawn for a whole *global* batch from an explicit generator and then sliced per
rank, so a run on N processes sees exactly the augmentation a single-process run with the same global
batch sees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


class Normalize:
    """uint8 (B, 3, H, W) -> float (x / 255 - mean) / std, fused into one multiply-add."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        mean_t = torch.tensor(mean, dtype=torch.float64)
        std_t = torch.tensor(std, dtype=torch.float64)
        self.scale = (1.0 / (255.0 * std_t)).float().view(1, -1, 1, 1)
        self.shift = (mean_t / std_t).float().view(1, -1, 1, 1)

    def to(self, device: torch.device) -> Normalize:
        self.scale = self.scale.to(device)
        self.shift = self.shift.to(device)
        return self

    def __call__(self, images: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        x = images.to(dtype)
        return torch.addcmul(-self.shift.to(dtype), x, self.scale.to(dtype))


@dataclass
class CropFlipParams:
    """Per-sample crop offsets in the padded image (B, 2: dy, dx) and horizontal flips (B,)."""

    offsets: Tensor
    flips: Tensor

    def __getitem__(self, index: slice) -> CropFlipParams:
        return CropFlipParams(self.offsets[index], self.flips[index])


class PadCropFlip:
    """Zero-pad by ``pad``, take a random HxW crop, flip horizontally with probability 1/2.

    Crop and flip are one gather over the padded uint8 batch: each output pixel's source index is
    computed from the per-sample offset and flip, so the cost is one indexed read per pixel.
    """

    def __init__(self, pad: int = 4, flip: bool = True, crop: bool = True) -> None:
        self.pad = pad
        self.flip = flip
        self.crop = crop

    def draw(self, n: int, generator: torch.Generator, device: torch.device) -> CropFlipParams:
        if self.crop:
            offsets = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=generator, device=device)
        else:
            offsets = torch.full((n, 2), self.pad, device=device, dtype=torch.long)
        if self.flip:
            flips = torch.randint(0, 2, (n,), generator=generator, device=device, dtype=torch.bool)
        else:
            flips = torch.zeros(n, device=device, dtype=torch.bool)
        return CropFlipParams(offsets, flips)

    def __call__(self, images: Tensor, params: CropFlipParams) -> Tensor:
        b, c, h, w = images.shape
        p = self.pad
        padded = F.pad(images, (p, p, p, p)) if p else images
        wp = w + 2 * p
        ar_h = torch.arange(h, device=images.device)
        ar_w = torch.arange(w, device=images.device)
        rows = params.offsets[:, 0:1] + ar_h  # (B, H)
        cols = torch.where(params.flips[:, None], (w - 1) - ar_w, ar_w) + params.offsets[:, 1:2]  # (B, W)
        flat = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
        out = torch.gather(padded.reshape(b, c, -1), 2, flat)
        return out.view(b, c, h, w)


# ------------------------------------------------------------------- image pipeline: crops and colour


def random_resized_boxes(heights: Tensor, widths: Tensor, generator: torch.Generator,
                         scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3),
                         attempts: int = 10) -> Tensor:
    """Random-resized-crop boxes (B, 4: top, left, height, width) for images of the given sizes.

    The Inception-style rule of torchvision's RandomResizedCrop, for a whole batch at once: up to
    ``attempts`` candidates with area fraction ~ U(scale) and log aspect ratio ~ U(log ratio); the first
    that fits is placed uniformly at random; if none fits, the central crop with the aspect ratio
    clamped into ``ratio``. All draws come from ``generator``, a fixed number per image.
    """
    n = heights.numel()
    device = heights.device
    h = heights.reshape(n, 1).double()
    w = widths.reshape(n, 1).double()
    u = torch.rand((n, attempts, 4), generator=generator, device=device, dtype=torch.float64)
    target = h * w * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + (hi - lo) * u[..., 1])
    cw = torch.round(torch.sqrt(target * aspect))
    ch = torch.round(torch.sqrt(target / aspect))
    fits = (cw > 0) & (ch > 0) & (cw <= w) & (ch <= h)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # first fitting attempt (0 when none fits)

    def pick(t: Tensor) -> Tensor:
        return t.gather(1, first)

    bw, bh = pick(cw), pick(ch)
    top = torch.floor(pick(u[..., 2]) * (h - bh + 1)).clamp(max=h - bh)
    left = torch.floor(pick(u[..., 3]) * (w - bw + 1)).clamp(max=w - bw)
    # fallback: the whole image, cut to the nearest allowed aspect ratio, centred
    in_ratio = w / h
    fw = torch.where(in_ratio > ratio[1], torch.round(h * ratio[1]), w)
    fh = torch.where(in_ratio < ratio[0], torch.round(w / ratio[0]), h)
    ok = fits.any(dim=1, keepdim=True)
    boxes = torch.cat([
        torch.where(ok, top, torch.div(h - fh, 2, rounding_mode="floor")),
        torch.where(ok, left, torch.div(w - fw, 2, rounding_mode="floor")),
        torch.where(ok, bh, fh),
        torch.where(ok, bw, fw),
    ], dim=1)
    return boxes.long()


@dataclass
class JitterParams:
    """Per-sample colour-jitter factors (B, 3: brightness, contrast, saturation) and op order (B, 3)."""

    factors: Tensor
    order: Tensor

    def __getitem__(self, index: slice | Tensor) -> JitterParams:
        return JitterParams(self.factors[index], self.order[index])


class ColorJitter:
    """Brightness, contrast and saturation jitter of a batch, each factor ~ U(1 - s, 1 + s), in a random
    order per image (as torchvision's ColorJitter(s, s, s, 0)).

    Each op blends the image with a "degenerate" image: black (brightness), the mean grey level
    (contrast) or the grey image (saturation), out = f * x + (1 - f) * degenerate, clamped to [0, 255].
    Works on float images in [0, 255] (uint8 input is converted), so it fits before ``Normalize``.
    """

    GREY = (0.299, 0.587, 0.114)

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4) -> None:
        for name, s in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not 0 <= s < 1:
                raise ValueError(f"ColorJitter: {name} must lie in [0, 1), got {s}")
        self.strength = torch.tensor([brightness, contrast, saturation], dtype=torch.float32)
        self._on_device: dict[tuple[str, torch.dtype], tuple[Tensor, Tensor]] = {}

    def to(self, device: torch.device, dtype: torch.dtype = torch.float32) -> ColorJitter:
        """Put the constants on ``device`` now (the loader does it once): a copy made inside a training
        step would be a host-to-device transfer, a synchronisation."""
        self._constants(torch.device(device), dtype)
        return self

    def _constants(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """(strengths, grey weights) on ``device``, copied there once."""
        key = (str(device), dtype)
        if key not in self._on_device:
            grey = torch.tensor(self.GREY, dtype=torch.float64)
            self._on_device[key] = (self.strength.to(device), grey.to(device=device, dtype=dtype))
        return self._on_device[key]

    def draw(self, n: int, generator: torch.Generator, device: torch.device) -> JitterParams:
        u = torch.rand((n, 6), generator=generator, device=device)
        s = self._constants(torch.device(device), torch.float32)[0]
        factors = 1 - s + 2 * s * u[:, :3]
        order = u[:, 3:].argsort(dim=1)
        return JitterParams(factors, order)

    def __call__(self, images: Tensor, params: JitterParams) -> Tensor:
        x = images.float()
        b = x.shape[0]
        grey_w = self._constants(x.device, x.dtype)[1]
        for position in range(3):
            op = params.order[:, position].view(b, 1, 1, 1)
            f = params.factors.gather(1, params.order[:, position:position + 1]).view(b, 1, 1, 1).to(x.dtype)
            grey = torch.einsum("bchw,c->bhw", x, grey_w).unsqueeze(1)
            mean = grey.mean(dim=(2, 3), keepdim=True)
            # (1 - f) * degenerate, where degenerate is 0, the mean grey level or the grey image
            rest = grey * ((op == 2) * (1 - f)) + mean * ((op == 1) * (1 - f))
            x = torch.addcmul(rest, x, f).clamp_(0, 255)
        return x


@dataclass
class ComposedParams:
    parts: tuple

    def __getitem__(self, index: slice | Tensor) -> ComposedParams:
        return ComposedParams(tuple(p[index] for p in self.parts))


class Compose:
    """Several batched augmentations applied in order, with the same draw/apply interface as each."""

    def __init__(self, ops: Sequence) -> None:
        self.ops = list(ops)

    def to(self, device: torch.device) -> Compose:
        for op in self.ops:
            if hasattr(op, "to"):
                op.to(device)
        return self

    def draw(self, n: int, generator: torch.Generator, device: torch.device) -> ComposedParams:
        return ComposedParams(tuple(op.draw(n, generator, device) for op in self.ops))

    def __call__(self, images: Tensor, params: ComposedParams) -> Tensor:
        for op, p in zip(self.ops, params.parts):
            images = op(images, p)
        return images
