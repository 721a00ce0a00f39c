"""Mixers and the Beta sampler (mixing inside the forward pass, and FCC factors of mixed samples, are in
tests/engine/test_objective.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_run_overrides
from fcc_lt.config.load import load_config
from fcc_lt.data.augment import Normalize, PadCropFlip
from fcc_lt.data.datasets import ArrayDataset
from fcc_lt.data.loader import DeviceLoader
from fcc_lt.engine.trainer import Trainer
from fcc_lt.methods.mixers import beta_sample, cutmix_box, log_gamma_sample, remix_weights
from fcc_lt.methods.samplers import InstanceSampler
from fcc_lt.util.errors import ConfigError
from fcc_lt.util.registry import LOSSES, MIXERS

COUNTS = [600, 200, 100, 50]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------ Beta draws

def ks_statistic(samples: np.ndarray, cdf) -> float:
    x = np.sort(samples)
    n = len(x)
    f = cdf(x)
    return float(max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n)))


KS_CRITICAL = math.sqrt(-math.log(1e-6 / 2) / 2)  # times 1/sqrt(n): a two-sided p of 1e-6

BETA_CDFS = {
    0.5: lambda x: 2 / np.pi * np.arcsin(np.sqrt(x)),  # arcsine law
    1.0: lambda x: x,
    2.0: lambda x: 3 * x ** 2 - 2 * x ** 3,
}


@pytest.mark.parametrize("alpha", [0.2, 0.5, 1.0, 2.0, 8.0])
def test_beta_draws_have_the_beta_mean_and_variance(alpha: float) -> None:
    n = 40000
    x = beta_sample(alpha, alpha, n, gen(1), torch.device("cpu")).numpy()
    assert x.min() >= 0 and x.max() <= 1
    var = 1 / (4 * (2 * alpha + 1))
    assert abs(x.mean() - 0.5) < 5 * math.sqrt(var / n)
    # standard error of the sample variance from the symmetric Beta's excess kurtosis -6/(2a+3)
    se_var = var * math.sqrt((2 - 6 / (2 * alpha + 3)) / n)
    assert abs(x.var() - var) < 5 * se_var
    if alpha in BETA_CDFS:
        assert ks_statistic(x, BETA_CDFS[alpha]) < KS_CRITICAL / math.sqrt(n)
        # power: Beta(alpha, alpha) is told apart from the uniform law unless it is the uniform law
        if alpha != 1.0:
            assert ks_statistic(x, BETA_CDFS[1.0]) > KS_CRITICAL / math.sqrt(n)


@pytest.mark.parametrize("shape", [0.05, 0.3, 1.0, 2.5])
def test_gamma_draws_have_mean_and_variance_shape(shape: float) -> None:
    n = 40000
    x = np.exp(log_gamma_sample(shape, n, gen(2), torch.device("cpu")).numpy())
    assert np.all(np.isfinite(x)) and np.all(x >= 0)
    assert abs(x.mean() - shape) < 5 * math.sqrt(shape / n)
    # var(sample variance) ~ (mu4 - sigma^4) / n with mu4 = 3 shape (shape + 2) for Gamma(shape, 1)
    assert abs(x.var() - shape) < 5 * math.sqrt((3 * shape * (shape + 2) - shape ** 2) / n)


def test_beta_draws_come_from_the_generator_only() -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = beta_sample(0.7, 0.7, 10, gen(5), torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), state)  # the global stream is untouched
    assert torch.equal(a, beta_sample(0.7, 0.7, 10, gen(5), torch.device("cpu")))
    assert not torch.equal(a, beta_sample(0.7, 0.7, 10, gen(6), torch.device("cpu")))


# ------------------------------------------------------------------------------ mixup and remix

def constant_batch(b: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is the constant i + 1 (so a mixed pixel tells its sources); labels 0..3 repeating."""
    images = (torch.arange(b, dtype=torch.float32) + 1).view(b, 1, 1, 1).expand(b, 3, 4, 4).clone()
    return images, torch.arange(b) % len(COUNTS)


def recover_perm(labels_b: torch.Tensor, mixed: torch.Tensor, lam: float, images: torch.Tensor) -> torch.Tensor:
    """The partner of each sample, from the constant pixel values: v = lam (i+1) + (1-lam) (j+1)."""
    value = mixed[:, 0, 0, 0].double()
    own = images[:, 0, 0, 0].double()
    if abs(1 - lam) < 1e-9:
        return torch.arange(len(own))
    return torch.round((value - lam * own) / (1 - lam) - 1).long()


def test_mixup_mixes_pixels_and_labels_with_one_lambda() -> None:
    images, labels = constant_batch()
    batch = MIXERS.build("mixup", {"alpha": 0.4}, "mix.params", COUNTS)(images, labels, gen(3))
    w = batch.weight_a
    assert w.shape == (8,) and torch.all(w == w[0]) and 0 < float(w[0]) < 1
    lam = float(w[0])
    perm = recover_perm(batch.labels_b, batch.images, lam, images)
    assert sorted(perm.tolist()) == list(range(8))
    assert torch.equal(batch.labels_b, labels[perm])
    torch.testing.assert_close(batch.images, lam * images + (1 - lam) * images[perm])
    assert batch.feature_mix is None


REMIX_CASES = [
    # (lam, label a, label b, expected weight of a) with counts 600/200/100/50, kappa 3, tau 0.5
    (0.3, 0, 1, 0.0),   # lam < tau and n_a / n_b = 3 >= kappa (the boundary): label goes to b
    (0.3, 0, 2, 0.0),   # ratio 6
    (0.3, 1, 2, 0.3),   # ratio 2 < kappa: plain mixup weight
    (0.3, 2, 0, 0.3),   # b is the majority but 1 - lam = 0.7 is not < tau
    (0.8, 2, 0, 1.0),   # 1 - lam < tau and n_a kappa / n_b = 0.5 <= 1: label stays a
    (0.8, 1, 0, 1.0),   # n_a kappa / n_b = 1 (the boundary)
    (0.8, 3, 1, 1.0),   # 0.75
    (0.8, 0, 2, 0.8),   # a is the majority and lam >= tau
    (0.8, 1, 2, 0.8),   # neither rule
    (0.5, 0, 3, 0.5),   # lam = tau exactly: no rule applies
    (0.5, 3, 0, 0.5),
]


@pytest.mark.parametrize(("lam", "a", "b", "expected"), REMIX_CASES)
def test_remix_rule_hand_worked(lam: float, a: int, b: int, expected: float) -> None:
    counts = torch.tensor(COUNTS, dtype=torch.float64)
    w = remix_weights(torch.tensor(lam), counts[[a]], counts[[b]], kappa=3.0, tau=0.5)
    assert w.tolist() == pytest.approx([expected], abs=1e-7)


def test_remix_second_rule_wins_when_both_apply() -> None:
    counts = torch.tensor([10.0, 10.0], dtype=torch.float64)
    w = remix_weights(torch.tensor(0.45), counts[[0]], counts[[1]], kappa=1.0, tau=0.6)
    assert w.tolist() == [1.0]


REMIX_COUNTS = [1000, 700, 500, 300, 200, 150, 100, 70, 50, 30, 20, 15, 10, 7, 5, 3]


def test_remix_mixer_uses_per_sample_weights() -> None:
    n = len(REMIX_COUNTS)
    images = (torch.arange(n, dtype=torch.float32) + 1).view(n, 1, 1, 1).expand(n, 3, 2, 2).clone()
    labels = torch.arange(n)  # one sample per class: labels_b names each sample's partner
    mixer = MIXERS.build("remix", {}, "mix.params", REMIX_COUNTS)
    fired = set()
    for seed in range(30):
        batch = mixer(images, labels, gen(seed))
        perm = batch.labels_b
        value, own = batch.images[:, 0, 0, 0].double(), images[:, 0, 0, 0].double()
        i = int(torch.nonzero(perm != labels)[0])
        lam = float((value[i] - own[perm[i]]) / (own[i] - own[perm[i]]))
        torch.testing.assert_close(value, lam * own + (1 - lam) * own[perm], atol=1e-5, rtol=1e-6)  # plain mixup
        expected = []
        for a, b in zip(labels.tolist(), perm.tolist()):
            na, nb = REMIX_COUNTS[a], REMIX_COUNTS[b]
            w = lam
            if lam < 0.5 and na / nb >= 3:
                w = 0.0
            if 1 - lam < 0.5 and na * 3 / nb <= 1:
                w = 1.0
            fired.add("zero" if w == 0.0 and lam != 0 else "one" if w == 1.0 and lam != 1 else "lam")
            expected.append(w)
        np.testing.assert_allclose(batch.weight_a.numpy(), expected, atol=1e-5)
    assert fired == {"zero", "one", "lam"}  # each branch met: the weights really vary per sample


def remix_rule(lam: float, a: int, b: int) -> float:
    """Remix's weight of label a, written out from the paper's rule (kappa 3, tau 0.5)."""
    na, nb = REMIX_COUNTS[a], REMIX_COUNTS[b]
    w = lam
    if lam < 0.5 and na / nb >= 3:
        w = 0.0
    if 1 - lam < 0.5 and na * 3 / nb <= 1:
        w = 1.0
    return w


def test_remix_reproduce_original_uses_the_batch_mean_and_label_a_factors() -> None:
    n = len(REMIX_COUNTS)
    images = (torch.arange(n, dtype=torch.float32) + 1).view(n, 1, 1, 1).expand(n, 3, 2, 2).clone()
    labels = torch.arange(n)
    ours = MIXERS.build("remix", {}, "mix.params", REMIX_COUNTS)
    original = MIXERS.build("remix", {"reproduce_original": True}, "mix.params", REMIX_COUNTS)
    varied = 0
    for seed in range(20):
        mine, theirs = ours(images, labels, gen(seed)), original(images, labels, gen(seed))
        # the same draws: the same mixed images and partners, only the label weights differ
        assert torch.equal(mine.images, theirs.images) and torch.equal(mine.labels_b, theirs.labels_b)
        perm = theirs.labels_b
        value, own = theirs.images[:, 0, 0, 0].double(), images[:, 0, 0, 0].double()
        i = int(torch.nonzero(perm != labels)[0])
        lam = float((value[i] - own[perm[i]]) / (own[i] - own[perm[i]]))
        per_sample = [remix_rule(lam, a, b) for a, b in zip(labels.tolist(), perm.tolist())]
        batch_mean = sum(per_sample) / n
        np.testing.assert_allclose(mine.weight_a.numpy(), per_sample, atol=1e-5)
        np.testing.assert_allclose(theirs.weight_a.numpy(), [batch_mean] * n, atol=1e-5)
        assert mine.factor_weight_a is None  # FCC mixes both labels' factors with weight_a
        assert torch.equal(theirs.factor_weight_a, torch.ones(n))  # the original's tau(label a) for all
        varied += len(set(per_sample)) > 1
    assert varied > 0  # the batch mean really differs from the per-sample weights somewhere


def test_remix_reproduce_original_gives_the_original_loss() -> None:
    # The original: loss = mean_i(l_i * CE_mean(a) + (1 - l_i) * CE_mean(b)) = m CE(a) + (1 - m) CE(b), with
    # m the batch mean of the remix weights and CE the batch-mean cross-entropy of each label set.
    n = len(REMIX_COUNTS)
    images = torch.randn(n, 3, 2, 2, generator=gen(1))
    labels = torch.arange(n)
    batch = MIXERS.build("remix", {"reproduce_original": True}, "mix.params", REMIX_COUNTS)(images, labels, gen(4))
    logits = torch.randn(n, n, generator=gen(2))
    ce = LOSSES.build("ce", {}, "loss.params", REMIX_COUNTS)
    ours = ce(logits, batch.labels_a, sample_weight=batch.weight_a) + ce(logits, batch.labels_b,
                                                                          sample_weight=1 - batch.weight_a)
    m = float(batch.weight_a[0])
    expected = m * torch.nn.functional.cross_entropy(logits, labels) + (1 - m) * torch.nn.functional.cross_entropy(
        logits, batch.labels_b)
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=1e-6)


def test_mixer_parameters_are_validated() -> None:
    with pytest.raises(ConfigError, match="alpha"):
        MIXERS.build("mixup", {"alpha": 0}, "mix.params", COUNTS)
    with pytest.raises(ConfigError, match="tau"):
        MIXERS.build("remix", {"tau": 1.5}, "mix.params", COUNTS)
    with pytest.raises(ConfigError, match="location"):
        MIXERS.build("manifold_mixup", {"location": "layer4"}, "mix.params", COUNTS)


# ------------------------------------------------------------------------------------- cutmix

@pytest.mark.parametrize("seed", range(6))
def test_cutmix_pastes_one_box_and_weights_by_its_area(seed: int) -> None:
    images = (torch.arange(8.0) + 1).view(8, 1, 1, 1).expand(8, 3, 16, 16).clone()
    labels = torch.arange(8)  # distinct labels: labels_b names each sample's partner
    batch = MIXERS.build("cutmix", {"alpha": 1.0}, "mix.params", [5] * 8)(images, labels, gen(seed))
    perm = batch.labels_b
    assert sorted(perm.tolist()) == list(range(8))
    i = int(torch.nonzero(perm != labels)[0])
    box = batch.images[i, 0] != images[i, 0]
    rows, cols = box.any(dim=1), box.any(dim=0)
    assert torch.equal(box, rows[:, None] & cols[None, :])  # one rectangle
    torch.testing.assert_close(batch.images, torch.where(box, images[perm], images))  # same box for all
    expected = 1 - box.double().mean()
    torch.testing.assert_close(batch.weight_a.double(), expected.expand(8), atol=1e-6, rtol=0)


def test_cutmix_box_area_follows_lambda() -> None:
    areas = []
    for seed in range(200):
        mask, kept = cutmix_box(torch.tensor(0.75), 32, 32, gen(seed))
        assert float(kept) == pytest.approx(1 - mask.double().mean().item())
        areas.append(int(mask.sum()))
    # a 16x16 box (1 - 0.75 of the image), clipped where the centre lies near a border
    assert max(areas) == 256 and min(areas) >= 64 and all(a <= 256 for a in areas)
    mask, kept = cutmix_box(torch.tensor(1.0), 32, 32, gen(0))
    assert not mask.any() and float(kept) == 1.0


# ------------------------------------------------------------------------- manifold mixer

@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = gen(9)
    x = torch.randn(6, 3, 32, 32, generator=g)
    labels = torch.tensor([0, 1, 2, 3, 0, 2])
    perm = torch.tensor([3, 0, 5, 1, 2, 4])
    return x, labels, perm


def test_manifold_mixer_draws_lambda_and_pairing(data) -> None:
    x, labels, _ = data
    mixer = MIXERS.build("manifold_mixup", {"alpha": 2.0, "location": "stage2"}, "mix.params", COUNTS)
    batch = mixer(x, labels, gen(4))
    fm = batch.feature_mix
    assert batch.images is x and fm.location == "stage2" and fm.stage == 2
    assert sorted(fm.perm.tolist()) == list(range(6))
    assert torch.equal(batch.labels_b, labels[fm.perm])
    assert torch.all(batch.weight_a == fm.lam)


# --------------------------------------------------------------------------------- bilateral

def device_loader(rank: int = 0, world: int = 1, augment: bool = True) -> DeviceLoader:
    counts = [40, 20, 8, 4]
    labels = torch.repeat_interleave(torch.arange(4), torch.tensor(counts))
    images = torch.randint(0, 256, (len(labels), 3, 8, 8), dtype=torch.uint8, generator=gen(2))
    return DeviceLoader(ArrayDataset(images, labels), 8, torch.device("cpu"), sampler=InstanceSampler(labels, 4),
                        normalize=Normalize([0.5] * 3, [0.25] * 3), augment=PadCropFlip(2) if augment else None,
                        seed=1, rank=rank, world_size=world)


def test_bilateral_mix_pairs_the_batch_with_reverse_sampled_images() -> None:
    loader = device_loader(augment=False)
    mixer = MIXERS.build("bilateral", {}, "mix.params", [40, 20, 8, 4])
    mixer.bind(loader=loader)
    x, y = next(iter(loader.epoch(1)))
    drawn = []
    for seed in range(150):
        batch = mixer(x, y, gen(seed))
        lam = batch.weight_a[0]
        assert torch.all(batch.weight_a == lam) and torch.equal(batch.labels_a, y)
        partner = (batch.images - lam * x) / (1 - lam)
        # every partner image is a (normalised) training image of its label
        flat = loader.normalize(loader.images).flatten(1)
        match = torch.cdist(partner.flatten(1), flat).argmin(dim=1)
        if 0.05 < float(lam) < 0.95:
            torch.testing.assert_close(partner, flat[match].view_as(partner), atol=1e-3, rtol=1e-3)
            assert torch.equal(loader.labels[match], batch.labels_b)
        drawn.append(batch.labels_b)
    hist = torch.bincount(torch.cat(drawn), minlength=4).double()
    p = torch.tensor([40 / 40, 40 / 20, 40 / 8, 40 / 4], dtype=torch.float64)
    p = p / p.sum()
    expected = hist.sum() * p
    assert float(((hist - expected) ** 2 / expected).sum()) < 30.0  # chi-square, 3 dof: p << 1e-6


def test_bilateral_rank_shares_union_to_the_single_process_batch() -> None:
    mixer = MIXERS.build("bilateral", {}, "mix.params", [40, 20, 8, 4])
    mixer.bind(loader=device_loader())
    x, y = next(iter(device_loader().epoch(1)))
    single = mixer(x, y, gen(7))
    images_b = (single.images - single.weight_a[0] * x) / (1 - single.weight_a[0])
    for r in range(2):
        ranked = MIXERS.build("bilateral", {}, "mix.params", [40, 20, 8, 4])
        ranked.bind(loader=device_loader(r, 2))
        xr, yr = next(iter(device_loader(r, 2).epoch(1)))
        share = ranked(xr, yr, gen(7))
        assert torch.equal(share.labels_b, single.labels_b[r::2])
        mine = (share.images - share.weight_a[0] * xr) / (1 - share.weight_a[0])
        torch.testing.assert_close(mine, images_b[r::2], atol=1e-4, rtol=1e-4)


def test_bilateral_mix_needs_a_loader_that_can_draw() -> None:
    mixer = MIXERS.build("bilateral", {}, "mix.params", COUNTS)
    with pytest.raises(ConfigError, match="bilateral"):
        mixer.bind(loader=object())


# ------------------------------------------------------------------------ through the trainer

MIX_RUNS = [
    ("mixup", "{alpha: 1.0}"),
    ("manifold_mixup", "{location: stage2}"),
    ("manifold_mixup", "{location: pool}"),
    ("remix", "{kappa: 3.0, tau: 0.5}"),
    ("cutmix", "{alpha: 1.0}"),
    ("bilateral", "{alpha: 1.0}"),
]


@pytest.mark.parametrize(("name", "params"), MIX_RUNS)
def test_two_training_steps_with_each_mixer_and_fcc(name: str, params: str, cifar10_root: Path,
                                                    tmp_path: Path) -> None:
    cfg = load_config(None, tiny_run_overrides(
        cifar10_root, tmp_path / "run", "train.epochs=1", "train.milestones=[1]", "train.batch_size=112",
        "fcc.enabled=true", "fcc.start_epoch=1", f"mix.name={name}", f"mix.params={params}"))
    trainer = Trainer(cfg)
    assert trainer.train_loader.steps_per_epoch(1) == 2
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    record = [line for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]


    record = json.loads(record)
    assert math.isfinite(record["train_loss"]) and 0 <= record["train_acc"] <= 100
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
