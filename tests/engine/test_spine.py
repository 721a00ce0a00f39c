"""The seams between config, trainer and parts: each test fails if the trainer did not call the part, or
called it with the wrong counts, epoch or generator (tests that a part works alone live with the part)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import tiny_run_overrides
from fcc_lt.cli.main import main
from fcc_lt.config.load import load_config
from fcc_lt.config.schema import EvalConfig
from fcc_lt.data.augment import Normalize
from fcc_lt.data.loader import GlobalBatchLoader
from fcc_lt.engine.meter import EpochMeter
from fcc_lt.engine.trainer import Trainer
from fcc_lt.evaluation.metrics import shot_groups
from fcc_lt.evaluation.run_loader import load_run
from fcc_lt.methods.distill import load_teacher
from fcc_lt.methods.samplers import InstanceSampler
from fcc_lt.models.checkpoint_file import save_checkpoint
from fcc_lt.models.network import build_network
from fcc_lt.util.errors import CheckpointError
from image_fixtures import write_json_dataset


def tiny(root: Path, out: Path, *extra: str):
    return load_config(None, tiny_run_overrides(root, out, *extra))


def test_fcc_ranks_by_frequency_from_the_config_on_a_dataset_whose_class_0_is_smallest(tmp_path: Path) -> None:
    train_json, test_json = write_json_dataset(tmp_path / "data", [3, 8, 5], test_per_class=1)
    data = ["data.dataset=json", f"data.train_json={train_json}", f"data.test_json={test_json}",
            "data.image_size=32", "fcc.enabled=true", "fcc.gamma=0.6"]
    trainer = Trainer(tiny(tmp_path, tmp_path / "freq", *data))
    # ranks by count: class 1 (8) first, class 2 (5), class 0 (3): tau 1.6, 1.4, 1.2
    assert trainer.parts.compression.class_factor.tolist() == pytest.approx([1.2, 1.6, 1.4])
    by_index = Trainer(tiny(tmp_path, tmp_path / "index", *data, "fcc.rank_by=index"))
    assert by_index.parts.compression.class_factor.tolist() == pytest.approx([1.6, 1.4, 1.2])


def test_the_trainer_moves_the_loss_to_each_epoch_so_drw_switches(cifar10_root: Path, tmp_path: Path) -> None:
    cfg = tiny(cifar10_root, tmp_path / "run", "loss.name=balanced_softmax", "loss.params.drw_start_epoch=2")
    trainer = Trainer(cfg)
    seen: list[tuple[int, bool]] = []
    criterion = trainer.criterion
    real = criterion.forward

    def spy(logits, targets, **kwargs):
        seen.append((criterion.epoch, criterion.reweighting))
        return real(logits, targets, **kwargs)

    criterion.forward = spy  # type: ignore[method-assign]
    trainer.fit()
    assert {e for e, _ in seen} == {1, 2}
    assert all(not on for e, on in seen if e == 1) and all(on for e, on in seen if e == 2)


def test_each_epoch_draws_a_new_order(cifar10_root: Path, tmp_path: Path) -> None:
    trainer = Trainer(tiny(cifar10_root, tmp_path / "run", "data.augment=none", "train.epochs=3"))
    orders = [torch.cat([y for _, y in trainer.train_loader.epoch(e)]) for e in (1, 2, 3)]
    images = [torch.cat([x for x, _ in trainer.train_loader.epoch(e)]) for e in (1, 2)]
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[1], orders[2])
    assert not torch.equal(images[0], images[1])
    assert torch.equal(torch.cat([y for _, y in trainer.train_loader.epoch(2)]), orders[1])  # and reproducibly


def test_epoch_orders_are_drawn_on_a_cpu_generator_whatever_the_device() -> None:
    """Every rank must draw the same order; GPU generators of different models need not agree, CPU ones do.
    A loader on the meta device (which has no generator at all) still gets the CPU draw."""
    labels = torch.arange(20) % 4
    sampler = InstanceSampler(labels, 4)
    loader = GlobalBatchLoader(4, torch.device("meta"), sampler=sampler, normalize=Normalize([0.5] * 3, [0.2] * 3),
                               seed=3)
    order = loader.epoch_order(2)
    assert order.device.type == "meta" and order.shape == (20,)
    cpu = GlobalBatchLoader(4, torch.device("cpu"), sampler=sampler, normalize=Normalize([0.5] * 3, [0.2] * 3),
                            seed=3).epoch_order(2)
    assert sorted(cpu.tolist()) == list(range(20))


def test_shipped_shot_thresholds_are_the_long_tail_protocol() -> None:
    e = EvalConfig()
    assert (e.many_shot_min, e.few_shot_max) == (101, 19)  # many: more than 100 images, few: fewer than 20
    groups = shot_groups([101, 100, 20, 19, 500, 1], e.many_shot_min, e.few_shot_max)
    assert groups == {"many": [0, 4], "medium": [1, 2], "few": [3, 5]}


def test_predict_uses_the_runs_tau_normalisation(cifar10_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    Trainer(tiny(cifar10_root, out, "train.epochs=1", "train.milestones=[]", "eval.tau_norm=1.0")).fit()
    run = load_run(out)
    assert run.tau_norm == 1.0 and run.model is not run.network
    # the tau-normalised view differs from the plain network: a prediction path ignoring it would differ
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.allclose(run.model(x), run.network(x))
        w = run.network.head.fc.weight
        expected = run.network.features(x) @ (w / w.norm(dim=1, keepdim=True)).T + run.network.head.fc.bias
        torch.testing.assert_close(run.model(x), expected, rtol=1e-5, atol=1e-5)
    # and `fcc predict` reports exactly those probabilities
    from PIL import Image

    from fcc_lt.data.build import build_splits

    splits = build_splits(load_config(out / "config.yaml"))
    images = splits.test.images[:3]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"img{i}.png")
    csv_path = tmp_path / "pred.csv"
    assert main(["predict", str(out), str(folder), "--top-k", "1", "--out", str(csv_path), "--device", "cpu"]) == 0
    with torch.no_grad():
        probs = run.model(Normalize(splits.mean, splits.std)(images)).softmax(1)
    rows = csv_path.read_text().splitlines()[1:]
    for line in rows:
        path, cls, _, prob = line.split(",")[:4]
        i = int(Path(path).stem.removeprefix("img"))
        assert int(cls) == int(probs[i].argmax()) and float(prob) == pytest.approx(float(probs[i].max()), abs=1e-5)


def test_a_crafted_teacher_config_cannot_allocate_a_huge_model(cifar10_root: Path, tmp_path: Path) -> None:
    """The saved config asks for a CIFAR ResNet of width 2**20 (~10^13 parameters); the weights are tiny.
    The network is built on the meta device and compared with the weights before anything is allocated."""
    cfg = tiny(cifar10_root, tmp_path / "t")
    small = build_network(cfg, 10)
    crafted = cfg.to_dict()
    crafted["model"]["backbone_params"] = {"depth": 8, "width": 2 ** 20}
    path = tmp_path / "teacher.pt"
    save_checkpoint({"model": small.state_dict(), "config": crafted, "class_counts": [10] * 10}, path)
    with pytest.raises(CheckpointError, match=r"distill\.teacher .*teacher\.pt does not fit the model: shape"):
        load_teacher(path, 10, "cpu")


def test_teacher_config_errors_name_the_teacher_not_the_student(cifar10_root: Path, tmp_path: Path) -> None:
    cfg = tiny(cifar10_root, tmp_path / "t")
    crafted = cfg.to_dict()
    crafted["model"]["backbone_params"] = {"depth": 7, "width": 4}  # not 6n+2
    path = tmp_path / "teacher.pt"
    save_checkpoint({"model": build_network(cfg, 10).state_dict(), "config": crafted}, path)
    with pytest.raises(CheckpointError) as err:
        load_teacher(path, 10, "cpu")
    message = str(err.value)
    assert message.startswith("distill.teacher") and "teacher.pt" in message and "saved config" in message
    assert "model.backbone_params" in message and "6n+2" in message


def test_tau_sweep_validation_split_is_disjoint_from_training(cifar10_root: Path, tmp_path: Path) -> None:
    from fcc_lt.data.cifar import SPECS, long_tail_counts, long_tail_indices, read_split

    _, y = read_split(cifar10_root / "cifar-10-batches-py", SPECS["cifar10"], "train")
    train, val = long_tail_indices(y, long_tail_counts(10, 10, 60), seed=0, val_per_class=5)
    assert len(val) == 50 and not set(train.tolist()) & set(val.tolist())
    # a run trained without a validation split refuses to draw one afterwards
    out = tmp_path / "run"
    Trainer(tiny(cifar10_root, out, "train.epochs=1", "train.milestones=[]")).fit()
    assert main(["eval", str(out), "--tau-sweep", "0,1", "data.val_per_class=5"]) == 2
    assert not (out / "tau_sweep.json").exists()


def test_eval_of_a_run_still_training_is_refused(cifar10_root: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    trainer = Trainer(tiny(cifar10_root, out, "train.epochs=2"))
    calls = []

    def try_eval(t: Trainer, epoch: int, step: int) -> None:
        if (epoch, step) == (2, 0):
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            proc = ctx.Process(target=_eval_in_child, args=(str(out),))
            proc.start()
            proc.join(120)
            calls.append(proc.exitcode)

    trainer.step_callback = try_eval
    trainer.fit()
    assert calls == [2]  # the other process's fcc eval exits 2 (refused) while this one trains
    assert json.loads((out / "eval.json").read_text())["epoch"] == 2  # the run's own final evaluation


def _eval_in_child(run: str) -> None:
    import sys

    sys.exit(main(["eval", run]))


# ---------------------------------------------------------------------- no host-device sync in the step

class NoHostReads(torch.overrides.TorchFunctionMode):
    """Fails on anything that would read a device value on the host or copy host data to the device: on
    CUDA each is a synchronisation that stalls the pipeline. ``allow`` exempts what runs every
    train.log_every steps or once per epoch (the CUDA test below checks the real thing)."""

    FORBIDDEN = frozenset({"__float__", "__int__", "__bool__", "__index__", "item", "tolist", "numpy", "cpu",
                           "tensor", "as_tensor", "from_numpy"})
    allowed = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.FORBIDDEN and not NoHostReads.allowed:
            raise AssertionError(f"host-device synchronisation in the training step: {name}")
        return func(*args, **(kwargs or {}))

    @staticmethod
    def allow(fn):
        def allowed(*args, **kwargs):
            NoHostReads.allowed += 1
            try:
                return fn(*args, **kwargs)
            finally:
                NoHostReads.allowed -= 1

        return allowed


SYNC_FREE = [
    ("ce_fcc", ["fcc.enabled=true"]),
    ("bsce_drw", ["loss.name=balanced_softmax", "loss.params.drw_start_epoch=1", "fcc.enabled=true"]),
    ("ldam", ["loss.name=ldam", "model.head=cosine", "loss.params.reweight=true"]),
    ("remix_fcc", ["mix.name=remix", "fcc.enabled=true"]),
    ("manifold", ["mix.name=manifold_mixup", "mix.params.location=stage2", "fcc.enabled=true"]),
    ("cutmix", ["mix.name=cutmix"]),
    ("bilateral", ["mix.name=bilateral"]),
    ("jitter_sampler", ["data.color_jitter=0.4", "sampler.name=square_root"]),
    ("accum", ["train.grad_accum_steps=2", "loss.name=influence_balanced", "fcc.enabled=true"]),
]


@pytest.mark.parametrize(("name", "extra"), SYNC_FREE, ids=[n for n, _ in SYNC_FREE])
def test_no_host_reads_in_the_training_step(name: str, extra: list[str], cifar10_root: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Every step of an epoch (loader, mixing, forward, loss, backward, optimizer, the loop's own tallies)
    runs without a host read; only the log-step look, the epoch's end and the final eval may read."""
    import warnings

    cfg = tiny(cifar10_root, tmp_path / "run", "train.epochs=2", "train.milestones=[]", "train.log_every=2",
               "train.max_steps_per_epoch=3", *extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FCC with the cosine head is a no-op (warned)
        trainer = Trainer(cfg)
    for method in ("_epoch_record", "_end_epoch", "final_eval"):
        setattr(trainer, method, NoHostReads.allow(getattr(trainer, method)))
    for method in ("look", "earliest_bad"):  # the log-step look and the epoch's end
        monkeypatch.setattr(EpochMeter, method, NoHostReads.allow(getattr(EpochMeter, method)))
    steps = []
    trainer.step_callback = lambda t, epoch, step: steps.append((epoch, step))
    with NoHostReads():
        trainer.fit()
    assert steps == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_an_epoch_on_cuda_runs_under_sync_debug_mode_error(cifar10_root: Path, tmp_path: Path) -> None:
    cfg = tiny(cifar10_root, tmp_path / "run", "device=cuda", "train.epochs=1", "train.milestones=[]",
               "train.log_every=2", "fcc.enabled=true", "mix.name=remix", "train.amp=bf16")
    trainer = Trainer(cfg)
    epoch = trainer.train_loader.epoch

    class StrictStep(type(trainer.step)):  # type: ignore[misc]
        def __call__(self, *args, **kwargs):
            torch.cuda.set_sync_debug_mode("error")
            try:
                return super().__call__(*args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode("default")

    def strict_epoch(*args, **kwargs):
        batches = epoch(*args, **kwargs)
        while True:
            torch.cuda.set_sync_debug_mode("error")
            try:
                batch = next(batches, None)
            finally:
                torch.cuda.set_sync_debug_mode("default")
            if batch is None:
                return
            yield batch

    trainer.step.__class__ = StrictStep
    trainer.train_loader.epoch = strict_epoch  # type: ignore[method-assign]
    trainer.fit()


# ------------------------------------------------------------------------------ seams found by planting bugs

def test_extra_training_images_change_what_is_sampled_not_the_counts_of_loss_mixer_and_fcc(
        cifar10_root: Path, tmp_path: Path) -> None:
    """100 extra images of the smallest class (as CAM generation adds them) make it the largest to sample
    from; the loss, the mixer and FCC must still see the protocol's counts, where it is the smallest."""
    from image_fixtures import write_folder, write_json

    entries = write_folder(tmp_path / "extra", [0] * 9 + [100])
    extra = write_json(tmp_path / "extra" / "extra.json", entries, 10)
    cfg = tiny(cifar10_root, tmp_path / "run", f"data.extra_train_json={extra}", "loss.name=balanced_softmax",
               "mix.name=remix", "fcc.enabled=true", "fcc.gamma=0.5")
    trainer = Trainer(cfg)
    protocol = [60, 46, 35, 27, 21, 16, 12, 10, 7, 6]  # the fixture's IF-10 subset, largest first
    assert list(trainer.stats.train_counts) == protocol and trainer.stats.sampled_counts[9] == 106
    # FCC: rank k by protocol count is the class index here, tau_k = 1 + g - k g / C
    expected = [1 + 0.5 - k * 0.5 / 10 for k in range(10)]
    assert trainer.parts.compression.class_factor.tolist() == pytest.approx(expected)
    # the loss: balanced softmax, CE(z + log n_c) with the protocol's n_c, recomputed in float64
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(12, 10, generator=g), torch.arange(12) % 10
    trainer.criterion.set_epoch(1)
    adjusted = logits.double() + torch.tensor(protocol, dtype=torch.float64).log()
    torch.testing.assert_close(trainer.criterion(logits, targets).double(),
                               torch.nn.functional.cross_entropy(adjusted, targets), rtol=1e-5, atol=1e-6)
    # the mixer: remix's count ratios
    assert trainer.mixer.class_counts == protocol


def test_tau_norm_runs_select_best_on_the_normalised_model_they_report(cifar10_root: Path, tmp_path: Path) -> None:
    """With eval.tau_norm=1 the classifier rows are evaluated as W_c / ||W_c||: scaling rows changes the plain
    model's predictions but not the normalised one's. After the last step the rows are scaled so that the
    two disagree; every epoch's val_top1 must be the normalised model's (recomputed by hand from the
    checkpoints), and best.pt the epoch where that is highest."""
    out = tmp_path / "run"
    cfg = tiny(cifar10_root, out, "data.val_per_class=2", "eval.checkpoint=best", "eval.tau_norm=1.0",
               "train.epochs=3", "train.milestones=[3]")
    trainer = Trainer(cfg)
    steps = trainer.steps_per_epoch(1)
    states: dict[int, dict[str, torch.Tensor]] = {}

    def watch(t: Trainer, epoch: int, step: int) -> None:
        if step == 0 and epoch > 1:  # the checkpoint of the epoch before, as evaluated
            states[epoch - 1] = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]
        if (epoch, step) == (3, steps - 1):
            with torch.no_grad():  # rows of norms 1, 10, 100, ...: the plain model predicts by norm
                w = t.model.head.fc.weight
                w.copy_(w / w.norm(dim=1, keepdim=True) * torch.logspace(0, 9, 10)[:, None])

    trainer.step_callback = watch
    result = trainer.fit()
    states[3] = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]
    val = trainer.splits.val
    x = Normalize(trainer.splits.mean, trainer.splits.std)(val.images)
    net = build_network(cfg, 10).eval()

    def accuracy(state: dict[str, torch.Tensor], normalised: bool) -> float:
        net.load_state_dict(state)
        with torch.no_grad():
            w, b = net.head.fc.weight.double(), net.head.fc.bias.double()
            w = w / w.norm(dim=1, keepdim=True) if normalised else w
            logits = net.features(x).double() @ w.T + b
        return 100.0 * float((logits.argmax(1) == val.labels).double().mean())

    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    normalised = [accuracy(states[e], True) for e in (1, 2, 3)]
    assert accuracy(states[3], False) != normalised[2]  # the two views disagree on the last epoch
    assert [m["val_top1"] for m in lines] == pytest.approx(normalised)
    best = normalised.index(max(normalised)) + 1
    assert result["epoch"] == best and result["checkpoint"] == "checkpoints/best.pt"
    assert torch.load(out / "checkpoints" / "best.pt", weights_only=True)["next_epoch"] == best + 1


def test_the_bilateral_reverse_batch_of_a_step_does_not_depend_on_how_the_step_is_cut(
        cifar10_root: Path, tmp_path: Path) -> None:
    """The reverse-sampled batch is drawn for the whole global batch from the step's own stream and each
    micro-batch keeps its positions: one micro-batch of 16 and two of 8 pair the same images with the same
    partners (on one process here; test_distributed.py checks two processes)."""
    partners: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for k in (1, 2):
        trainer = Trainer(tiny(cifar10_root, tmp_path / f"k{k}", "mix.name=bilateral", f"train.grad_accum_steps={k}"))
        mixer, seen = trainer.parts.mixer, []

        def record(images, labels, generator, share=None, mixer=mixer, seen=seen):
            batch = mixer(images, labels, generator, share=share)
            lam = batch.weight_a[0]
            seen.append((share.offset, (batch.images - lam * images) / (1 - lam), batch.labels_b))
            return batch

        trainer.parts.mixer = record  # type: ignore[assignment]
        images, labels = next(iter(trainer.train_loader.epoch(1)))
        trainer.model.train()
        trainer.step(images, labels, 1, 0, labels.numel())
        order = torch.argsort(torch.cat([torch.arange(off, 16, k) for off, _, _ in seen]))
        partners[k] = (torch.cat([x for _, x, _ in seen])[order], torch.cat([y for _, _, y in seen])[order])
    assert torch.equal(partners[1][1], partners[2][1])
    torch.testing.assert_close(partners[1][0], partners[2][0], rtol=1e-4, atol=1e-4)
