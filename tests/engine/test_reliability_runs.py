"""No wasted runs: the best/last checkpoint pair under kills, a diverged run keeps a good checkpoint,
resume overrides are recorded, what can be checked at start is, smoke runs, short schedules, `fcc config`,
and checkpoint fields validated against the run."""

from __future__ import annotations

import json
import shutil
import signal
import warnings
from pathlib import Path

import pytest
import torch
import yaml

from conftest import tiny_run_overrides
from fcc_lt.cli.main import main
from fcc_lt.config.load import load_config
from fcc_lt.config.recipes import RECIPES
from fcc_lt.config.schedule import ScheduleWarning
from fcc_lt.engine.signals import TrainingInterrupted
from fcc_lt.engine.trainer import Trainer
from fcc_lt.evaluation.run_loader import load_run_config
from fcc_lt.models.checkpoint_file import save_checkpoint
from fcc_lt.util.errors import CheckpointError, ConfigError, TrainingError
from reliability_support import KILLER, metrics, run, run_overrides, same_weights, start, weights

# ----------------------------------------------------------------- best.pt and last.pt under kills


def best_run_overrides(root: Path, out: Path) -> list[str]:
    """A run that keeps best.pt (a validation split) and evaluates it at the end."""
    return run_overrides(root, out, "data.val_per_class=2", "eval.checkpoint=best", epochs=4)


@pytest.fixture(scope="module")
def best_reference(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("best-reference") / "run"
    done = run(["train", *best_run_overrides(cifar10_root, out)], out.parent / "log")
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["best.pt:1:before", "best.pt:1:half", "last.pt:1:half", "best.pt:2:before"])
def test_best_and_last_stay_consistent_when_killed_at_any_write(
        kill_at: str, best_reference: Path, cifar10_root: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill between last.pt ("best = epoch N") and best.pt, or inside either write: the resumed run
    repairs the pair and ends exactly like the uninterrupted one (same best.pt, same eval.json)."""
    claims = [json.loads(line).get("val_top1") for line in (best_reference / "metrics.jsonl").read_text().splitlines()]
    improving = sum(1 for i, v in enumerate(claims) if v is not None and all(v > w for w in claims[:i]))
    if int(kill_at.split(":")[1]) > improving:
        pytest.fail(f"the reference improves only {improving} times; pick kill points it reaches")
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    out, log = tmp_path / "run", tmp_path / "log"
    monkeypatch.setenv("FCC_TEST_KILL", kill_at)
    proc = start(["train", *best_run_overrides(cifar10_root, out)], log, script)
    assert proc.wait(timeout=300) == -signal.SIGKILL, log.read_text()[-3000:]
    monkeypatch.delenv("FCC_TEST_KILL")
    resumed = run(["train", "--resume", str(out)], log)
    assert resumed.returncode == 0, resumed.stderr
    assert same_weights(weights(out / "checkpoints" / "best.pt"), weights(best_reference / "checkpoints" / "best.pt"))
    assert same_weights(weights(out), weights(best_reference))
    ours, theirs = (json.loads((d / "eval.json").read_text()) for d in (out, best_reference))
    assert (ours["epoch"], ours["per_class"], ours["checkpoint"]) == (theirs["epoch"], theirs["per_class"],
                                                                      "checkpoints/best.pt")
    last = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    best = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    assert best["next_epoch"] - 1 == last["best"]["epoch"]


# ------------------------------------------------------------------------------------ divergence

def test_a_diverged_run_keeps_the_last_checkpoint_whose_every_tensor_is_finite(
        cifar10_root: Path, tmp_path: Path) -> None:
    """BatchNorm statistics can turn inf while the training loss (batch statistics) stays finite; the
    epoch's checkpoint is then refused and the previous one, finite throughout, is what remains."""
    out = tmp_path / "run"
    trainer = Trainer(load_config(None, run_overrides(cifar10_root, out, epochs=3)))

    def blow_up(t: Trainer, epoch: int, step: int) -> None:
        if (epoch, step) == (2, 5):
            with torch.no_grad():
                t.model.backbone.stem[1].running_var.fill_(float("inf"))

    trainer.step_callback = blow_up
    with pytest.raises(TrainingError) as err:
        trainer.fit()
    message = str(err.value)
    assert err.value.exit_code == 3 and "backbone.stem.1.running_var" in message
    assert "saved after epoch 1; every tensor finite" in message
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["next_epoch"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert [m["epoch"] for m in metrics(out)] == [1]  # epoch 2 never claimed
    # following the advice (resume, here with a lower LR) finishes the run from that good state
    assert main(["train", "--resume", str(out), "train.lr=0.01"]) == 0
    assert json.loads((out / "eval.json").read_text())["epoch"] == 3


# ------------------------------------------------------------------------------- resume overrides

def test_resume_overrides_are_recorded_and_fixed_keys_refused(cifar10_root: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", *tiny_run_overrides(cifar10_root, out)]) == 0
    assert main(["train", "--resume", str(out), "train.epochs=3", "train.lr=0.02"]) == 0
    cfg = load_run_config(out)
    assert (cfg.train.epochs, cfg.train.lr) == (3, 0.02)  # config.yaml says what the run did
    history = yaml.safe_load((out / "config_history.yaml").read_text())
    assert len(history) == 1 and history[0]["resumed_at"] == "epoch 3"
    assert history[0]["changes"] == {"train.epochs": {"old": 2, "new": 3}, "train.lr": {"old": 0.05, "new": 0.02}}
    assert [m["epoch"] for m in metrics(out)] == [1, 2, 3]
    capsys.readouterr()
    for bad in ("data.imbalance_factor=5", "model.backbone=resnet32", "seed=4", "out=elsewhere"):
        assert main(["train", "--resume", str(out), bad]) == 2
        err = capsys.readouterr().err
        assert bad.split("=")[0] in err and "cannot change when resuming" in err and "Traceback" not in err
    assert main(["train", "--resume", str(out), "train.epochs=2"]) == 2
    assert "has already trained 3 epochs" in capsys.readouterr().err
    assert load_run_config(out).train.epochs == 3  # the refused resumes changed nothing


# ------------------------------------------------------------------------------ checked at start

START_ERRORS = [
    (["eval.checkpoint=best"], "eval.checkpoint: best needs a validation split"),
    (["eval.split=val"], "eval.split: val needs a validation split"),
    (["distill.teacher=somewhere"], "distill.teacher: loss 'ce' does not use a teacher"),
    (["device=mps"], "device: 'mps' is not supported"),
    (["train.freeze_bn=true"], "train.freeze_bn: true does nothing without train.freeze"),
    (["model.init_exclude=[head]"], "model.init_exclude: lists weights not to take from model.init_from"),
    (["train.milestones=[3]"], "train.milestones"),
]


@pytest.mark.parametrize(("extra", "message"), START_ERRORS, ids=[e[0] for e, _ in START_ERRORS])
def test_what_would_fail_or_do_nothing_later_is_refused_at_start(
        extra: list[str], message: str, cifar10_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", *tiny_run_overrides(cifar10_root, out, *extra)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()  # a failed start leaves nothing behind


def test_val_per_class_with_a_json_dataset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.val_per_class: holds out images of CIFAR"):
        load_config(None, ["data.dataset=json", "data.train_json=a.json", "data.test_json=b.json",
                           "data.val_per_class=5"])


def test_a_start_failing_on_its_data_leaves_no_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs" / "deep" / "run"  # parents this start creates go too; existing ones stay
    assert main(["train", f"data.root={tmp_path / 'nowhere'}", "data.download=false", f"out={out}",
                 "device=cpu"]) == 2
    assert "CIFAR-10 is not under" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and tmp_path.exists()


# ------------------------------------------------------------------ short schedules and smoke runs

def test_a_schedule_too_short_for_its_drops_is_said_loudly() -> None:
    for epochs in (1, 2):
        with pytest.warns(ScheduleWarning, match=f"train.epochs={epochs} is too short"):
            load_config("cifar10_lt/ce_fcc_if100", [f"train.epochs={epochs}"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScheduleWarning)
        cfg = load_config("cifar10_lt/ce_fcc_if100", ["train.epochs=30"])
    assert cfg.train.milestones == [25, 28] and cfg.fcc.start_epoch == 9


def test_smoke_runs_every_part_of_a_config_in_a_few_steps(cifar10_root: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    config = RECIPES / "cifar10_lt" / "bsce_drw_fcc_if100.yaml"
    tiny = ["model.backbone=resnet_cifar", "model.backbone_params={depth: 8, width: 4}", "device=cpu",
            f"data.root={cifar10_root}", "data.imbalance_factor=10", "train.progress=false"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScheduleWarning)  # a smoke run is short on purpose: no warning
        assert main(["train", str(config), "--smoke", *tiny]) == 0
    out = tmp_path / "runs" / "smoke" / "bsce_drw_fcc_if100"
    cfg = load_run_config(out)
    assert (cfg.train.epochs, cfg.train.max_steps_per_epoch, cfg.eval.max_batches) == (4, 2, 2)
    assert cfg.fcc.start_epoch <= 4 and cfg.loss.params["drw_start_epoch"] <= 4 and cfg.train.milestones[0] <= 4
    assert [m["epoch"] for m in metrics(out)] == [1, 2, 3, 4]
    result = json.loads((out / "eval.json").read_text())
    assert result["smoke"] is True and result["num_samples"] <= 2 * cfg.eval.batch_size
    assert "smoke run" in capsys.readouterr().err
    from fcc_lt.experiments.report import build_report

    report = build_report([str(out)])
    assert not report.groups and [r.state for r in report.runs] == ["smoke"]  # listed, never a result
    assert main(["train", str(config), "--smoke", *tiny]) == 0  # a smoke run overwrites its own folder


def test_fcc_config_shows_sources_and_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "cifar10_lt/bsce_drw_fcc_if100", "train.epochs=30", "seed=3"]) == 0
    out = capsys.readouterr().out
    lines, sections = {}, []  # dotted key -> its line, from the nested YAML that `fcc config` prints
    for line in out.splitlines():
        if line.startswith("#"):
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        name = line.strip().split(":")[0]
        sections = sections[:depth]
        if line.rstrip().endswith(":"):
            sections.append(name)
        else:
            lines[".".join([*sections, name])] = line
    assert lines["seed"].endswith("# override seed=3")
    assert "# rescaled from [160, 180]" in lines["train.milestones"]
    assert lines["loss.name"].endswith("/fcc_lt/configs/cifar10_lt/_bsce_drw.yaml")
    assert lines["fcc.gamma"].endswith("/fcc_lt/configs/cifar10_lt/_fcc.yaml")
    assert lines["data.imbalance_factor"].endswith("/fcc_lt/configs/cifar10_lt/bsce_drw_fcc_if100.yaml")
    assert lines["train.freeze_bn"].endswith("# default")
    assert "# valid" in out
    assert main(["config", "cifar10_lt/bsce_drw_fcc_if100", "train.lr=-1"]) == 2
    assert "train.lr" in capsys.readouterr().err


def test_fcc_train_without_a_config_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: fcc train") and "fcc configs" in err


# --------------------------------------------------------------------- checkpoint fields validated

@pytest.fixture(scope="module")
def finished_run(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fields") / "run"
    Trainer(load_config(None, tiny_run_overrides(cifar10_root, out, "train.epochs=3"))).fit()
    return out


BAD_FIELDS = [
    ({"next_epoch": -5}, "field 'next_epoch' is -5"),
    ({"next_epoch": "4"}, "field 'next_epoch' is '4'"),  # read by the best.pt repair before it was checked
    ({"best": ["val_top1", 3]}, "field 'best'"),
    ({"best": "lots"}, "field 'best'"),
    ({"optimizer": "junk"}, "field 'optimizer'"),
    ({"optimizer": {"state": {}, "param_groups": "x"}}, "field 'optimizer'"),
    ({"scaler": [1, 2]}, "field 'scaler'"),
    ({"next_epoch": 2, "next_step": 10**9}, "field 'next_step' is 1000000000"),
    ({"next_epoch": 2, "next_step": 3, "partial": "lots"}, "field 'partial'"),
    ({"next_epoch": 2, "next_step": "3"}, "field 'next_step' is '3'"),
    ({"next_epoch": True}, "field 'next_epoch' is True"),
    ({"best": {"val_top1": 50.0, "epoch": 7}}, "field 'best'"),
    ({"nonfinite_skipped": -1}, "field 'nonfinite_skipped' is -1"),
]


@pytest.mark.parametrize(("change", "message"), BAD_FIELDS, ids=[repr(c)[:40] for c, _ in BAD_FIELDS])
def test_checkpoint_fields_are_checked_against_the_run(change: dict, message: str, finished_run: Path,
                                                       tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    cfg = load_run_config(run_dir, ["train.epochs=4"])
    last = run_dir / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    state.update(change)
    save_checkpoint(state, last)
    with pytest.raises(CheckpointError, match=message):
        Trainer(cfg, resume=True)
    assert main(["train", "--resume", str(run_dir), "train.epochs=4"]) == 2  # and from the command line: one line


def test_a_smoke_run_never_replaces_a_real_run(finished_run: Path, cifar10_root: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`fcc train CONFIG out=FINISHED_RUN --smoke` is refused like any start into a run directory; every file
    of the finished run is left byte for byte."""
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    before = {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert {Path("eval.json"), Path("checkpoints/last.pt"), Path("metrics.jsonl")} <= set(before)
    assert main(["train", *tiny_run_overrides(cifar10_root, run_dir), "--smoke"]) == 2
    err = capsys.readouterr().err
    assert f"{run_dir} already holds a run" in err and "Traceback" not in err
    assert {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_a_training_set_smaller_than_one_batch_is_refused_before_training(
        cifar10_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """240 fixture images, batch 256 with drop_last: every epoch would have 0 steps and the run would still
    'finish' with an eval.json of the untrained model."""
    out = tmp_path / "run"
    assert main(["train", *tiny_run_overrides(cifar10_root, out, "train.batch_size=256")]) == 2
    err = capsys.readouterr().err
    assert "train.batch_size=256 is larger than the training set of 240 images" in err
    assert "train.drop_last=false" in err and "Traceback" not in err and not out.exists()
    # under DDP the message gives each process's share
    from fcc_lt.engine.trainer import refuse_empty_epochs

    cfg = load_config(None, tiny_run_overrides(cifar10_root, out, "train.batch_size=256"))
    with pytest.raises(ConfigError, match=r"per process of 2: 120 images, batches of 128"):
        refuse_empty_epochs(cfg, lambda e: 0, lambda e: 240, 2)
    refuse_empty_epochs(cfg, lambda e: 1, lambda e: 240, 2)  # one step is enough


def test_a_mid_epoch_checkpoint_resumes_only_with_its_batch_size(cifar10_root: Path, tmp_path: Path) -> None:
    """The loader cuts the rest of a stopped epoch at next_step x batch size: another batch size would skip
    or repeat images of that epoch, so it is refused there and allowed from an epoch's end."""
    out = tmp_path / "run"
    trainer = Trainer(load_config(None, tiny_run_overrides(cifar10_root, out)))
    trainer.step_callback = lambda t, epoch, step: t.request_stop() if (epoch, step) == (1, 4) else None
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    with pytest.raises(ConfigError, match=r"train\.batch_size=32: .*last\.pt was saved in the middle of epoch 1 "
                                          r"\(before its step 6\) with train\.batch_size=16"):
        Trainer(load_run_config(out, ["train.batch_size=32"]), resume=True)
    Trainer(load_run_config(out), resume=True).fit()  # the same size finishes the run
    finished = tmp_path / "finished"
    shutil.copytree(out, finished)
    resumed = Trainer(load_run_config(finished, ["train.batch_size=32", "train.epochs=3"]), resume=True)
    assert resumed.loop.next_epoch == 3  # at an epoch's end the batch size may change


def test_resume_onto_a_training_set_whose_files_changed_is_refused(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The run's config is unchanged, but the CIFAR files under data.root were replaced by a set with other
    class counts: the checkpoint's class statistics no longer match and the resume is refused."""
    from cifar_fixtures import write_cifar10

    root = tmp_path / "cifar"
    write_cifar10(root, per_class_train=60, per_class_test=10)
    out = tmp_path / "run"
    assert main(["train", *tiny_run_overrides(root, out, "train.epochs=1", "train.milestones=[]")]) == 0
    shutil.rmtree(root)
    write_cifar10(root, per_class_train=50, per_class_test=10)  # the same classes, fewer images each
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "train.epochs=2"]) == 2
    err = capsys.readouterr().err
    assert "saved for a training set with other class counts" in err and "Traceback" not in err
    assert load_run_config(out).train.epochs == 1  # nothing of the refused resume was written


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["before", "half"])
def test_checkpoint_history_survives_a_kill_between_its_writes(
        moment: str, cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """train.keep_best=1: the epoch that takes over the best writes last.pt (which lists the old best for
    pruning), then epoch_<N>.pt, then deletes the old one. Killed before or inside the epoch_<N>.pt write,
    the resumed run writes the missing file, prunes the old one, and ends with the uninterrupted run's
    files and weights."""
    extra = ("train.keep_best=1", "train.keep_every=4")
    reference = tmp_path_factory.mktemp("history-reference") / "run"
    done = run(["train", *best_run_overrides(cifar10_root, reference), *extra], reference.parent / "log")
    assert done.returncode == 0, done.stderr
    vals = [json.loads(line)["val_top1"] for line in (reference / "metrics.jsonl").read_text().splitlines()]
    improving = [e for e in range(1, len(vals) + 1) if all(vals[e - 1] > v for v in vals[:e - 1])]
    if len(improving) < 2 or improving[1] == 4:
        pytest.fail(f"the reference improves at epochs {improving}; pick a run where a later epoch takes over")
    takeover = improving[1]
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    out, log = tmp_path / "run", tmp_path / "log"
    monkeypatch.setenv("FCC_TEST_KILL", f"epoch_{takeover}.pt:1:{moment}")
    proc = start(["train", *best_run_overrides(cifar10_root, out), *extra], log, script)
    assert proc.wait(timeout=300) == -signal.SIGKILL, log.read_text()[-3000:]
    kept = {p.name for p in (out / "checkpoints").glob("epoch_*.pt")}
    assert f"epoch_{takeover}.pt" not in kept and f"epoch_{improving[0]}.pt" in kept  # killed in between
    monkeypatch.delenv("FCC_TEST_KILL")
    resumed = run(["train", "--resume", str(out)], log)
    assert resumed.returncode == 0, resumed.stderr
    names = sorted(p.name for p in (out / "checkpoints").glob("*.pt"))
    assert names == sorted(p.name for p in (reference / "checkpoints").glob("*.pt"))
    for name in names:
        assert same_weights(weights(out / "checkpoints" / name), weights(reference / "checkpoints" / name)), name
    assert not list((out / "checkpoints").glob(".*tmp*"))
