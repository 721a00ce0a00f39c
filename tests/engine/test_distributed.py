"""Multi-process training (torchrun + DDP on CPU/gloo) against single-process runs, and its pieces.

Why the comparisons are exact in principle: every rank draws the same global order, augmentation and
mixing streams, and takes positions rank::world of each global batch; micro-batch i of a rank takes
positions i::k of that (fcc_lt.engine.step.TrainingStep). With BatchNorm in training mode each rank normalises
with the statistics of its own half batch, so a 2-process run is compared with a 1-process run with
``grad_accum_steps: 2``, whose two micro-batches are exactly those halves: the same forward passes, and
DDP's gradient average equals the weighted sum of the micro-batch gradients. Only BN's running
statistics differ (rank 0's half vs both halves): they feed neither the training forward nor the
gradients, so they are excluded from the weight comparison. Single-threaded math on both sides keeps
even the float reduction order the same (torchrun sets OMP_NUM_THREADS=1 for its workers).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import subprocess_env, tiny_run_overrides
from fcc_lt.config.load import load_config
from fcc_lt.data.augment import Normalize
from fcc_lt.data.build import build_splits
from fcc_lt.data.loader import DeviceLoader
from fcc_lt.engine.build import build_sampler
from fcc_lt.engine.trainer import Trainer
from fcc_lt.evaluation.evaluate import evaluate_run
from fcc_lt.evaluation.run_loader import load_run_config
from fcc_lt.models.checkpoint_file import load_checkpoint
from fcc_lt.util.distributed import DistContext, in_turns
from fcc_lt.util.errors import ConfigError
from fcc_lt.util.registry import SAMPLERS

WORKER = Path(__file__).resolve().parents[1] / "ddp_worker.py"
BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def trained_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.endswith(BN_STATS)}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-6) -> None:
    a, b = trained_weights(a), trained_weights(b)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=key)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def run_single(overrides: list[str]) -> Trainer:
    trainer = Trainer(load_config(None, overrides), overwrite=True, ctx=DistContext())
    trainer.fit()
    return trainer


# ------------------------------------------------------------------------------ the 2-process launch


def base(root: Path, out: Path, *extra: str) -> list[str]:
    # no confusion PNG: matplotlib would double the cost of these tiny runs
    return tiny_run_overrides(root, out, "train.log_every=1", "eval.confusion_png_max_classes=0", *extra)


@pytest.fixture(scope="module")
def ddp_runs(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One torchrun launch of 2 CPU processes running four jobs one after another."""
    tmp = tmp_path_factory.mktemp("ddp")
    runs = tmp / "runs"
    jobs = {
        "full": {"overrides": base(cifar10_root, runs / "full")},
        "stopped": {"overrides": base(cifar10_root, runs / "stopped"), "stop_at": [2, 3]},
        "accum": {"overrides": base(cifar10_root, runs / "accum", "train.epochs=1", "train.milestones=[1]",
                                    "train.grad_accum_steps=2"), "count_allreduce": True},
        "partial": {"overrides": base(cifar10_root, runs / "partial", "train.epochs=1", "train.milestones=[1]",
                                      "train.drop_last=false", "data.imbalance_factor=12")},
        "stopped2": {"overrides": base(cifar10_root, runs / "stopped2"), "stop_at": [2, 3]},
        "resumed2": {"resume": str(runs / "stopped2")},  # on the same two processes
        "bilateral": {"overrides": base(cifar10_root, runs / "bilateral", "train.epochs=1", "train.milestones=[1]",
                                        "mix.name=bilateral")},
    }
    spec = tmp / "spec.json"
    spec.write_text(json.dumps({"watch": str(runs), "jobs": list(jobs.values())}))
    env = subprocess_env()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(WORKER), str(spec)]
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    reports = [json.loads(Path(f"{spec}.rank{r}.json").read_text()) for r in range(2)]
    names = [name for name, job in jobs.items() if "resume" not in job]  # the run directories made
    return {"runs": runs, "names": names, "reports": reports, "root": cifar10_root, "tmp": tmp}


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(ddp_runs: dict, one_thread: None) -> None:
    runs, root = ddp_runs["runs"], ddp_runs["root"]
    assert [j["outcome"] for j in ddp_runs["reports"][0]["jobs"]] == ["finished", "interrupted", "finished", "finished",
                                                                      "interrupted", "finished", "finished"]
    single = run_single(base(root, ddp_runs["tmp"] / "single", "train.grad_accum_steps=2"))
    ddp_state = load_checkpoint(runs / "full" / "checkpoints" / "last.pt")
    assert ddp_state["world_size"] == 2
    assert_same_weights(ddp_state["model"], single.model.state_dict())
    # the BN running statistics are rank 0's half-batch estimates: close to, but not, the 1-process ones
    key = "backbone.stem.1.running_mean"
    assert not torch.equal(ddp_state["model"][key], single.model.state_dict()[key])
    # train loss and accuracy are reduced over both ranks: the same numbers as over the whole batch
    for two, one in zip(metrics(runs / "full"), metrics(single.run_dir), strict=True):
        assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-6)
        assert two["train_acc"] == pytest.approx(one["train_acc"], rel=1e-9)


@pytest.mark.slow
def test_gradient_accumulation_under_ddp_matches_and_skips_allreduces(ddp_runs: dict, one_thread: None) -> None:
    runs, root = ddp_runs["runs"], ddp_runs["root"]
    single = run_single(base(root, ddp_runs["tmp"] / "accum4", "train.epochs=1", "train.milestones=[1]",
                             "train.grad_accum_steps=4"))
    assert_same_weights(load_checkpoint(runs / "accum" / "checkpoints" / "last.pt")["model"],
                        single.model.state_dict())
    job = ddp_runs["reports"][0]["jobs"][2]
    # the tiny model fits one gradient bucket: one all-reduce per optimiser step, none for the first
    # micro-batch of each step (no_sync); without no_sync there would be 2 per step
    assert job["steps"] == 15
    assert job["allreduce_calls"] == job["steps"]


@pytest.mark.slow
def test_last_partial_batch_with_unequal_shares_matches(ddp_runs: dict, one_thread: None) -> None:
    """229 images, batch 16, drop_last off: the last batch of 5 splits 3 + 2 across the ranks."""
    runs, root = ddp_runs["runs"], ddp_runs["root"]
    single = run_single(base(root, ddp_runs["tmp"] / "partial1", "train.epochs=1", "train.milestones=[1]",
                             "train.drop_last=false", "data.imbalance_factor=12", "train.grad_accum_steps=2"))
    assert single.train_loader.steps_per_epoch(1) == 15
    assert_same_weights(load_checkpoint(runs / "partial" / "checkpoints" / "last.pt")["model"],
                        single.model.state_dict())
    assert metrics(runs / "partial")[0]["train_loss"] == pytest.approx(metrics(single.run_dir)[0]["train_loss"],
                                                                       rel=1e-6)


@pytest.mark.slow
def test_resume_on_one_process_from_a_two_process_checkpoint(ddp_runs: dict, one_thread: None) -> None:
    """Stopped after step 4 of epoch 2 on 2 processes, finished on 1: the run of 1 process throughout."""
    runs, root = ddp_runs["runs"], ddp_runs["root"]
    stopped = runs / "stopped"
    state = load_checkpoint(stopped / "checkpoints" / "last.pt")
    assert (state["next_epoch"], state["next_step"], state["world_size"]) == (2, 4, 2)
    assert state["partial"]["sums"][2] == 4 * 16  # sample count over both ranks, not rank 0's 32
    resumed = Trainer(load_run_config(stopped, ["train.grad_accum_steps=2"]), resume=True, ctx=DistContext())
    resumed.fit()
    straight = run_single(base(root, ddp_runs["tmp"] / "straight", "train.grad_accum_steps=2"))
    assert_same_weights(resumed.model.state_dict(), straight.model.state_dict())
    for a, b in zip(metrics(stopped), metrics(straight.run_dir), strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["train_acc"] == pytest.approx(b["train_acc"], rel=1e-9)


@pytest.mark.slow
def test_a_mid_epoch_resume_on_two_processes_logs_what_a_straight_run_logs(ddp_runs: dict) -> None:
    """Stopped after step 4 of epoch 2 and resumed on the same two processes: the partial sums of epoch 2
    (saved as totals over both ranks) are counted once, so every logged number is the straight run's."""
    runs = ddp_runs["runs"]
    state = load_checkpoint(runs / "stopped2" / "checkpoints" / "last.pt")
    assert (state["next_epoch"], state["next_step"]) == (3, 0)  # finished by the resume
    resumed, straight = metrics(runs / "stopped2"), metrics(runs / "full")
    assert [m["epoch"] for m in resumed] == [m["epoch"] for m in straight] == [1, 2]
    for a, b in zip(resumed, straight, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-12)
        assert a["train_acc"] == pytest.approx(b["train_acc"], rel=1e-12)
        assert a["test_top1"] == b["test_top1"]
    assert_same_weights(state["model"], load_checkpoint(runs / "full" / "checkpoints" / "last.pt")["model"], atol=0)


@pytest.mark.slow
def test_bilateral_mixing_on_two_processes_matches_one_process(ddp_runs: dict, one_thread: None) -> None:
    """The bilateral mix's reverse batch is drawn once for the global batch (a stream without the rank) and
    each micro-batch takes its positions: 2 processes train what 1 process with 2 micro-batches trains."""
    runs, root = ddp_runs["runs"], ddp_runs["root"]
    single = run_single(base(root, ddp_runs["tmp"] / "bilateral1", "train.epochs=1", "train.milestones=[1]",
                             "mix.name=bilateral", "train.grad_accum_steps=2"))
    assert_same_weights(load_checkpoint(runs / "bilateral" / "checkpoints" / "last.pt")["model"],
                        single.model.state_dict())
    assert metrics(runs / "bilateral")[0]["train_loss"] == pytest.approx(metrics(single.run_dir)[0]["train_loss"],
                                                                         rel=1e-6)


@pytest.mark.slow
def test_eval_tallies_are_reduced_over_ranks(ddp_runs: dict, one_thread: None) -> None:
    run = ddp_runs["runs"] / "full"
    two = json.loads((run / "eval.json").read_text())
    assert two["num_samples"] == 100  # each rank evaluated half of the 100 test images
    cfg = load_run_config(run)
    one = evaluate_run(run, cfg, checkpoint=str(run / "checkpoints" / "last.pt"), split="test")
    # the same weights and BN statistics (rank 0's, broadcast before evaluating) on one process
    assert (one["top1"], one["per_class"], one["num_samples"]) == (two["top1"], two["per_class"], 100)
    assert metrics(run)[-1]["test_top1"] == pytest.approx(two["top1"])


@pytest.mark.slow
def test_only_rank_0_writes_files(ddp_runs: dict) -> None:
    rank0, rank1 = ddp_runs["reports"]
    assert rank1["writes"] == []  # test_write_watch_sees_writes shows that the hook records writes
    for name in ddp_runs["names"]:
        run = ddp_runs["runs"] / name
        assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.pt").is_file()
        assert not [p.name for p in run.rglob("*") if ".tmp" in p.name]
    assert rank0["world_size"] == rank1["world_size"] == 2


def test_write_watch_sees_writes(tmp_path: Path) -> None:
    """The audit hook used on rank 1 does record writes (so an empty list means something)."""
    code = (f"import sys; sys.path.insert(0, {str(WORKER.parent)!r}); from ddp_worker import watch_writes; "
            f"from pathlib import Path; seen = []; root = Path({str(tmp_path)!r}); watch_writes(root, seen); "
            "(root / 'a.txt').write_text('x'); (root / 'd').mkdir(); (root / 'a.txt').replace(root / 'b.txt'); "
            "open(root / 'b.txt').read(); print(len(seen))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                         env=subprocess_env())
    assert out.stdout.strip() == "3"  # the write-open, the mkdir and the rename; not the read


# ------------------------------------------------------------------------------ single-process pieces


def test_sync_bn_on_cpu_is_a_config_error(cifar10_root: Path, tmp_path: Path) -> None:
    cfg = load_config(None, tiny_run_overrides(cifar10_root, tmp_path / "run", "train.sync_bn=true"))
    fake = DistContext(rank=0, world_size=2)  # rejected before any collective is attempted
    with pytest.raises(ConfigError, match=r"train\.sync_bn: .*CUDA"):
        Trainer(cfg, ctx=fake)
    assert not (tmp_path / "run").exists()


def test_in_turns_on_one_process_just_builds() -> None:
    calls = []
    assert in_turns(DistContext(), lambda: calls.append(1) or "built") == "built"
    assert calls == [1]


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_every_sampler_shards_global_batches_by_rank(cifar10_root: Path, tmp_path: Path, name: str) -> None:
    cfg = load_config(None, tiny_run_overrides(cifar10_root, tmp_path, f"sampler.name={name}"))
    splits = build_splits(cfg)

    def batches(rank: int, world: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        ctx = DistContext(rank=rank, world_size=world)
        sampler = build_sampler(cfg, splits)
        loader = DeviceLoader(splits.train, 16, ctx.device, sampler=sampler, normalize=Normalize(splits.mean,
                              splits.std), seed=cfg.seed, rank=rank, world_size=world)
        return list(loader.epoch(3))

    whole = batches(0, 1)
    shards = [batches(r, 2) for r in range(2)]
    assert len(whole) == len(shards[0]) == len(shards[1])
    for step, (x, y) in enumerate(whole):
        for r in range(2):
            torch.testing.assert_close(shards[r][step][0], x[r::2], rtol=0, atol=0)
            assert torch.equal(shards[r][step][1], y[r::2])


def frozen_bn_names(cfg_overrides: list[str]) -> list[str]:
    from fcc_lt.models.network import build_network

    net = build_network(load_config(None, cfg_overrides), 10)
    return [n for n, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_gradient_accumulation_matches_when_bn_is_frozen(cifar10_root: Path, tmp_path: Path,
                                                         one_thread: None) -> None:
    """With every BN layer frozen in eval mode (running statistics, no batch statistics), the loss of
    a batch is the mean of per-sample terms, so accumulating 4 micro-batches must give the
    1-step weights; with live BN the groups are normalised separately and the result differs."""
    extra = ("train.epochs=1", "train.milestones=[1]", "eval.confusion_png_max_classes=0")
    bn = frozen_bn_names(tiny_run_overrides(cifar10_root, tmp_path / "x"))
    assert len(bn) == 7  # stem + 2 per basic block in a depth-8 CIFAR ResNet
    freeze = f"train.freeze=[{', '.join(bn)}]"
    states = {k: run_single(tiny_run_overrides(cifar10_root, tmp_path / f"k{k}", *extra, freeze,
                                               f"train.grad_accum_steps={k}")).model.state_dict() for k in (1, 4)}
    assert_same_weights(states[4], states[1], atol=1e-5)
    for key, value in states[4].items():  # frozen BN kept its initial statistics
        if key.endswith("running_mean"):
            assert torch.equal(value, torch.zeros_like(value))
    live = {k: run_single(tiny_run_overrides(cifar10_root, tmp_path / f"live{k}", *extra,
                                             f"train.grad_accum_steps={k}")).model.state_dict() for k in (1, 2)}
    diff = max((live[1][key] - live[2][key]).abs().max().item() for key in trained_weights(live[1]))
    assert diff > 1e-3
