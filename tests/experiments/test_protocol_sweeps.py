"""The paper-protocol sweep specs of benchmarks/fcc_protocol_gpu.sh expand, by name from any folder, into
CE / CE + FCC pairs at IF 100 over five seeds that differ only in FCC, with the 200-epoch schedule (FCC from
epoch 51) and a held-out validation split for `fcc analyze`'s logit adjustment."""

from __future__ import annotations

from pathlib import Path

import pytest

from fcc_lt.config.recipes import resolve_sweep
from fcc_lt.experiments.sweep import plan as sweep
from fcc_lt.experiments.sweep.spec import load_spec


@pytest.mark.parametrize(("spec", "dataset", "gamma", "val"), [("fcc_protocol_cifar10_lt", "cifar10", 0.5, 50),
                                                               ("fcc_protocol_cifar100_lt", "cifar100", 1.0, 10)])
def test_protocol_spec_is_ce_against_ce_fcc_over_five_seeds(spec: str, dataset: str, gamma: float, val: int,
                                                            monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # by name, from any folder
    path = resolve_sweep(spec)
    assert "../" not in path.read_text() and "shared" not in path.read_text()
    runs = sweep.expand(load_spec(path))
    assert {r.resolved["data"]["root"] for r in runs} == {"data"}
    assert sorted(r.name for r in runs) == sorted(f"{c}__seed{s}" for c in ("ce_if100", "ce_fcc_if100")
                                                  for s in range(5))
    for seed in range(5):
        ce, fcc = (next(r.resolved for r in runs if r.name == f"{c}__seed{seed}") for c in ("ce_if100", "ce_fcc_if100"))
        assert (ce["seed"], ce["data"]["dataset"], ce["data"]["imbalance_factor"]) == (seed, dataset, 100)
        assert (ce["train"]["epochs"], ce["data"]["val_per_class"], ce["model"]["backbone"]) == (200, val, "resnet32")
        assert (ce["fcc"]["enabled"], fcc["fcc"]["enabled"]) == (False, True)
        assert (fcc["fcc"]["gamma"], fcc["fcc"]["start_epoch"]) == (gamma, 51)
        assert {k: v for k, v in ce.items() if k != "fcc"} == {k: v for k, v in fcc.items() if k != "fcc"}
