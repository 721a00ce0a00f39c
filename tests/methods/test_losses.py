"""Every loss against an independent float64 re-derivation (explicit loops over samples and classes),
before and after its deferred re-weighting switch, plus sample weights, edge cases and hand-worked
numbers."""

from __future__ import annotations

import math

import pytest
import torch

from fcc_lt.config.load import load_config
from fcc_lt.methods.losses import Loss
from fcc_lt.util.errors import ConfigError
from fcc_lt.util.registry import LOSSES

COUNTS = [60, 25, 9, 3, 1]
B, C, D = 7, len(COUNTS), 6
DRW = 3  # first re-weighted epoch in the DRW cases


# ------------------------------------------------------------------------------- float64 references


def _lse(v: list[float]) -> float:
    m = max(v)
    return m + math.log(sum(math.exp(x - m) for x in v))


def _ce(row: list[float], y: int) -> float:
    return _lse(row) - row[y]


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _cb(beta: float) -> list[float]:
    raw = [(1 - beta) / (1 - beta**n) for n in COUNTS]
    return [r * C / sum(raw) for r in raw]


def _weighted(terms: list[float], ys: list[int], w: list[float] | None, s: list[float]) -> float:
    if w is None:
        return sum(si * t for si, t in zip(s, terms)) / len(terms)
    return sum(si * w[y] * t for si, y, t in zip(s, ys, terms)) / sum(w[y] for y in ys)


def ref_ce(z, ys, s, active, feats, zt, **_):
    return _weighted([_ce(r, y) for r, y in zip(z, ys)], ys, None, s)


def ref_cost_sensitive(z, ys, s, active, feats, zt, gamma=1.0):
    w = [(min(COUNTS) / n) ** gamma for n in COUNTS]
    return _weighted([_ce(r, y) for r, y in zip(z, ys)], ys, w if active else None, s)


def ref_class_balanced(z, ys, s, active, feats, zt, beta=0.999):
    return _weighted([_ce(r, y) for r, y in zip(z, ys)], ys, _cb(beta) if active else None, s)


def _focal_terms(z, ys, gamma):
    out = []
    for row, y in zip(z, ys):
        total = 0.0
        for c, x in enumerate(row):
            t = 1.0 if c == y else 0.0
            p = _sig(x)
            bce = -(t * math.log(p) + (1 - t) * math.log(1 - p))
            total += bce * abs(t - p) ** gamma
        out.append(total)
    return out


def ref_focal(z, ys, s, active, feats, zt, gamma=2.0, reweight=False):
    w = [min(COUNTS) / n for n in COUNTS] if reweight and active else [1.0] * C
    return sum(si * w[y] * t for si, y, t in zip(s, ys, _focal_terms(z, ys, gamma))) / len(ys)


def ref_cb_focal(z, ys, s, active, feats, zt, beta=0.999, gamma=0.5):
    w = _cb(beta) if active else [1.0] * C
    return sum(si * w[y] * t for si, y, t in zip(s, ys, _focal_terms(z, ys, gamma))) / len(ys)


def _smooth(row, y, eps):
    logp = [x - _lse(row) for x in row]
    q = [(1 - eps) * (c == y) + eps / C for c in range(C)]
    return -sum(qc * lp for qc, lp in zip(q, logp))


def ref_label_smoothing(z, ys, s, active, feats, zt, epsilon=0.1):
    return sum(si * _smooth(r, y, epsilon) for si, r, y in zip(s, z, ys)) / len(ys)


def ref_label_aware(z, ys, s, active, feats, zt, head=0.4, tail=0.1, shape="concave"):
    lo, hi = min(COUNTS), max(COUNTS)

    def eps(n):
        r = (n - lo) / (hi - lo)
        if shape == "concave":
            return tail + (head - tail) * math.sin(r * math.pi / 2)
        if shape == "linear":
            return tail + (head - tail) * r
        return head + (head - tail) * math.sin(1.5 * math.pi + r * math.pi / 2)

    return sum(si * _smooth(r, y, eps(COUNTS[y]) if active else tail) for si, r, y in zip(s, z, ys)) / len(ys)


def ref_ldam(z, ys, s, active, feats, zt, max_margin=0.5, scale=30.0, reweight=False, beta=0.9999):
    m = [n**-0.25 for n in COUNTS]
    m = [v * max_margin / max(m) for v in m]
    terms = []
    for row, y in zip(z, ys):
        adj = [scale * (x - (m[y] if c == y else 0.0)) for c, x in enumerate(row)]
        terms.append(_ce(adj, y))
    return _weighted(terms, ys, _cb(beta) if reweight and active else None, s)


def ref_seql_deterministic(z, ys, s, active, feats, zt, gamma=1.0, tail_ratio=0.05):
    """gamma 0 or 1 make the Bernoulli draws constant: every tail negative is dropped (1) or none (0)."""
    total, terms = sum(COUNTS), []
    for row, y in zip(z, ys):
        keep = [c for c in range(C) if c == y or not (active and gamma == 1.0 and COUNTS[c] / total < tail_ratio)]
        terms.append(_lse([row[c] for c in keep]) - row[y])
    return _weighted(terms, ys, None, s)


def ref_cdt(z, ys, s, active, feats, zt, gamma=0.2):
    a = [(max(COUNTS) / n) ** gamma if active else 1.0 for n in COUNTS]
    return _weighted([_ce([x / a[c] for c, x in enumerate(r)], y) for r, y in zip(z, ys)], ys, None, s)


def ref_balanced_softmax(z, ys, s, active, feats, zt):
    shift = [math.log(n) if active else 0.0 for n in COUNTS]
    return _weighted([_ce([x + shift[c] for c, x in enumerate(r)], y) for r, y in zip(z, ys)], ys, None, s)


def ref_logit_adjusted(z, ys, s, active, feats, zt, tau=1.0):
    shift = [tau * math.log(n / sum(COUNTS)) if active else 0.0 for n in COUNTS]
    return _weighted([_ce([x + shift[c] for c, x in enumerate(r)], y) for r, y in zip(z, ys)], ys, None, s)


def ref_influence_balanced(z, ys, s, active, feats, zt, alpha=1000.0):
    if not active:
        return ref_ce(z, ys, s, active, feats, zt)
    inv = [1.0 / n for n in COUNTS]
    w = [v * C / sum(inv) for v in inv]
    total = 0.0
    for row, y, f, si in zip(z, ys, feats, s):
        p = [math.exp(x - _lse(row)) for x in row]
        g = sum(abs(p[c] - (c == y)) for c in range(C))
        ib = alpha / (g * sum(abs(v) for v in f) + 1e-3)
        total += si * _ce(row, y) * w[y] * ib
    return total / len(ys)


def ref_ecm(z, ys, s, active, feats, zt):
    big_n = sum(COUNTS)
    total = 0.0
    for row, y, si in zip(z, ys, s):
        for c, x in enumerate(row):
            n, m = COUNTS[c], big_n - COUNTS[c]
            pos = math.log((n**0.25 + m**0.25) / m**0.25) if active else 0.0
            neg = math.log((n**0.25 + m**0.25) / n**0.25) if active else 0.0
            a = m / n
            w = a * math.log((1 + a) / a) if active else 1.0
            e_pos, e_neg = math.exp(x + pos), math.exp(-x + neg)
            p = e_pos / (e_pos + e_neg)
            t = 1.0 if c == y else 0.0
            total += si * w * -(t * math.log(p) + (1 - t) * math.log(1 - p))
    return total / len(ys)


def ref_dive(z, ys, s, active, feats, zt, temperature=3.0, alpha=0.5, power_norm=False, power=0.5,
             base="balanced_softmax"):
    t, pw = temperature, (power if power_norm else 1.0)
    kl = 0.0
    for row, trow, si in zip(z, zt, s):
        soft = [math.exp(x / t - _lse([v / t for v in trow])) ** pw for x in trow]
        q = [v / sum(soft) for v in soft]
        logp = [x / t - _lse([v / t for v in row]) for x in row]
        kl += si * sum(qc * (math.log(qc) - lp) for qc, lp in zip(q, logp))
    base_ref = {"balanced_softmax": ref_balanced_softmax, "ce": ref_ce}[base]
    return alpha * t * t * kl / len(ys) + (1 - alpha) * base_ref(z, ys, s, active, feats, zt)


# (name, params without drw_start_epoch, reference, has DRW)
CASES = [
    ("ce", {}, ref_ce, False),
    ("cost_sensitive_ce", {}, ref_cost_sensitive, True),
    ("cost_sensitive_ce", {"gamma": 0.5}, ref_cost_sensitive, True),
    ("class_balanced_ce", {}, ref_class_balanced, True),
    ("class_balanced_ce", {"beta": 0.9}, ref_class_balanced, True),
    ("focal", {}, ref_focal, False),
    ("focal", {"reweight": True}, ref_focal, True),
    ("focal", {"gamma": 0.0}, ref_focal, False),
    ("class_balanced_focal", {}, ref_cb_focal, True),
    ("class_balanced_focal", {"beta": 0.99, "gamma": 2.0}, ref_cb_focal, True),
    ("label_smoothing", {}, ref_label_smoothing, False),
    ("label_aware_smoothing", {}, ref_label_aware, True),
    ("label_aware_smoothing", {"shape": "linear"}, ref_label_aware, True),
    ("label_aware_smoothing", {"shape": "convex", "head": 0.3, "tail": 0.05}, ref_label_aware, True),
    ("ldam", {}, ref_ldam, False),
    ("ldam", {"reweight": True}, ref_ldam, True),
    ("ldam", {"reweight": True, "beta": 0.99, "max_margin": 0.3, "scale": 10.0}, ref_ldam, True),
    ("seql", {"gamma": 1.0, "tail_ratio": 0.05}, ref_seql_deterministic, True),
    ("seql", {"gamma": 0.0, "tail_ratio": 0.05}, ref_seql_deterministic, True),
    ("cdt", {}, ref_cdt, True),
    ("cdt", {"gamma": 0.4}, ref_cdt, True),
    ("balanced_softmax", {}, ref_balanced_softmax, True),
    ("logit_adjusted", {}, ref_logit_adjusted, True),
    ("logit_adjusted", {"tau": 0.5}, ref_logit_adjusted, True),
    ("influence_balanced", {}, ref_influence_balanced, True),
    ("influence_balanced", {"alpha": 10.0}, ref_influence_balanced, True),
    ("ecm", {}, ref_ecm, True),
    ("dive", {}, ref_dive, True),
    ("dive", {"temperature": 2.0, "power_norm": True, "power": 0.5, "alpha": 0.3}, ref_dive, True),
    ("dive", {"base": "ce"}, ref_dive, False),
]


def _batch(seed: int = 0, scale: float = 3.0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, C, generator=g, dtype=torch.float64) * scale
    y = torch.tensor([0, 1, 2, 3, 4, 0, 2])
    feats = torch.randn(B, D, generator=g, dtype=torch.float64).abs()
    zt = torch.randn(B, C, generator=g, dtype=torch.float64) * scale
    s = torch.rand(B, generator=g, dtype=torch.float64) + 0.5
    return z, y, feats, zt, s


def _call(loss: Loss, z, y, feats, zt, sample_weight=None):
    return loss(z.float(), y, features=feats.float(), teacher_logits=zt.float(), sample_weight=sample_weight)


def _case_id(case) -> str:
    return f"{case[0]}-" + "-".join(f"{k}={v}" for k, v in case[1].items())


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "sample_weight"])
def test_matches_float64_reference_before_and_after_drw(case, weighted):
    name, params, ref, has_drw = case
    z, y, feats, zt, s = _batch()
    sw = s.float() if weighted else None
    s_list = s.tolist() if weighted else [1.0] * B
    args = (z.tolist(), y.tolist(), s_list)
    kw = dict(params)
    # without DRW the weights/adjustments are active from epoch 1
    loss = LOSSES.build(name, params, "loss.params", COUNTS)
    loss.set_epoch(1)
    want = ref(*args, True, feats.tolist(), zt.tolist(), **kw)
    torch.testing.assert_close(_call(loss, z, y, feats, zt, sw).double(), torch.tensor(want, dtype=torch.float64),
                               rtol=2e-5, atol=1e-5)
    if not has_drw:
        return
    loss = LOSSES.build(name, {**params, "drw_start_epoch": DRW}, "loss.params", COUNTS)
    for epoch, active in ((1, False), (DRW - 1, False), (DRW, True), (DRW + 5, True)):
        loss.set_epoch(epoch)
        want = ref(*args, active, feats.tolist(), zt.tolist(), **kw)
        got = _call(loss, z, y, feats, zt, sw).double()
        torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=2e-5, atol=1e-5,
                                   msg=lambda m, e=epoch: f"epoch {e}: {m}")


def test_drw_changes_the_value_of_every_drw_loss():
    """Guards the reference test: before and after the switch really differ for each DRW loss."""
    z, y, feats, zt, _ = _batch()
    for name, params, _, has_drw in CASES:
        if not has_drw or (name == "seql" and params["gamma"] == 0.0):
            continue
        loss = LOSSES.build(name, {**params, "drw_start_epoch": DRW}, "loss.params", COUNTS)
        loss.set_epoch(DRW - 1)
        before = _call(loss, z, y, feats, zt)
        loss.set_epoch(DRW)
        assert not torch.allclose(before, _call(loss, z, y, feats, zt)), name


def _default_params(name: str) -> dict:
    return {"gamma": 1.0, "tail_ratio": 0.05} if name == "seql" else {}


def test_registry_lists_every_loss():
    assert set(LOSSES.names()) == {
        "ce", "cost_sensitive_ce", "class_balanced_ce", "focal", "class_balanced_focal", "label_smoothing",
        "label_aware_smoothing", "ldam", "seql", "cdt", "balanced_softmax", "influence_balanced",
        "logit_adjusted", "dive", "ecm",
    }
    tested = {c[0] for c in CASES}
    assert tested == set(LOSSES.names())


@pytest.mark.parametrize("name", LOSSES.names())
def test_builds_with_defaults_and_gives_finite_loss_and_gradients(name):
    loss = LOSSES.build(name, {}, "loss.params", COUNTS)
    assert isinstance(loss, Loss)
    z, y, feats, zt, _ = _batch(1)
    logits = z.float().requires_grad_(True)
    out = loss(logits, y, features=feats.float(), teacher_logits=zt.float())
    assert out.dim() == 0 and out.dtype == torch.float32 and torch.isfinite(out)
    out.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", LOSSES.names())
def test_sample_weight_semantics(name):
    """Ones == no weights; a scalar lam reproduces lam L(y_a) + (1 - lam) L(y_b) (the mixup form)."""
    loss = LOSSES.build(name, _default_params(name), "loss.params", COUNTS)
    z, y_a, feats, zt, _ = _batch(2)
    y_b = y_a.roll(1)
    plain = _call(loss, z, y_a, feats, zt)
    torch.testing.assert_close(_call(loss, z, y_a, feats, zt, torch.ones(B)), plain)
    torch.testing.assert_close(_call(loss, z, y_a, feats, zt, 1.0), plain)
    lam = 0.3
    mixed = _call(loss, z, y_a, feats, zt, lam) + _call(loss, z, y_b, feats, zt, 1 - lam)
    want = lam * plain + (1 - lam) * _call(loss, z, y_b, feats, zt)
    torch.testing.assert_close(mixed, want)
    lam_t = torch.tensor(lam)  # a 0-d device tensor, as the mixers produce
    torch.testing.assert_close(_call(loss, z, y_a, feats, zt, lam_t), lam * plain)


@pytest.mark.parametrize("name", LOSSES.names())
def test_sample_weight_rejects_a_wrong_shape(name):
    loss = LOSSES.build(name, _default_params(name), "loss.params", COUNTS)
    z, y, feats, zt, _ = _batch()
    with pytest.raises(ValueError, match="sample_weight"):
        _call(loss, z, y, feats, zt, torch.ones(B, 1))


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("counts", [[10, 10, 10, 10, 10], [50, 0, 7, 0, 1]], ids=["equal", "absent_classes"])
def test_equal_and_absent_counts_stay_finite(name, counts):
    params = {**_default_params(name)}
    if "drw_start_epoch" in {p.name for p in LOSSES.params(name)}:
        params["drw_start_epoch"] = 1
    if name in ("focal", "ldam"):
        params["reweight"] = True
    loss = LOSSES.build(name, params, "loss.params", counts)
    for buf in loss.buffers():
        if buf.is_floating_point():
            assert torch.isfinite(buf).all(), name
    z, y, feats, zt, _ = _batch(3)
    logits = z.float().requires_grad_(True)
    out = loss(logits, y, features=feats.float(), teacher_logits=zt.float())
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name", LOSSES.names())
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_extreme_logits_stay_finite_and_compute_in_float32(name, dtype):
    params = {**_default_params(name)}
    if name in ("focal", "ldam"):
        params["reweight"] = True
    loss = LOSSES.build(name, params, "loss.params", COUNTS)
    sign = torch.tensor([1.0, -1.0]).repeat(C * B)[: B * C].view(B, C)
    logits = (1e4 * sign).to(dtype).requires_grad_(True)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 2])
    out = loss(logits, y, features=torch.full((B, D), 1e3, dtype=dtype), teacher_logits=-1e4 * sign)
    assert out.dtype == torch.float32 and torch.isfinite(out), (name, out)
    out.backward()
    assert torch.isfinite(logits.grad.float()).all(), name


@pytest.mark.parametrize("name", LOSSES.names())
def test_autocast_does_not_lower_the_loss_precision(name):
    loss = LOSSES.build(name, _default_params(name), "loss.params", COUNTS)
    z, y, feats, zt, _ = _batch(4)
    want = _call(loss, z, y, feats, zt)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _call(loss, z, y, feats, zt)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_seql_drops_tail_negatives_with_probability_gamma():
    """Monte Carlo mean over many identical rows vs the exact expectation over the 2^2 drop patterns."""
    counts = [500, 400, 5, 3]  # tail (share < 0.05): classes 2 and 3
    gamma = 0.7
    loss = LOSSES.build("seql", {"gamma": gamma, "tail_ratio": 0.05}, "loss.params", counts)
    row = [0.5, -0.3, 1.2, 0.8]
    n = 20000
    torch.manual_seed(0)
    got = loss(torch.tensor([row] * n), torch.zeros(n, dtype=torch.long)).item()
    want = 0.0
    for drop2 in (0, 1):
        for drop3 in (0, 1):
            p = (gamma if drop2 else 1 - gamma) * (gamma if drop3 else 1 - gamma)
            keep = [0, 1] + ([2] if not drop2 else []) + ([3] if not drop3 else [])
            want += p * (_lse([row[c] for c in keep]) - row[0])
    # per-row loss spread is < 1, so the Monte Carlo standard error is < 1 / sqrt(n) ~ 0.007
    assert abs(got - want) < 0.02, (got, want)
    # a head-class target never sees its own logit dropped, and gamma = 0 is plain CE
    plain = LOSSES.build("seql", {"gamma": 0.0, "tail_ratio": 0.05}, "loss.params", counts)
    ce = LOSSES.build("ce", {}, "loss.params", counts)
    z = torch.tensor([row])
    torch.testing.assert_close(plain(z, torch.tensor([2])), ce(z, torch.tensor([2])))


def test_class_balanced_weights_hand_worked():
    # counts [100, 10, 1], beta 0.9: raw (1 - b) / (1 - b^n) = 0.1 / (1 - 0.9^n)
    #   n=100: 0.9^100 = 2.65614e-5 -> 0.1000026562;  n=10: 0.9^10 = 0.3486784401 -> 0.1 / 0.6513215599
    #   = 0.1535339933;  n=1: 1.  Sum 1.2535366495 -> times 3 / sum: [0.2393292, 0.3674420, 2.3932288]
    loss = LOSSES.build("class_balanced_ce", {"beta": 0.9}, "loss.params", [100, 10, 1])
    torch.testing.assert_close(loss.class_weight, torch.tensor([0.2393292, 0.3674420, 2.3932288]),
                               rtol=0, atol=2e-7)
    # two samples of classes 0 and 2: logits 0 give CE ln 3; logits [0, 0, ln 2] give CE ln 4 - ln 2 = ln 2;
    # the weighted mean divides by the sum of the two samples' class weights
    z = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, math.log(2.0)]])
    got = loss(z, torch.tensor([0, 2]))
    want = (0.2393292 * math.log(3) + 2.3932288 * math.log(2)) / (0.2393292 + 2.3932288)
    assert abs(got.item() - want) < 1e-6


def test_ldam_margins_and_value_hand_worked():
    # m_c = 0.5 * n_c^-1/4 / 1^-1/4: 100 -> 0.5 / 3.1622777 = 0.1581139; 10 -> 0.5 / 1.7782794 = 0.2811707
    loss = LOSSES.build("ldam", {}, "loss.params", [100, 10, 1])
    torch.testing.assert_close(loss.margins, torch.tensor([0.1581139, 0.2811707, 0.5]), rtol=0, atol=1e-7)
    # cosine logits all 0, target 2: scaled logits [0, 0, -15], loss = 15 + ln(2 + e^-15) = 15.6931473
    got = loss(torch.zeros(1, 3), torch.tensor([2]))
    assert abs(got.item() - 15.6931473) < 1e-5


def test_cost_sensitive_weights_hand_worked():
    loss = LOSSES.build("cost_sensitive_ce", {"gamma": 0.5}, "loss.params", [100, 25, 4])
    torch.testing.assert_close(loss.class_weight, torch.tensor([0.2, 0.4, 1.0]))


def test_label_aware_epsilon_hand_worked_and_equal_counts():
    # counts [100, 55, 10]: r = [1, 0.5, 0]; concave eps = 0.1 + 0.3 sin(r pi / 2) = [0.4, 0.3121320, 0.1]
    loss = LOSSES.build("label_aware_smoothing", {}, "loss.params", [100, 55, 10])
    torch.testing.assert_close(loss.class_epsilon, torch.tensor([0.4, 0.3121320, 0.1]))
    equal = LOSSES.build("label_aware_smoothing", {}, "loss.params", [5, 5, 5])
    torch.testing.assert_close(equal.class_epsilon, torch.full((3,), 0.1))


def test_dive_needs_teacher_and_forwards_epochs_to_its_base():
    loss = LOSSES.build("dive", {"drw_start_epoch": 4}, "loss.params", COUNTS)
    assert loss.needs_teacher and not LOSSES.get("ce").needs_teacher
    z, y, *_ = _batch()
    with pytest.raises(ConfigError, match="teacher"):
        loss(z.float(), y)
    loss.set_epoch(4)
    assert loss.base.epoch == 4 and loss.base.reweighting
    loss.set_epoch(3)
    assert not loss.base.reweighting


def test_influence_balanced_needs_features():
    loss = LOSSES.build("influence_balanced", {}, "loss.params", COUNTS)
    z, y, *_ = _batch()
    with pytest.raises(ConfigError, match="features"):
        loss(z.float(), y)


@pytest.mark.parametrize("name, params, key", [
    ("class_balanced_ce", {"beta": 1.0}, "loss.params.beta"),
    ("focal", {"drw_start_epoch": 5}, "loss.params.drw_start_epoch"),
    ("ldam", {"drw_start_epoch": 5}, "loss.params.drw_start_epoch"),
    ("cdt", {"drw_start_epoch": 0}, "loss.params.drw_start_epoch"),
    ("seql", {"gamma": 1.5}, "loss.params.gamma"),
    ("label_smoothing", {"epsilon": -0.1}, "loss.params.epsilon"),
    ("dive", {"base": "dive"}, "loss.params.base"),
    ("dive", {"base": "ce", "drw_start_epoch": 3}, "loss.params.drw_start_epoch"),
    ("dive", {"base_params": {"drw_start_epoch": 3}}, "loss.params.base_params.drw_start_epoch"),
])
def test_bad_parameters_name_the_key(name, params, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        LOSSES.build(name, params, "loss.params", COUNTS)


def test_logits_of_the_wrong_width_are_rejected():
    loss = LOSSES.build("ce", {}, "loss.params", COUNTS)
    with pytest.raises(ValueError, match="logits"):
        loss(torch.zeros(2, C + 1), torch.zeros(2, dtype=torch.long))


def test_config_validation_checks_drw_epoch_and_dive_base():
    with pytest.raises(ConfigError, match=r"loss\.params\.drw_start_epoch"):
        load_config(None, ["loss.name=cdt", "loss.params.drw_start_epoch=201"])
    with pytest.raises(ConfigError, match=r"loss\.params\.base.*did you mean 'balanced_softmax'"):
        load_config(None, ["loss.name=dive", "loss.params.base=balanced_sofmax"])
    with pytest.raises(ConfigError, match=r"loss\.params\.base_params\.gama"):
        load_config(None, ["loss.name=dive", "loss.params.base=cdt", "loss.params.base_params={gama: 1}"])
    cfg = load_config(None, ["loss.name=ldam", "loss.params.reweight=true", "loss.params.drw_start_epoch=160"])
    assert cfg.loss.params == {"reweight": True, "drw_start_epoch": 160}
    with pytest.raises(ConfigError, match=r"train\.epochs=200"):
        load_config(None, ["loss.name=cdt", "loss.params.drw_start_epoch=300"])


def test_drw_start_epoch_is_rescaled_with_a_shortened_schedule(tmp_path):
    path = tmp_path / "bs.yaml"
    path.write_text("train: {epochs: 200, schedule_epochs: 200}\n"
                    "loss: {name: balanced_softmax, params: {drw_start_epoch: 161}}\n")
    cfg = load_config(path, ["train.epochs=20"])
    assert cfg.loss.params["drw_start_epoch"] == 1 + round(160 * 20 / 200)


@pytest.mark.parametrize("overrides, message", [
    (["loss.name=focal", "loss.params.gamma=-1"], "loss.params.gamma: expected a non-negative number, got -1.0"),
    (["loss.name=focal", "loss.params.drw_start_epoch=5"],
     "loss.params.drw_start_epoch: expected null unless loss.params.reweight is true"),
    (["loss.name=dive", "distill.teacher=t", "loss.params.alpha=2"], "loss.params.alpha: expected a number in [0, 1]"),
    (["loss.name=dive", "distill.teacher=t", "loss.params.base=cdt", "loss.params.base_params={gamma: -1}"],
     "loss.params.base_params.gamma: expected a non-negative number"),
    (["mix.name=remix", "mix.params.tau=2"], "mix.params.tau: expected a pixel share in [0, 1], got 2.0"),
    (["sampler.name=reverse", "sampler.params.drs_start_epoch=0"],
     "sampler.params.drs_start_epoch: expected the first active epoch (>= 1), got 0"),
])
def test_part_parameter_ranges_are_checked_with_the_config(overrides, message):
    """One validation path: the ranges a part's constructor used to check only when it was built (after
    the data was loaded, so `fcc config` called such a config valid) are checked with the config."""
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert message in str(err.value)
