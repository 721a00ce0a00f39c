"""Samplers: class frequencies against their formulas, DRS switching, reproducibility, rank shares."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fcc_lt.config.schema import Config
from fcc_lt.config.validate import validate
from fcc_lt.data.augment import Normalize, PadCropFlip
from fcc_lt.data.datasets import ArrayDataset
from fcc_lt.data.loader import DeviceLoader
from fcc_lt.methods.samplers import ClassDraw, InstanceSampler
from fcc_lt.util.errors import ConfigError
from fcc_lt.util.registry import SAMPLERS
from fcc_lt.util.rng import StreamGenerators

COUNTS = [2000, 900, 400, 180, 80, 36, 16, 7, 3, 1]  # a long tail, 3623 images
EPOCHS = 20


def make_labels(counts: list[int], seed: int = 0) -> torch.Tensor:
    """Labels with these class counts, in a shuffled order (so sorted-by-class offsets matter)."""
    labels = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


def chi2_threshold(dof: int, z: float = 4.753) -> float:
    """Wilson-Hilferty upper quantile of chi-square(dof); z = 4.753 is a one-sided p of 1e-6."""
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def chi2(observed: np.ndarray, probs: np.ndarray) -> float:
    expected = observed.sum() * probs
    keep = probs > 0
    assert observed[~keep].sum() == 0, "drew a class of probability zero"
    return float((((observed - expected) ** 2)[keep] / expected[keep]).sum())


def draw_counts(sampler, epoch: int, repeats: int = 8) -> np.ndarray:
    """Class histogram of ``repeats`` epochs' worth of draws at one epoch (different seeds)."""
    gens = [StreamGenerators(seed).get("sampler", "cpu", epoch) for seed in range(repeats)]
    idx = torch.cat([sampler.epoch_indices(epoch, g) for g in gens])
    return np.bincount(sampler.labels[idx].numpy(), minlength=len(COUNTS)).astype(np.float64)


def formula(name: str, epoch: int = 1) -> np.ndarray:
    """Each sampler's class distribution, computed independently in float64 numpy."""
    n = np.array(COUNTS, dtype=np.float64)
    if name == "instance":
        p = n
    elif name == "class_balanced":
        p = np.ones_like(n)
    elif name == "square_root":
        p = np.sqrt(n)
    elif name == "reverse":
        p = n.max() / n
    elif name == "progressive":
        t = epoch / EPOCHS
        p = t / len(n) + (1 - t) * n / n.sum()
    else:
        raise AssertionError(name)
    return p / p.sum()


def build(name: str, labels: torch.Tensor | None = None, **params):
    labels = make_labels(COUNTS) if labels is None else labels
    return SAMPLERS.build(name, params, "sampler.params", labels, len(COUNTS), EPOCHS)


@pytest.mark.parametrize("name,epoch", [("class_balanced", 1), ("square_root", 1), ("reverse", 1),
                                        ("progressive", 1), ("progressive", 7), ("progressive", EPOCHS)])
def test_class_frequencies_follow_the_formula(name: str, epoch: int) -> None:
    sampler = build(name)
    observed = draw_counts(sampler, epoch)
    assert observed.sum() == 8 * len(sampler.labels)  # epoch length is the training-set size
    dof = len(COUNTS) - 1
    assert chi2(observed, formula(name, epoch)) < chi2_threshold(dof)
    # the test has power: the instance distribution (or, for the last progressive epoch, a slightly
    # earlier progress value) is rejected
    wrong = formula("instance") if (name, epoch) != ("progressive", 1) else formula("class_balanced")
    assert chi2(observed, wrong) > chi2_threshold(dof)


def test_progressive_schedule_ends_class_balanced() -> None:
    sampler = build("progressive")
    np.testing.assert_allclose(sampler.class_probs(EPOCHS).numpy() / sampler.class_probs(EPOCHS).sum().item(),
                               formula("class_balanced"), rtol=1e-12)
    np.testing.assert_allclose(sampler.class_probs(5).numpy(), formula("progressive", 5), rtol=1e-12)


def test_instances_are_uniform_within_a_class() -> None:
    sampler = build("reverse")
    gen = StreamGenerators(3).get("sampler", "cpu", 1)
    idx = torch.cat([sampler.epoch_indices(1, gen) for _ in range(4)])
    cls = 6  # 16 images, drawn about 570 times
    members = torch.nonzero(sampler.labels == cls).flatten()
    picked = idx[sampler.labels[idx] == cls]
    hist = torch.bincount(picked, minlength=len(sampler.labels))[members].numpy().astype(np.float64)
    assert hist.min() > 0
    uniform = np.full(len(members), 1.0 / len(members))
    assert chi2(hist, uniform) < chi2_threshold(len(members) - 1)


def test_empty_classes_are_never_drawn() -> None:
    counts = [50, 0, 20, 0, 5]
    labels = make_labels(counts)
    for name in ("class_balanced", "square_root", "reverse", "progressive"):
        sampler = SAMPLERS.build(name, {}, "sampler.params", labels, 5, 10)
        idx = sampler.epoch_indices(3, StreamGenerators(0).get("sampler", "cpu", 3))
        drawn = torch.bincount(labels[idx], minlength=5)
        assert drawn[1] == 0 and drawn[3] == 0 and drawn[4] > 0, name


def test_class_draw_handles_single_image_classes_and_extreme_uniforms() -> None:
    labels = torch.tensor([4, 0, 0, 2, 4, 4])
    draw = ClassDraw(labels, 5)
    probs = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    idx = draw.draw(probs, 3000, torch.Generator().manual_seed(0))
    assert set(labels[idx].tolist()) == {0, 2, 4}
    assert set(idx.tolist()) == set(range(6))


@pytest.mark.parametrize("name", ["class_balanced", "square_root", "progressive", "reverse"])
def test_drs_switches_at_exactly_the_start_epoch(name: str) -> None:
    start = 5
    sampler = build(name, drs_start_epoch=start)
    n = len(sampler.labels)
    for epoch in (1, start - 1):
        idx = sampler.epoch_indices(epoch, StreamGenerators(0).get("sampler", "cpu", epoch))
        assert torch.equal(torch.sort(idx).values, torch.arange(n)), f"epoch {epoch} is not a permutation"
    observed = draw_counts(sampler, start)
    assert chi2(observed, formula(name, start)) < chi2_threshold(len(COUNTS) - 1)
    assert chi2(observed, formula("instance")) > chi2_threshold(len(COUNTS) - 1)


def test_progressive_under_drs_uses_the_run_epoch() -> None:
    sampler = build("progressive", drs_start_epoch=15)
    np.testing.assert_allclose(sampler.class_probs(15).numpy(), formula("progressive", 15), rtol=1e-12)


def test_same_seed_and_epoch_reproduce_and_other_epochs_differ() -> None:
    for name in ("instance", "class_balanced", "progressive"):
        a = build(name)
        b = build(name)  # a fresh sampler, as after a resume
        first = a.epoch_indices(3, StreamGenerators(7).get("sampler", "cpu", 3))
        again = b.epoch_indices(3, StreamGenerators(7).get("sampler", "cpu", 3))
        other = a.epoch_indices(4, StreamGenerators(7).get("sampler", "cpu", 4))
        other_seed = a.epoch_indices(3, StreamGenerators(8).get("sampler", "cpu", 3))
        assert torch.equal(first, again), name
        assert not torch.equal(first, other), name
        assert not torch.equal(first, other_seed), name


@pytest.mark.parametrize("augment", [None, PadCropFlip(pad=2)])
def test_rank_shares_union_to_the_single_process_batches(augment) -> None:
    labels = make_labels([30, 12, 6, 2])
    images = torch.randint(0, 256, (len(labels), 3, 6, 6), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))
    data = ArrayDataset(images, labels)
    sampler = SAMPLERS.build("square_root", {}, "sampler.params", labels, 4, 3)
    norm = Normalize([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])

    def loader(rank: int, world: int) -> DeviceLoader:
        return DeviceLoader(data, 12, torch.device("cpu"), sampler=sampler, normalize=norm, augment=augment,
                            seed=5, rank=rank, world_size=world)

    single = list(loader(0, 1).epoch(2))
    shares = [list(loader(r, 3).epoch(2)) for r in range(3)]
    assert len(single) == len(labels) // 12
    for step, (x, y) in enumerate(single):
        xs = torch.empty_like(x)
        ys = torch.empty_like(y)
        for r in range(3):
            xs[r::3], ys[r::3] = shares[r][step]
        assert torch.equal(xs, x) and torch.equal(ys, y)


def test_drs_start_epoch_is_validated_against_the_run() -> None:
    cfg = Config()
    cfg.train.epochs = 10
    cfg.train.milestones = [6, 8]
    cfg.sampler.name = "class_balanced"
    cfg.sampler.params = {"drs_start_epoch": 11}
    with pytest.raises(ConfigError, match=r"sampler\.params\.drs_start_epoch"):
        validate(cfg)
    cfg.sampler.params = {"drs_start_epoch": 10}
    validate(cfg)
    cfg.sampler.params = {"start_epoch": 3}
    with pytest.raises(ConfigError, match="drs_start_epoch"):
        validate(cfg)


def test_instance_sampler_is_a_permutation() -> None:
    labels = make_labels(COUNTS)
    sampler = InstanceSampler(labels, len(COUNTS))
    idx = sampler.epoch_indices(1, torch.Generator().manual_seed(0))
    assert torch.equal(torch.sort(idx).values, torch.arange(len(labels)))
