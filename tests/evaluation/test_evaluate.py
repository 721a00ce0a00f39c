"""Evaluation checked against independent computations: the official test files read by hand, the network
rebuilt from the checkpoint, ``argmax(network(x)) == y`` counted in plain Python. A wrong wire anywhere in
between (labels reaching the forward, FCC factors at evaluation, the wrong split, tau ignored) changes these
numbers."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from evaluation_fixtures import copy_run, trained_fcc_run  # noqa: F401 - the fcc_run fixture
from torch import Tensor, nn

from conftest import tiny_run_overrides
from fcc_lt.cli.main import main
from fcc_lt.config.load import load_config
from fcc_lt.config.schema import Config
from fcc_lt.data.augment import Normalize
from fcc_lt.data.build import build_splits
from fcc_lt.data.datasets import ArrayDataset
from fcc_lt.data.loader import DeviceEvalLoader
from fcc_lt.engine.trainer import Trainer
from fcc_lt.evaluation.passes import run_eval
from fcc_lt.models.network import build_network
from fcc_lt.util.distributed import DistContext

# The published CIFAR-10 channel statistics, written out here rather than taken from fcc
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def official_test_split(root: Path) -> tuple[Tensor, Tensor]:
    """The fixture's test_batch read with pickle and NumPy only: normalised float images and labels."""
    with open(root / "cifar-10-batches-py" / "test_batch", "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    pixels = torch.from_numpy(np.asarray(batch[b"data"], dtype=np.float64)).view(-1, 3, 32, 32)
    mean, std = torch.tensor(MEAN, dtype=torch.float64), torch.tensor(STD, dtype=torch.float64)
    x = (pixels / 255 - mean[:, None, None]) / std[:, None, None]
    return x.float(), torch.tensor(batch[b"labels"])


def normalised(images: Tensor) -> Tensor:
    mean, std = torch.tensor(MEAN, dtype=torch.float64), torch.tensor(STD, dtype=torch.float64)
    return ((images.double() / 255 - mean[:, None, None]) / std[:, None, None]).float()


def network_from(run: Path, which: str) -> nn.Module:
    """The run's network rebuilt from its config.yaml and the checkpoint's weights (no run loader)."""
    net = build_network(load_config(run / "config.yaml"), 10)
    net.load_state_dict(torch.load(run / "checkpoints" / f"{which}.pt", weights_only=True)["model"])
    return net.eval()


def counted(logits: Tensor, labels: Tensor, num_classes: int = 10) -> dict:
    """top1 / top5 / per-class accuracy and the confusion matrix of ``logits``, counted in Python."""
    pred = logits.argmax(dim=1).tolist()
    top5 = logits.topk(5, dim=1).indices.tolist()
    y = labels.tolist()
    totals, hits = [0] * num_classes, [0] * num_classes
    confusion = [[0] * num_classes for _ in range(num_classes)]
    for p, t in zip(pred, y):
        totals[t] += 1
        hits[t] += p == t
        confusion[t][p] += 1
    return {"top1": 100.0 * sum(hits) / len(y), "top5": 100.0 * sum(t in t5 for t5, t in zip(top5, y)) / len(y),
            "per_class": [100.0 * h / n if n else None for h, n in zip(hits, totals)], "num_samples": len(y),
            "confusion": confusion}


def read_confusion(path: Path) -> list[list[int]]:
    return [[int(v) for v in line.split(",")[1:]] for line in path.read_text().splitlines()[1:]]


def assert_matches(result: dict, expected: dict) -> None:
    for key in ("top1", "top5", "per_class", "num_samples"):
        assert result[key] == expected[key], key


def test_a_pass_counts_what_argmax_of_the_network_counts() -> None:
    """run_eval on a fixture loader against argmax(network(x)) == y, class by class and cell by cell."""
    torch.manual_seed(0)
    cfg = load_config(None, ["model.backbone=resnet_cifar", "model.backbone_params={depth: 8, width: 4}"])
    net = build_network(cfg, 10).eval()
    images = torch.randint(0, 256, (53, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (53,), generator=torch.Generator().manual_seed(1))
    loader = DeviceEvalLoader(ArrayDataset(images, labels), 16, torch.device("cpu"), normalize=Normalize(MEAN, STD))
    tally = run_eval(net, loader, 10, DistContext())
    with torch.no_grad():
        expected = counted(net(normalised(images)), labels)
    assert tally.total.tolist() == torch.bincount(labels, minlength=10).tolist()
    assert 100.0 * int(tally.top1.sum()) / 53 == expected["top1"]
    assert 100.0 * int(tally.top5.sum()) / 53 == expected["top5"]
    assert tally.confusion_matrix().tolist() == expected["confusion"]


def test_fcc_eval_counts_what_argmax_of_the_network_counts(fcc_run: Path, cifar10_root: Path, tmp_path: Path) -> None:
    """`fcc eval` of an FCC run: its file and confusion matrix are the plain network's argmax on the
    official test images (FCC's label-dependent factors belong to training only)."""
    run = copy_run(fcc_run, tmp_path)
    assert main(["eval", str(run)]) == 0
    result = json.loads((run / "eval_last_test.json").read_text())
    x, y = official_test_split(cifar10_root)
    with torch.no_grad():
        expected = counted(network_from(run, "last")(x), y)
    assert_matches(result, expected)
    assert read_confusion(run / "confusion_last_test.csv") == expected["confusion"]


def test_the_final_evaluation_honours_eval_split_val(fcc_run: Path) -> None:
    """eval.split: val, eval.checkpoint: best -> eval.json counts best.pt on the 3 x 10 validation images."""
    result = json.loads((fcc_run / "eval.json").read_text())
    assert (result["split"], result["checkpoint"]) == ("val", "checkpoints/best.pt")
    val = build_splits(load_config(fcc_run / "config.yaml")).val
    assert val is not None and len(val) == 30
    with torch.no_grad():
        expected = counted(network_from(fcc_run, "best")(normalised(val.images)), val.labels)
    assert_matches(result, expected)
    assert read_confusion(fcc_run / "confusion.csv") == expected["confusion"]


def test_fcc_eval_never_replaces_the_runs_own_eval_json(fcc_run: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(fcc_run, tmp_path)
    before = (run / "eval.json").read_bytes()
    own = json.loads(before)
    assert main(["eval", str(run)]) == 0  # last.pt on test: a file named after that
    assert (run / "eval.json").read_bytes() == before
    written = json.loads((run / "eval_last_test.json").read_text())
    assert (written["split"], written["checkpoint"]) == ("test", "checkpoints/last.pt")
    assert f"wrote {run / 'eval_last_test.json'} (and confusion_last_test.csv" in capsys.readouterr().out
    # the run's own choice, asked for explicitly, gives the run's numbers again, in a file of its own
    assert main(["eval", str(run), "--checkpoint", "best", "--split", "val"]) == 0
    again = json.loads((run / "eval_best_val.json").read_text())
    assert (again["top1"], again["per_class"]) == (own["top1"], own["per_class"])
    assert (run / "eval.json").read_bytes() == before


def tiny_tau_trainer(cifar10_root: Path, out: Path, *extra: str) -> Trainer:
    cfg: Config = load_config(None, tiny_run_overrides(cifar10_root, out, "train.epochs=1", "train.milestones=[]",
                                                        *extra))
    return Trainer(cfg)


def spread_head_norms(net: nn.Module) -> None:
    """Class weight norms from 1 to ~30: tau-normalisation then changes many predictions."""
    with torch.no_grad():
        net.head.fc.weight.mul_(torch.logspace(0, 1.5, 10)[:, None])


def test_eval_json_of_a_tau_norm_run_is_the_normalised_forward(cifar10_root: Path, tmp_path: Path) -> None:
    trainer = tiny_tau_trainer(cifar10_root, tmp_path / "run", "eval.tau_norm=1.0")
    trainer.fit()
    net = trainer.model
    spread_head_norms(net)
    result = trainer.final_eval()
    x, y = official_test_split(cifar10_root)
    with torch.no_grad():
        features = net.eval().features(x).double()
        w, b = net.head.fc.weight.double(), net.head.fc.bias.double()
        normalised_logits = features @ (w / w.norm(dim=1, keepdim=True)).T + b
        plain_logits = features @ w.T + b
    assert not torch.equal(normalised_logits.argmax(1), plain_logits.argmax(1))  # tau matters on this model
    assert result["tau_norm"] == 1.0
    assert_matches(json.loads((tmp_path / "run" / "eval.json").read_text()), counted(normalised_logits, y))


def test_the_tau_sweep_selects_on_the_validation_split(fcc_run: Path, tmp_path: Path) -> None:
    """Each tau's validation top-1 recomputed by hand from the validation images, the choice re-derived."""
    run = copy_run(fcc_run, tmp_path)
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    net = network_from(run, "last")
    spread_head_norms(net)
    state["model"] = net.state_dict()
    torch.save(state, run / "checkpoints" / "last.pt")
    taus = [0.0, 0.5, 1.0, 2.0]
    assert main(["eval", str(run), "--tau-sweep", ",".join(map(str, taus))]) == 0
    sweep = json.loads((run / "tau_sweep.json").read_text())
    val = build_splits(load_config(run / "config.yaml")).val
    assert val is not None
    with torch.no_grad():
        features = net.features(normalised(val.images)).double()
    w, b = net.head.fc.weight.detach().double(), net.head.fc.bias.detach().double()
    by_hand = [counted(features @ (w / w.norm(dim=1, keepdim=True) ** tau).T + b, val.labels)["top1"]
               for tau in taus]
    assert len(set(by_hand)) > 1  # the taus really differ on this model
    assert [row["top1"] for row in sweep["sweep"]] == by_hand
    assert sweep["best_tau"] == taus[by_hand.index(max(by_hand))]


REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_documented_tau_sweep_recipe_runs(cifar10_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The two commands of docs/methods.md's tau sweep, as written, on fixture data (the tiny network and a
    2-epoch schedule added to the training line)."""
    import shlex

    text = (REPO / "docs" / "methods.md").read_text()
    block = text[text.index("**Sweep**"):].split("```")[1]
    commands = [shlex.split(line) for line in block.splitlines() if line.strip().startswith("fcc ")]
    assert [c[:2] for c in commands] == [["fcc", "train"], ["fcc", "eval"]]
    train, sweep = commands[0][1:], commands[1][1:]
    if (REPO / train[1]).is_file():
        train[1] = str(REPO / train[1])
    monkeypatch.chdir(tmp_path)
    tiny = [o for o in tiny_run_overrides(cifar10_root, tmp_path) if not o.startswith("out=")]
    assert main([*train, *tiny]) == 0
    assert main(sweep) == 0
    result = json.loads((Path(sweep[1]) / "tau_sweep.json").read_text())
    assert (result["selected_on"], result["reported_on"]) == ("val", "test") and len(result["taus"]) == 21
    capsys.readouterr()
