"""Batched augmentation and the DeviceLoader: exactness, statistics, determinism, rank shares."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fcc_lt.data.augment import CropFlipParams, Normalize, PadCropFlip
from fcc_lt.data.datasets import ArrayDataset
from fcc_lt.data.loader import DeviceEvalLoader, DeviceLoader
from fcc_lt.methods.samplers import InstanceSampler

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def reference_crop_flip(images: torch.Tensor, params: CropFlipParams, pad: int) -> torch.Tensor:
    """Per-sample Python reference: zero-pad, slice, flip."""
    out = []
    for img, (dy, dx), flip in zip(images, params.offsets.tolist(), params.flips.tolist()):
        padded = torch.zeros(img.shape[0], img.shape[1] + 2 * pad, img.shape[2] + 2 * pad, dtype=img.dtype)
        padded[:, pad:pad + img.shape[1], pad:pad + img.shape[2]] = img
        crop = padded[:, dy:dy + img.shape[1], dx:dx + img.shape[2]]
        out.append(crop.flip(-1) if flip else crop)
    return torch.stack(out)


def test_crop_flip_matches_reference() -> None:
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=gen)
    aug = PadCropFlip(pad=4)
    params = aug.draw(64, gen, torch.device("cpu"))
    assert torch.equal(aug(images, params), reference_crop_flip(images, params, 4))
    # non-square images and another padding
    images = torch.randint(0, 256, (8, 3, 5, 7), dtype=torch.uint8, generator=gen)
    aug = PadCropFlip(pad=2)
    params = aug.draw(8, gen, torch.device("cpu"))
    assert torch.equal(aug(images, params), reference_crop_flip(images, params, 2))


def test_crop_offsets_and_flips_are_uniform() -> None:
    n = 81_000
    params = PadCropFlip(pad=4).draw(n, torch.Generator().manual_seed(0), torch.device("cpu"))
    cells = np.bincount((params.offsets[:, 0] * 9 + params.offsets[:, 1]).numpy(), minlength=81)
    assert cells.size == 81  # offsets in 0..8 on both axes
    expected = n / 81
    chi2 = float(((cells - expected) ** 2 / expected).sum())
    assert chi2 < 124.1  # 99.9th percentile of chi-square with 80 degrees of freedom
    flips = params.flips.double().mean().item()
    assert abs(flips - 0.5) < 4 * 0.5 / np.sqrt(n)
    # dy and dx independent: flips independent of offsets
    assert abs(params.flips[params.offsets[:, 0] < 4].double().mean().item() - 0.5) < 0.02


def test_no_augmentation_is_identity() -> None:
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    aug = PadCropFlip(pad=4, crop=False, flip=False)
    assert torch.equal(aug(images, aug.draw(4, torch.Generator(), torch.device("cpu"))), images)


def test_normalisation_exact() -> None:
    images = torch.arange(256, dtype=torch.uint8).repeat(3, 1).view(1, 3, 16, 16)
    out = Normalize(MEAN, STD)(images)
    x = images.double() / 255.0
    ref = (x - torch.tensor(MEAN, dtype=torch.float64).view(1, 3, 1, 1)) / torch.tensor(STD, dtype=torch.float64).view(
        1, 3, 1, 1)
    assert out.dtype == torch.float32
    assert torch.allclose(out.double(), ref, atol=2e-6, rtol=0)


def make_dataset(n: int = 100, classes: int = 5) -> ArrayDataset:
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=gen)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)  # pixel (0, 0, 0) identifies the sample
    return ArrayDataset(images, labels)


def loader(ds: ArrayDataset, augment: bool = False, **kwargs) -> DeviceLoader:
    kwargs.setdefault("batch_size", 16)
    return DeviceLoader(ds, device=torch.device("cpu"), sampler=InstanceSampler(ds.labels, 5),
                        normalize=Normalize((0, 0, 0), (1 / 255, 1 / 255, 1 / 255)),
                        augment=PadCropFlip(pad=2) if augment else None, seed=3, **kwargs)


def test_epoch_covers_each_sample_once_with_matching_labels() -> None:
    ds = make_dataset()
    ld = loader(ds)
    assert ld.steps_per_epoch(1) == 100 // 16
    ids = []
    for x, y in ld.epoch(1):
        sample = x[:, 0, 0, 0].round().long()
        assert torch.equal(ds.labels[sample], y)
        ids.extend(sample.tolist())
    assert len(ids) == 96 and len(set(ids)) == 96  # drop_last, no repeats
    last = loader(ds, drop_last=False)
    assert last.steps_per_epoch(1) == 7 and sum(len(y) for _, y in last.epoch(1)) == 100


def test_epochs_differ_and_are_reproducible() -> None:
    ds = make_dataset()
    a = [x for x, _ in loader(ds, augment=True).epoch(2)]
    b = [x for x, _ in loader(ds, augment=True).epoch(2)]
    c = [x for x, _ in loader(ds, augment=True).epoch(3)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_start_step_resumes_the_same_batches() -> None:
    ds = make_dataset()
    full = list(loader(ds, augment=True).epoch(4))
    tail = list(loader(ds, augment=True).epoch(4, start_step=3))
    assert len(tail) == len(full) - 3
    for (x1, y1), (x2, y2) in zip(full[3:], tail):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


@pytest.mark.parametrize("world", [2, 4])
def test_rank_shares_recompose_the_single_process_batch(world: int) -> None:
    ds = make_dataset()
    single = list(loader(ds, augment=True).epoch(1))
    shares = [list(loader(ds, augment=True, rank=r, world_size=world).epoch(1)) for r in range(world)]
    for step, (x, y) in enumerate(single):
        for r in range(world):
            xr, yr = shares[r][step]
            assert torch.equal(xr, x[r::world]) and torch.equal(yr, y[r::world])
    with pytest.raises(ValueError, match="not divisible"):
        loader(ds, batch_size=15, world_size=2)


def test_eval_loader_is_sequential_and_sharded() -> None:
    ds = make_dataset(n=23)
    norm = Normalize((0, 0, 0), (1 / 255, 1 / 255, 1 / 255))
    whole = DeviceEvalLoader(ds, 5, torch.device("cpu"), normalize=norm)
    assert len(whole) == 5
    seen = torch.cat([x[:, 0, 0, 0] for x, _ in whole]).round().long()
    assert seen.tolist() == list(range(23))
    parts = [DeviceEvalLoader(ds, 5, torch.device("cpu"), normalize=norm, rank=r, world_size=3) for r in range(3)]
    ids = sorted(int(v) for p in parts for x, _ in p for v in x[:, 0, 0, 0].round())
    assert ids == list(range(23))


def test_last_partial_batch_never_leaves_a_rank_empty() -> None:
    ds = make_dataset(n=33)
    assert loader(ds, drop_last=False).steps_per_epoch(1) == 3  # 16 + 16 + 1
    assert loader(ds, drop_last=False, world_size=2).steps_per_epoch(1) == 2  # the 1 left would starve rank 1
    shares = [list(loader(ds, drop_last=False, world_size=2, rank=r).epoch(1)) for r in range(2)]
    assert [len(y) for _, y in shares[1]] == [8, 8]
    ds = make_dataset(n=34)
    assert [len(y) for _, y in loader(ds, drop_last=False, world_size=2, rank=1).epoch(1)][-1] == 1
