"""What a training step optimises around the pure network (fcc_lt.engine.step): FCC on the pooled features
(float32), manifold mixing inside the forward pass, which FCC factor a mixed sample gets, and the mixed loss
and accuracy."""

from __future__ import annotations

import pytest
import torch

from fcc_lt.engine.step import MethodParts, TrainingForward, fcc_factors, mixed_features, objective
from fcc_lt.methods.fcc import FeatureClusterCompression
from fcc_lt.methods.mixers import FeatureMix, MixedBatch, Mixer
from fcc_lt.models.network import Network
from fcc_lt.models.resnet_cifar import resnet_cifar
from fcc_lt.util.errors import ConfigError
from fcc_lt.util.registry import HEADS, LOSSES, MIXERS

COUNTS = [600, 200, 100, 50]
LOCATIONS = ["stage1", "stage2", "stage3", "pool", "logits"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_network() -> Network:
    torch.manual_seed(0)
    backbone = resnet_cifar(depth=8, width=4)
    head = HEADS.build("linear", {}, "model.head_params", backbone.out_channels, len(COUNTS))
    return Network(backbone, head).train()


class FixedMixer(Mixer):
    def __init__(self, batch: MixedBatch) -> None:
        super().__init__(COUNTS)
        self.batch = batch

    def __call__(self, images, labels, generator, share=None) -> MixedBatch:
        return self.batch


def run(net: Network, batch: MixedBatch, gamma: float | None = 0.5, epoch: int = 1,
        start: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, features) of the objective's forward for ``batch`` (FCC with ``gamma``, or none)."""
    fcc = FeatureClusterCompression(COUNTS, gamma=gamma, start_epoch=start) if gamma is not None else None
    return TrainingForward(net)(batch.images, fcc_factors(fcc, batch, epoch), batch.feature_mix)


def plain(x: torch.Tensor, labels: torch.Tensor) -> MixedBatch:
    return MixedBatch(x, labels)


def manifold(location: str, lam: float, perm: torch.Tensor, labels: torch.Tensor, images: torch.Tensor) -> MixedBatch:
    lam_t = torch.tensor(lam)
    return MixedBatch(images, labels, labels[perm], lam_t.expand(len(labels)), FeatureMix(location, lam_t, perm))


def tau_float64(labels: torch.Tensor, gamma: float) -> torch.Tensor:
    """FCC factors recomputed: rank k by count (largest first; COUNTS is already sorted), 1 + g - k g / C."""
    return 1 + gamma - labels.double() * gamma / len(COUNTS)


@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = gen(9)
    x = torch.randn(6, 3, 32, 32, generator=g)
    labels = torch.tensor([0, 1, 2, 3, 0, 2])
    perm = torch.tensor([3, 0, 5, 1, 2, 4])
    return x, labels, perm


def test_the_network_forward_takes_only_images() -> None:
    import inspect

    assert list(inspect.signature(Network.forward).parameters) == ["self", "x"]
    net = tiny_network().eval()
    x = torch.randn(2, 3, 32, 32, generator=gen(1))
    torch.testing.assert_close(net(x), net.head(net.features(x)))
    assert net.features(x).shape == (2, 16)


def test_fcc_scales_the_pooled_features_by_the_labels_factors(data) -> None:
    x, labels, _ = data
    net = tiny_network()
    logits, feats = run(net, plain(x, labels), gamma=0.8)
    expected = net.features(x).double() * tau_float64(labels, 0.8)[:, None]
    torch.testing.assert_close(feats.double(), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, net.head(feats))
    # before the start epoch the factors are ones: exactly the plain forward
    before, _ = run(net, plain(x, labels), gamma=0.8, epoch=4, start=5)
    assert torch.equal(before, net.head(net.features(x)))


@pytest.mark.parametrize("location", LOCATIONS)
@pytest.mark.parametrize("gamma", [None, 0.5])
def test_manifold_mixing_with_lambda_one_is_the_unmixed_forward(location: str, gamma: float | None, data) -> None:
    x, labels, perm = data
    net = tiny_network()
    plain_logits, plain_feats = run(net, plain(x, labels), gamma)
    logits, feats = run(net, manifold(location, 1.0, perm, labels, x), gamma)
    torch.testing.assert_close(logits, plain_logits, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(feats, plain_feats, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("location", LOCATIONS)
def test_manifold_mixing_with_lambda_zero_is_the_partner_forward(location: str, data) -> None:
    x, labels, perm = data
    net = tiny_network()
    plain_logits, _ = run(net, plain(x, labels))
    mixed, _ = run(net, manifold(location, 0.0, perm, labels, x))
    torch.testing.assert_close(mixed, plain_logits[perm], atol=1e-4, rtol=1e-4)  # BN batch stats: float order only


def _manual_forward(net: Network, x: torch.Tensor, stage: int, mix: FeatureMix,
                    factors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h = net.backbone.stem(x)
    for i, block in enumerate(net.backbone.stages, start=1):
        h = block(h)
        if i == stage:
            h = mix.lam * h + (1 - mix.lam) * h[mix.perm]
    f = h.mean(dim=(2, 3)) * factors.float()[:, None]
    return net.head(f), f


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_manifold_mixing_at_a_stage_mixes_there_and_fcc_uses_the_label_weights(stage: int, data) -> None:
    x, labels, perm = data
    net = tiny_network()
    batch = manifold(f"stage{stage}", 0.3, perm, labels, x)
    logits, feats = run(net, batch, gamma=0.5)
    factors = 0.3 * tau_float64(labels, 0.5) + 0.7 * tau_float64(labels[perm], 0.5)
    ref_logits, ref_feats = _manual_forward(net, x, stage, batch.feature_mix, factors)
    torch.testing.assert_close(feats, ref_feats, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    other, _ = run(net, manifold(f"stage{stage % 3 + 1}", 0.3, perm, labels, x))
    assert not torch.allclose(other, logits, atol=1e-3)  # and it differs from mixing at another stage


def test_mixing_at_pool_and_logits_happens_after_fcc_with_own_labels(data) -> None:
    x, labels, perm = data
    net = tiny_network()
    plain_logits, plain_feats = run(net, plain(x, labels), gamma=0.8)
    logits, feats = run(net, manifold("pool", 0.3, perm, labels, x), gamma=0.8)
    torch.testing.assert_close(feats, 0.3 * plain_feats + 0.7 * plain_feats[perm], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(logits, net.head(feats))
    logits, _ = run(net, manifold("logits", 0.3, perm, labels, x), gamma=0.8)
    torch.testing.assert_close(logits, 0.3 * plain_logits + 0.7 * plain_logits[perm], atol=1e-6, rtol=1e-5)


def test_fcc_factor_of_input_mixed_samples_is_the_label_weighted_tau(data) -> None:
    x, labels, perm = data
    net = tiny_network()
    w = torch.tensor([0.0, 0.25, 0.5, 1.0, 0.9, 0.1])
    batch = MixedBatch(x, labels, labels[perm], w)
    _, feats = run(net, batch, gamma=1.0)
    expected = w.double() * tau_float64(labels, 1.0) + (1 - w.double()) * tau_float64(labels[perm], 1.0)
    torch.testing.assert_close(feats.double(), net.features(x).double() * expected[:, None], atol=1e-5, rtol=1e-5)
    # a mixer may set the factors' weight apart from the label weight: the original remix's label a for all
    batch.factor_weight_a = torch.ones(6)
    _, feats = run(net, batch, gamma=1.0)
    expected = tau_float64(labels, 1.0)
    torch.testing.assert_close(feats.double(), net.features(x).double() * expected[:, None], atol=1e-5, rtol=1e-5)
    # before FCC's start epoch the mixed path scales nothing
    _, feats = run(net, batch, gamma=1.0, epoch=4, start=5)
    torch.testing.assert_close(feats, net.features(x))


def test_manifold_location_must_exist_in_the_backbone(data) -> None:
    x, labels, perm = data
    net = tiny_network()
    mixer = MIXERS.build("manifold_mixup", {"location": "stage4"}, "mix.params", COUNTS)
    with pytest.raises(ConfigError, match="3 stages"):
        mixer.bind(model=net)
    with pytest.raises(ValueError, match="3 stages"):
        mixed_features(net, x, manifold("stage4", 0.5, perm, labels, x).feature_mix)
    MIXERS.build("manifold_mixup", {"location": "stage3"}, "mix.params", COUNTS).bind(model=net)


def test_objective_loss_and_accuracy_match_an_independent_computation(data) -> None:
    x, labels, perm = data
    net = tiny_network()
    w = torch.tensor([0.0, 0.25, 0.5, 1.0, 0.9, 0.1])
    batch = MixedBatch(x, labels, labels[perm], w)
    fcc = FeatureClusterCompression(COUNTS, gamma=0.5)
    criterion = LOSSES.build("ce", {}, "loss.params", COUNTS)
    out = objective(TrainingForward(net), MethodParts(criterion, FixedMixer(batch), fcc), x, labels, 1, gen(0))
    factors = w.double() * tau_float64(labels, 0.5) + (1 - w.double()) * tau_float64(labels[perm], 0.5)
    logits = net.head(net.features(x) * factors.float()[:, None]).double()
    logp = torch.log_softmax(logits, dim=1)
    wd = w.double()
    nll_a = -logp[torch.arange(6), labels]
    nll_b = -logp[torch.arange(6), labels[perm]]
    expected = (wd * nll_a + (1 - wd) * nll_b).mean()
    torch.testing.assert_close(out.loss.double(), expected, atol=1e-5, rtol=1e-5)
    pred = logits.argmax(dim=1)
    correct = float((wd * (pred == labels) + (1 - wd) * (pred == labels[perm])).sum())
    assert float(out.correct) == pytest.approx(correct)


def test_the_loss_sees_the_scaled_features(data) -> None:
    """Influence-balanced and other feature-using losses get the features the head saw (scaled by FCC)."""
    x, labels, _ = data
    net = tiny_network()
    seen = {}

    class Spy(type(LOSSES.build("ce", {}, "loss.params", COUNTS))):
        def forward(self, logits, targets, *, features=None, **kwargs):
            seen["features"] = features
            return super().forward(logits, targets, features=features, **kwargs)

    fcc = FeatureClusterCompression(COUNTS, gamma=0.5)
    objective(TrainingForward(net), MethodParts(Spy(COUNTS), FixedMixer(plain(x, labels)), fcc), x, labels, 1, gen(0))
    expected = net.features(x).double() * tau_float64(labels, 0.5)[:, None]
    torch.testing.assert_close(seen["features"].double(), expected, atol=1e-5, rtol=1e-5)
