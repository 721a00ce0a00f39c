"""`fcc sweep`: spec validation, run names, resumability, changed-spec detection, parallel runs, failures,
Ctrl-C, and the submitit executors (local for real; SLURM through stand-in sbatch/srun/sacct commands).

Spec checks and planning need no training. The few real runs are tiny (conftest's TINY_MODEL on the
fixture CIFAR-10, 2 epochs, seconds each); their `python -m fcc_lt` processes import this tree's fcc through
PYTHONPATH and run single-threaded (OMP_NUM_THREADS=1, which the sweep respects).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import tiny_run_overrides
from fcc_lt.cli.main import main
from fcc_lt.config.load import load_config
from fcc_lt.experiments.run_folder import run_status
from fcc_lt.experiments.sweep import plan as sweep
from fcc_lt.experiments.sweep import processes
from fcc_lt.experiments.sweep.command import parse_gpus
from fcc_lt.experiments.sweep.display import Display
from fcc_lt.experiments.sweep.processes import Outcome, threads_per_run
from fcc_lt.experiments.sweep.spec import load_spec, yaml_value
from fcc_lt.util.run_lock import lock_run_dir, unlock_run_dir

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def child_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the sweep's child processes inherit: this tree's fcc, one thread each."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current directory with a one-line config (the spec's overrides make it tiny)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.yaml").write_text("# the defaults; the sweep's overrides make it tiny\n{}\n")
    return tmp_path


def tiny_overrides(root: Path, *extra: str) -> list[str]:
    """conftest's tiny-run overrides without `out` (the sweep sets it), ``extra`` replacing keys they set
    (a spec may set each key once)."""
    replaced = {e.partition("=")[0] for e in extra}
    base = [o for o in tiny_run_overrides(root, Path("unused")) if o.partition("=")[0] not in {"out", *replaced}]
    return [*base, *extra]


def write_spec(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def sweep_main(*args: str) -> int:
    return main(["sweep", *args])


# ----------------------------------------------------------------------------------- spec validation


BAD_SPECS = [
    ({"configs": ["base.yaml"], "seed": [0]}, ["unknown key 'seed'", "did you mean 'seeds'?"]),
    ({"seeds": [0]}, ["'configs' is missing"]),
    ({"configs": ["nope.yaml"]}, ["configs[0]: config file 'nope.yaml' not found"]),
    ({"configs": ["base.yaml", "base.yaml"]}, ["configs[1]:", "give one of them a name"]),
    ({"configs": [{"config": "base.yaml", "nmae": "x"}]}, ["configs[0].nmae", "did you mean 'name'?"]),
    ({"configs": ["base.yaml"], "seeds": [0, 1, 1]}, ["seeds[2]: seed 1 is listed twice"]),
    ({"configs": ["base.yaml"], "seeds": [-1]}, ["seeds[0]: expected a non-negative integer"]),
    ({"configs": ["base.yaml"], "overrides": ["train.epochs"]}, ["overrides[0]:", "expected key.sub=value"]),
    ({"configs": ["base.yaml"], "overrides": [{"train.epochs": 3}]}, ["overrides[0]:", "not `- train.epochs: 30`"]),
    ({"configs": ["base.yaml"], "overrides": ["seed=3"]}, ["overrides[0]: seed is set by the sweep"]),
    ({"configs": ["base.yaml"], "overrides": ["train.epochs=3", "train.epochs=4"]},
     ["overrides[1]: train.epochs is already set by overrides[0]"]),
    ({"configs": ["base.yaml"], "overrides": ["train.epoch=3"]},
     ["overrides[0]: override 'train.epoch=3': unknown key 'train.epoch'", "did you mean 'train.epochs'?"]),
    ({"configs": ["base.yaml"], "grid": {"fcc.gama": [0.5, 1.0]}},
     ["grid['fcc.gama']: override 'fcc.gama=0.5'", "did you mean 'fcc.gamma'?"]),
    ({"configs": ["base.yaml"], "grid": {"fcc.gamma": 0.5}}, ["grid['fcc.gamma']: expected a non-empty list"]),
    ({"configs": ["base.yaml"], "grid": {"fcc.gamma": [0.5, 0.5]}},
     ["grid['fcc.gamma'][1]: the value 0.5 is listed twice"]),
    ({"configs": ["base.yaml"], "overrides": ["fcc.gamma=1"], "grid": {"fcc.gamma": [0.5]}},
     ["grid['fcc.gamma']: fcc.gamma is also set by overrides[0]"]),
    ({"configs": ["base.yaml"], "grid": {"train.batch_size": [16, 0]}},
     ["run base__train.batch_size-0__seed0: train.batch_size: expected an integer >= 1"]),
    ({"configs": ["base.yaml"], "grid": {"data.root": ["a/b", "a_b"]}}, ["give the same run directory"]),
    ({"configs": ["base.yaml"], "slurm": {"partion": "gpu"}}, ["slurm.partion", "did you mean 'partition'?"]),
]


@pytest.mark.parametrize(("spec", "expected"), BAD_SPECS, ids=[str(i) for i in range(len(BAD_SPECS))])
def test_bad_spec_is_one_error_naming_file_and_key(workdir: Path, capsys: pytest.CaptureFixture[str],
                                                   spec: dict, expected: list[str]) -> None:
    write_spec(workdir / "s.yaml", spec)
    assert sweep_main("s.yaml", "--dry-run") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: s.yaml: ") and "Traceback" not in err
    for text in expected:
        assert text in err
    assert not (workdir / "runs").exists()


def test_unreadable_specs_and_bad_options(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "bad.yaml").write_text("configs: [a, b\n")
    assert sweep_main("bad.yaml") == 2
    assert "bad.yaml: not valid YAML" in capsys.readouterr().err
    (workdir / "list.yaml").write_text("- base.yaml\n")
    assert sweep_main("list.yaml") == 2
    assert "a sweep spec is a mapping" in capsys.readouterr().err
    assert sweep_main("missing.yaml") == 2
    assert "missing.yaml: sweep spec not found" in capsys.readouterr().err
    good = write_spec(workdir / "good.yaml", {"configs": ["base.yaml"]})
    assert sweep_main(str(good), "--no-wait") == 2
    assert "--no-wait needs --executor slurm" in capsys.readouterr().err
    assert sweep_main(str(good), "--executor", "local", "--slurm-time", "soon") == 2
    assert "--slurm-time: expected a time limit" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # argparse refuses it before anything runs
        sweep_main(str(good), "--parallel", "0")
    assert stop.value.code == 2
    assert "--parallel: expected an integer >= 1" in capsys.readouterr().err


def test_missing_dataset_is_one_error_before_any_run_starts(workdir: Path, cifar10_root: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "empty").mkdir()
    spec = write_spec(workdir / "s.yaml", {"configs": ["base.yaml"], "seeds": [0, 1], "overrides":
                                           tiny_overrides(cifar10_root, "data.root=empty", "data.download=false")})
    assert sweep_main(str(spec), "--parallel", "2") == 2
    captured = capsys.readouterr()
    assert "fetching CIFAR-10 into empty once, before the runs start" in captured.out
    assert "error: CIFAR-10 is not under empty" in captured.err and "downloads are off" in captured.err
    assert not list(Path("runs/sweeps/s").glob("*/train.log"))  # no run was started


def test_missing_submitit_names_the_extra(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    spec = write_spec(workdir / "s.yaml", {"configs": ["base.yaml"], "slurm": {"time": 60}})
    assert sweep_main(str(spec), "--executor", "slurm") == 2
    assert "pip install 'fcc-lt[slurm]'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ names, plan


def test_run_names_commands_and_dry_run(workdir: Path, cifar10_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "other").mkdir()
    (workdir / "other" / "base.yaml").write_text("train: {momentum: 0.8}\n")  # another config: not a repeat
    overrides = tiny_overrides(cifar10_root, "fcc.enabled=true")  # fcc.gamma acts
    spec = write_spec(workdir / "grid.yaml", {
        "out": "runs/g", "configs": ["base.yaml", {"config": "other/base.yaml", "name": "b2"}], "seeds": [0, 1],
        "overrides": overrides, "grid": {"fcc.gamma": [0.5, 1.0], "loss.name": ["ce"]},
    })
    assert sweep_main(str(spec), "--dry-run") == 0
    out = capsys.readouterr().out
    names = re.findall(r"^  train +(\S+)", out, flags=re.MULTILINE)
    assert names == [f"{c}__fcc.gamma-{g}__loss.name-ce__seed{s}" for s in (0, 1) for c in ("base", "b2")
                     for g in ("0.5", "1.0")]  # seed by seed
    assert "8 run(s): 8 to train" in out
    assert (f"fcc train base.yaml {' '.join(overrides)} fcc.gamma=0.5 loss.name=ce seed=0 "
            "out=runs/g/base__fcc.gamma-0.5__loss.name-ce__seed0") in out.replace("'", "")
    assert not Path("runs").exists()  # a dry run writes nothing

    # the runs' resolved configs are exactly what `fcc train` with these arguments resolves
    runs = sweep.expand(load_spec(spec))
    first = runs[0]
    cfg = load_config(first.config, first.overrides)
    assert cfg.out == str(first.run_dir) and cfg.fcc.gamma == 0.5 and cfg.seed == 0


def test_value_slugs_are_safe_and_distinct() -> None:
    assert sweep.value_slug(0.5) == "0.5"
    assert sweep.value_slug(1e-5) == "1.0e-05"
    assert sweep.value_slug(True) == "true"
    assert sweep.value_slug("data/cifar 10") == "data_cifar_10"
    assert sweep.value_slug([120, 160]) == "120_160"
    assert sweep.value_slug({"depth": 8, "width": 4}) == "depth_8_width_4"
    long_a, long_b = sweep.value_slug("x" * 100), sweep.value_slug("x" * 99 + "y")
    assert len(long_a) == 40 and long_a != long_b
    # values that YAML would read back as something else are quoted in the override
    assert yaml_value("1.0") == "'1.0'" and yaml_value("runs #1") == "'runs #1'"
    assert yaml.safe_load(yaml_value([1, "a: b"])) == [1, "a: b"]


def fake_run(run: sweep.Run, overrides: list[str], epochs_done: int, finished: bool) -> None:
    """A run directory as `fcc train` leaves it, without training: config.yaml, metrics.jsonl, eval.json."""
    run.run_dir.mkdir(parents=True)
    (run.run_dir / "config.yaml").write_text(load_config(run.config, overrides).dump())
    lines = [json.dumps({"epoch": e, "train_loss": 1.0}) for e in range(1, epochs_done + 1)]
    (run.run_dir / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
    if finished:
        (run.run_dir / "eval.json").write_text("{}")


def test_states_decide_actions_and_changed_configs_are_refused(workdir: Path, cifar10_root: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(workdir / "s.yaml", {"out": "runs/s", "configs": ["base.yaml"], "seeds": [0, 1, 2, 3],
                                           "overrides": tiny_overrides(cifar10_root)})
    runs = sweep.expand(load_spec(spec))
    fake_run(runs[0], runs[0].overrides, 2, finished=True)  # finished
    fake_run(runs[1], runs[1].overrides, 1, finished=False)  # stopped after epoch 1
    runs[2].run_dir.mkdir(parents=True)
    lock_run_dir(runs[2].run_dir)  # another process trains it
    try:
        (runs[2].run_dir / "config.yaml").write_text(load_config(runs[2].config, runs[2].overrides).dump())
        assert sweep_main(str(spec), "--dry-run") == 0
        out = capsys.readouterr().out
        assert re.search(r"skip +base__seed0 +finished \(2/2 epochs\)", out)
        assert re.search(r"resume +base__seed1 +stopped after epoch 1 of 2\n +fcc train --resume runs/s/base__seed1",
                         out)
        assert re.search(r"skip +base__seed2 +running \(another process holds", out)
        assert re.search(r"train +base__seed3 +new", out)
    finally:
        unlock_run_dir(runs[2].run_dir)

    # the spec now asks for another learning rate: the finished and the stopped run are refused, by name and key
    changed = write_spec(workdir / "s.yaml", {"out": "runs/s", "configs": ["base.yaml"], "seeds": [0, 1, 2, 3],
                                              "overrides": tiny_overrides(cifar10_root, "train.lr=0.1")})
    assert sweep_main(str(changed)) == 2
    err = capsys.readouterr().err
    assert "2 run(s) in runs/s were started with another config than the spec asks for now" in err
    assert "runs/s/base__seed0: train.lr 0.05 -> 0.1" in err and "runs/s/base__seed1: train.lr 0.05 -> 0.1" in err
    assert "--rerun-changed" in err and "base__seed2" not in err  # only a config.yaml: nothing to protect
    assert not (workdir / "runs" / "s" / "sweep.json").exists()  # refused before anything was written
    assert sweep_main(str(changed), "--dry-run", "--rerun-changed") == 0
    assert len(re.findall(r"retrain +base__seed[01] ", capsys.readouterr().out)) == 2


def test_config_changes_ignore_out_and_defaults_older_runs_lacked() -> None:
    wanted = load_config(None, ["train.lr=0.2", "out=a"]).to_dict()
    stored = json.loads(json.dumps(wanted))
    stored["out"] = "/elsewhere/a"
    del stored["train"]["tensorboard"]  # written before the key existed; the default applies
    stored["train"]["retired_key"] = 1  # a key this fcc no longer has
    assert sweep.config_changes(stored, wanted) == []
    stored["loss"]["params"] = {"gamma": 2.0}
    stored["train"]["lr"] = 0.1
    assert sweep.config_changes(stored, wanted) == [("train.lr", 0.1, 0.2), ("loss.params.gamma", 2.0, "(absent)")]
    stored["train"]["tensorboard"] = False
    assert sweep.config_changes(wanted, stored) == [("train.lr", 0.2, 0.1), ("loss.params.gamma", "(absent)", 2.0)]


def test_threads_and_child_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert threads_per_run(4, cores=16) == 4
    assert threads_per_run(3, cores=2) == 1
    assert threads_per_run(1, cores=8) == 8
    env = processes.child_env(4, gpu="1", base={"PATH": "/bin"})
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "4" and env["CUDA_VISIBLE_DEVICES"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert processes.child_env(4, base={"OMP_NUM_THREADS": "2"})["OMP_NUM_THREADS"] == "2"  # the user's choice wins
    assert parse_gpus("0, 1") == ["0", "1"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_lines_in_place_on_a_terminal_and_events_elsewhere(workdir: Path, cifar10_root: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "200")
    spec = load_spec(write_spec(workdir / "s.yaml", {"configs": ["base.yaml"], "seeds": [0, 1],
                                                           "overrides": tiny_overrides(cifar10_root)}))
    planned = sweep.plan(spec, sweep.expand(spec), rerun_changed=False, executor="process")
    tty = _Terminal()
    display = Display(tty, planned)
    display.begin()
    display.started(planned[0])
    planned[0].run.run_dir.mkdir(parents=True)
    (planned[0].run.run_dir / "metrics.jsonl").write_text('{"epoch": 1}\n')
    display.tick()
    display.ended(planned[1], Outcome("failed", 2, "error: boom", 1.0))
    text = tty.getvalue()
    assert "\x1b[2F" in text  # redrawn in place: back up over the two lines
    last = text.rsplit("\x1b[2F", 1)[1]
    assert re.search(r"training +base__seed0 +epoch 1/2", last)
    assert re.search(r"failed +base__seed1 .*exit 2: error: boom \(log: .*train.log\)", last)

    squeezed = display.lines(height=1)  # a terminal too small for every run: the active one, then a count
    assert len(squeezed) == 1 and squeezed[0].startswith("... and 2 more: ")
    assert display.lines(height=2)[0].startswith("training  base__seed0")

    plain = io.StringIO()
    display = Display(plain, planned)
    display.started(planned[0])
    display.ended(planned[0], Outcome("finished", 0, elapsed=65.0))
    lines = plain.getvalue().splitlines()
    assert "\x1b" not in plain.getvalue() and len(lines) == 2
    assert re.search(r"start +base__seed0: train; log: ", lines[0])
    assert re.search(r"finished base__seed0 after 1:05", lines[1])


def test_a_grid_too_large_is_refused_before_it_is_expanded(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """128**3 grid combinations x 2 seeds: counted and refused at once, without resolving a single config (each
    run's config used to be resolved first: hours for a spec like this, even with --dry-run)."""
    import fcc_lt.config.load

    calls = []

    def counting_load_config(*args: object, **kwargs: object) -> object:
        calls.append(args)
        if len(calls) > 50:
            raise RuntimeError("the grid is being expanded run by run")
        return real(*args, **kwargs)

    real = fcc_lt.config.load.load_config
    monkeypatch.setattr(fcc_lt.config.load, "load_config", counting_load_config)
    values = [round(0.01 * i, 2) for i in range(1, 129)]
    grid = {"fcc.gamma": values, "train.lr": values, "train.momentum": values}
    spec = write_spec(workdir / "big.yaml", {"configs": ["base.yaml"], "seeds": [0, 1], "grid": grid})
    assert sweep_main(str(spec), "--dry-run") == 2
    err = capsys.readouterr().err
    assert "the spec makes 4194304 runs (1 config(s) x 2097152 grid combination(s) x 2 seed(s)), more than the limit " \
           "of 1000" in err and "--max-runs 4194304" in err and len(err.splitlines()) == 1
    assert not calls
    # the limit is the user's to raise, and a spec within it is planned as before
    small = write_spec(workdir / "small.yaml", {"configs": ["base.yaml"], "seeds": [0, 1, 2],
                                                "grid": {"train.lr": [0.1, 0.2, 0.3, 0.4]}})
    assert sweep_main(str(small), "--dry-run", "--max-runs", "11") == 2
    assert "makes 12 runs (1 config(s) x 4 grid combination(s) x 3 seed(s)), more than the limit of 11" in \
        capsys.readouterr().err
    assert sweep_main(str(small), "--dry-run", "--max-runs", "12") == 0
    assert "12 run(s): 12 to train" in capsys.readouterr().out and len(calls) == 12


def test_grid_values_without_effect_are_not_trained_twice(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """fcc.gamma over a config without FCC, and milestones under a cosine schedule, make the same run twice:
    the repeats are planned as skips naming the key and why, never trained."""
    (workdir / "fcc.yaml").write_text("fcc: {enabled: true}\n")
    spec = write_spec(workdir / "s.yaml", {"configs": ["base.yaml", "fcc.yaml"], "seeds": [0, 1],
                                           "grid": {"fcc.gamma": [0.5, 1.0]}})
    assert sweep_main(str(spec), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "8 run(s): 6 to train, 2 repeating another run (not trained)" in out
    for seed in (0, 1):
        assert re.search(rf"skip +base__fcc.gamma-1.0__seed{seed} +the same run as base__fcc.gamma-0.5__seed{seed}: "
                         r"fcc.gamma has no effect: FCC is off \(fcc.enabled: false\)", out)
        assert re.search(rf"train +fcc__fcc.gamma-1.0__seed{seed} +new", out)
    assert "note: 2 run(s) differ from another run of the spec only in keys that have no effect there (fcc.gamma)" \
        in out
    cosine = write_spec(workdir / "c.yaml", {"configs": ["base.yaml"], "overrides": ["train.scheduler=cosine"],
                                             "grid": {"train.milestones": [[100], [150]], "train.min_lr": [0.0, 0.01]}})
    assert sweep_main(str(cosine), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "4 run(s): 2 to train, 2 repeating another run (not trained)" in out
    assert "train.milestones has no effect: train.scheduler is cosine, not multistep" in out
    # a part's parameter under another part is refused before anything runs, naming the grid key
    params = write_spec(workdir / "p.yaml", {"configs": ["base.yaml"], "grid": {"loss.params.gamma": [1.0, 2.0]}})
    assert sweep_main(str(params), "--dry-run") == 2
    assert "loss.params.gamma: loss 'ce' has no parameter 'gamma'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_run_another_sweep_started_first_is_running_elsewhere_not_failed(
        workdir: Path, cifar10_root: Path, child_env: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Two sweeps over one folder race for a run: both see it unstarted, the other one's `fcc train` takes the
    run directory's lock first, and this sweep's is refused by the lock. That is the lock doing its job, not a
    failed run: reported as running elsewhere, exit 0."""
    from fcc_lt.experiments.sweep import local

    spec = write_spec(workdir / "s.yaml", {"out": "runs/r", "configs": ["base.yaml"],
                                           "overrides": tiny_overrides(cifar10_root)})
    run_dir = workdir / "runs" / "r" / "base__seed0"
    real_status = local.run_status

    def other_sweep_wins(path: Path) -> object:
        status = real_status(path)  # this sweep's last look: not started
        run_dir.mkdir(parents=True, exist_ok=True)
        lock_run_dir(run_dir)  # ... and the other sweep's `fcc train` takes the lock before ours
        return status

    monkeypatch.setattr(local, "run_status", other_sweep_wins)
    try:
        assert sweep_main(str(spec)) == 0
    finally:
        unlock_run_dir(run_dir)
    out = capsys.readouterr().out
    assert "FAILED" not in out and "failed" not in out.split("\nsweep runs/r:")[1]
    assert re.search(r"skipped base__seed0: running elsewhere \(another fcc process held runs/r/base__seed0/\.lock",
                     out), out
    assert "is in use by another fcc process" in (run_dir / "train.log").read_text()


# ----------------------------------------------------------------------------------------- training


def test_parallel_runs_go_on_after_a_failure(workdir: Path, cifar10_root: Path, child_env: None,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "broken.yaml").write_text("model: {init_from: no-such-run/checkpoints/last.pt}\n")
    spec = write_spec(workdir / "s.yaml", {"out": "runs/p", "configs": ["broken.yaml", "base.yaml"],
                                           "overrides": tiny_overrides(cifar10_root)})
    assert sweep_main(str(spec), "--parallel", "2") == 1
    out = capsys.readouterr().out
    events = [line.split("] ", 1)[1] for line in out.splitlines() if line.startswith("[")]
    assert [e.split()[0] for e in events[:2]] == ["start", "start"]  # both at once
    assert "1 finished now, 1 failed" in out
    log = Path("runs/p/broken__seed0/train.log")
    assert "FAILED broken__seed0: exit 2 after" in out and f"log: {log}" in out
    assert "error: model.init_from: checkpoint not found" in out  # the run's own message, from its log
    assert run_status(Path("runs/p/base__seed0")).finished
    record = json.loads(Path("runs/p/sweep.json").read_text())
    assert [r["name"] for r in record["runs"]] == ["broken__seed0", "base__seed0"]
    assert record["runs"][1]["overrides"][-2:] == ["seed=0", "out=runs/p/base__seed0"]
    assert record["spec"]["configs"] == ["broken.yaml", "base.yaml"]
    assert "results: fcc report runs/p" in out


@pytest.mark.slow
def test_interrupted_sweep_exits_130_and_resumes(workdir: Path, cifar10_root: Path, child_env: None) -> None:
    spec = write_spec(workdir / "s.yaml", {"out": "runs/i", "configs": ["base.yaml"],
                                           "overrides": tiny_overrides(cifar10_root, "train.epochs=25",
                                                                       "train.milestones=[20]")})
    run_dir = workdir / "runs" / "i" / "base__seed0"
    with open(workdir / "sweep1.out", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "fcc_lt", "sweep", str(spec)], stdout=out,
                                stderr=subprocess.STDOUT, env=os.environ.copy())
    deadline = time.monotonic() + 120
    while (run_status(run_dir).epoch or 0) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert proc.wait(timeout=120) == 130
    first = (workdir / "sweep1.out").read_text()
    assert "stopped by SIGINT" in first and "1 stopped" in first
    status = run_status(run_dir)
    assert status.state == "stopped" and (run_dir / "checkpoints" / "last.pt").is_file()

    done = subprocess.run([sys.executable, "-m", "fcc_lt", "sweep", str(spec)], capture_output=True, text=True,
                          timeout=300, env=os.environ.copy())
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"resume +base__seed0 +stopped after epoch \d+ of 25", done.stdout)
    assert "1 finished now" in done.stdout
    epochs = [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, 26))
    headers = re.findall(r"===== .* fcc sweep: (.*)", (run_dir / "train.log").read_text())
    assert headers[0].startswith("fcc train base.yaml")
    assert headers[1] == f"fcc train --resume {run_dir.relative_to(workdir)}"

    again = subprocess.run([sys.executable, "-m", "fcc_lt", "sweep", str(spec)], capture_output=True, text=True,
                           timeout=300, env=os.environ.copy())
    assert again.returncode == 0 and "1 finished before (skipped)" in again.stdout
    assert len(re.findall("=====", (run_dir / "train.log").read_text())) == 2  # nothing was started


# ------------------------------------------------------------------------------------------ submitit


@pytest.mark.slow
def test_submitit_local_executor_trains_and_skips(workdir: Path, cifar10_root: Path, child_env: None,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("submitit")
    spec = write_spec(workdir / "s.yaml", {"out": "runs/l", "configs": ["base.yaml"],
                                           "overrides": tiny_overrides(cifar10_root)})
    assert sweep_main(str(spec), "--executor", "local") == 0
    out = capsys.readouterr().out
    assert re.search(r"start +base__seed0: train, submitit job \d+", out) and "1 finished now" in out
    assert run_status(Path("runs/l/base__seed0")).finished
    assert any(Path("runs/l/.submitit").iterdir())  # submitit's own logs
    assert sweep_main(str(spec), "--executor", "local") == 0
    assert "1 finished before (skipped)" in capsys.readouterr().out


class _Requeued(Exception):
    pass


@pytest.mark.slow
def test_timeout_signal_stops_the_run_and_the_requeued_job_resumes_it(workdir: Path, cifar10_root: Path,
                                                                      child_env: None) -> None:
    """What submitit does on SLURM's end-of-time signal: call the job's checkpoint() from the signal
    handler, requeue what it returns, and run that again later."""
    submitit = pytest.importorskip("submitit")
    from fcc_lt.experiments.sweep.slurm import RunJob

    spec = load_spec(write_spec(workdir / "s.yaml", {"out": "runs/t", "configs": ["base.yaml"], "overrides":
                                                           tiny_overrides(cifar10_root, "train.epochs=25",
                                                                          "train.milestones=[20]")}))
    run = sweep.expand(spec)[0]
    job = RunJob(run, "train", str(workdir), threads=1)
    box: dict = {}

    def handler(signum: int, frame: object) -> None:
        box["requeued"] = job.checkpoint()
        raise _Requeued

    def timeout_signal() -> None:
        deadline = time.monotonic() + 120
        while (run_status(run.run_dir).epoch or 0) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGUSR2)

    previous = signal.signal(signal.SIGUSR2, handler)
    try:
        threading.Thread(target=timeout_signal, daemon=True).start()
        with pytest.raises(_Requeued):
            job()
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert run_status(run.run_dir).state == "stopped"
    requeued = box["requeued"]
    assert isinstance(requeued, submitit.helpers.DelayedSubmission) and requeued.function is job
    again = pickle.loads(pickle.dumps(job))  # what submitit stores for the requeued job
    assert again.attempt == 1 and again() == 0
    assert run_status(run.run_dir).finished
    assert "--resume" in (run.run_dir / "train.log").read_text().rsplit("=====", 1)[1]


FAKE_SBATCH = """#!{python}
# Stands in for SLURM's sbatch: keeps the batch file, answers like sbatch, and (with FAKE_SLURM_RUN) runs
# the array's tasks one after the other in the background, with the environment SLURM gives them.
import os, re, shutil, subprocess, sys
script, state, job = sys.argv[1], os.environ["FAKE_SLURM"], os.environ["FAKE_JOB_ID"]
shutil.copy(script, os.path.join(state, "submitted.sh"))
text = open(script).read()
m = re.search(r"#SBATCH --array=(\\d+)-(\\d+)", text)
tasks = [str(i) for i in range(int(m[1]), int(m[2]) + 1)] if m else [""]
if os.environ.get("FAKE_SLURM_RUN"):
    code = '''
import os, subprocess, sys
script, job, tasks = sys.argv[1], sys.argv[2], sys.argv[3:]
for task in tasks:
    env = dict(os.environ, SLURM_JOB_ID=job, SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0",
               SLURM_NTASKS="1", SLURM_JOB_NUM_NODES="1")
    if task:
        env.update(SLURM_ARRAY_JOB_ID=job, SLURM_ARRAY_TASK_ID=task)
    subprocess.run(["bash", script], env=env)
'''
    subprocess.Popen([sys.executable, "-c", code, script, job, *tasks], start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print("Submitted batch job " + job)
"""

FAKE_SRUN = """#!{python}
# Stands in for srun inside a batch script: drops srun's options and runs the command.
import os, sys
args = sys.argv[1:]
while args and args[0].startswith("--"):
    args = args[2:] if args[0] in ("--output", "--error") else args[1:]
os.execvp(args[0], args)
"""

FAKE_SACCT = """#!/bin/sh
cat "$FAKE_SLURM/sacct.txt" 2>/dev/null || echo "JobID|State|NodeList"
"""


@pytest.fixture
def fake_slurm(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """sbatch, srun and sacct stand-ins first on PATH; returns the folder they keep their state in."""
    pytest.importorskip("submitit")
    bin_dir, state = tmp_path_factory.mktemp("fake_slurm_bin"), tmp_path_factory.mktemp("fake_slurm_state")
    for name, text in (("sbatch", FAKE_SBATCH), ("srun", FAKE_SRUN), ("sacct", FAKE_SACCT)):
        (bin_dir / name).write_text(text.replace("{python}", sys.executable))
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(state))
    # job ids unique in this process: submitit caches the states of jobs it saw end
    monkeypatch.setenv("FAKE_JOB_ID", str(4000 + int(time.time() * 1000) % 100000))
    return state


def test_slurm_submission_options_record_and_queued_runs(workdir: Path, cifar10_root: Path, fake_slurm: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(workdir / "s.yaml", {
        "out": "runs/q", "configs": ["base.yaml"], "seeds": [0, 1], "overrides": tiny_overrides(cifar10_root),
        "slurm": {"partition": "gpu", "time": "4:00:00", "setup": ["module load cuda"],
                  "additional": {"mail-type": "END"}},
    })
    text = spec.read_text()
    assert "time: '4:00:00'" in text
    spec.write_text(text.replace("time: '4:00:00'", "time: 4:00:00"))  # unquoted, YAML 1.1 reads 14400
    assert sweep_main(str(spec), "--executor", "slurm", "--slurm-cpus", "4", "--slurm-mem-gb", "16",
                      "--slurm-partition", "a100", "--parallel", "1", "--no-wait") == 0
    out = capsys.readouterr().out
    job = os.environ["FAKE_JOB_ID"]
    assert f"queued   base__seed0: job {job}_0" in out and f"submitted; jobs {job}_0, {job}_1" in out
    batch = (fake_slurm / "submitted.sh").read_text()
    for line in ("#SBATCH --partition=a100", "#SBATCH --time=240", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --mem=16GB", "#SBATCH --array=0-1%1",
                 "#SBATCH --mail-type=END", "#SBATCH --ntasks-per-node=1", "module load cuda"):
        assert line in batch
    jobs = json.loads(Path("runs/q/sweep.json").read_text())["jobs"]
    assert {n: j["job_id"] for n, j in jobs.items()} == {"base__seed0": f"{job}_0", "base__seed1": f"{job}_1"}

    # while SLURM has them, a sweep neither trains nor submits them again
    (fake_slurm / "sacct.txt").write_text(f"JobID|State|NodeList\n{job}_0|PENDING|\n{job}_1|RUNNING|node7\n")
    assert sweep_main(str(spec)) == 0
    out = capsys.readouterr().out
    assert f"skip     base__seed0  queued on SLURM as job {job}_0 (PENDING)" in out
    assert "2 skipped" in out and not Path("runs/q/base__seed0/train.log").exists()
    assert sweep_main(str(spec), "--executor", "slurm", "--dry-run") == 0
    assert f"attach   base__seed1  queued on SLURM as job {job}_1 (RUNNING)" in capsys.readouterr().out

    # once they ended without finishing (cancelled here), they are trained again
    (fake_slurm / "sacct.txt").write_text(f"JobID|State|NodeList\n{job}_0|CANCELLED by 1|\n{job}_1|FAILED|\n")
    assert sweep_main(str(spec), "--executor", "slurm", "--dry-run") == 0
    assert len(re.findall(r"^  train +base__seed[01] +new", capsys.readouterr().out, flags=re.MULTILINE)) == 2


def test_ctrl_c_stops_watching_slurm_jobs_and_leaves_them_queued(workdir: Path, cifar10_root: Path,
                                                                 fake_slurm: Path, child_env: None) -> None:
    spec = write_spec(workdir / "s.yaml", {"out": "runs/d", "configs": ["base.yaml"], "slurm": {"time": 30},
                                           "overrides": tiny_overrides(cifar10_root)})
    log = workdir / "watch.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "fcc_lt", "sweep", str(spec), "--executor", "slurm"],
                                stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
    deadline = time.monotonic() + 120
    while "queued   base__seed0" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    text = log.read_text()
    job = os.environ["FAKE_JOB_ID"]
    assert "1 job(s) stay on SLURM" in text and f"scancel {job}" in text and "1 queued" in text, text
    assert json.loads(Path("runs/d/sweep.json").read_text())["jobs"]["base__seed0"]["job_id"] == job


def test_slurm_times() -> None:
    from fcc_lt.experiments.sweep.slurm import parse_time
    from fcc_lt.util.errors import ConfigError

    assert [parse_time(t, "t") for t in (90, "90", "4:00:00", "1-00:00:00", "2-12", "30:30", "4h", "90m", "1d")] == \
        [90, 90, 240, 1440, 3600, 31, 240, 90, 1440]
    for bad in ("soon", 0, "", "-1", True):
        with pytest.raises(ConfigError, match="expected a time limit"):
            parse_time(bad, "t")


@pytest.mark.slow
def test_slurm_executor_watches_its_jobs_to_the_end(workdir: Path, cifar10_root: Path, fake_slurm: Path,
                                                    child_env: None, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FAKE_SLURM_RUN", "1")
    spec = write_spec(workdir / "s.yaml", {"out": "runs/w", "configs": ["base.yaml"], "slurm": {"gpus": 0},
                                           "overrides": tiny_overrides(cifar10_root)})
    assert sweep_main(str(spec), "--executor", "slurm", "--slurm-time", "10") == 0
    out = capsys.readouterr().out
    assert "1 finished now" in out, out
    assert run_status(Path("runs/w/base__seed0")).finished
    assert "--gpus-per-node" not in (fake_slurm / "submitted.sh").read_text()


def test_the_shipped_evidence_spec_is_ce_against_ce_fcc_over_four_seeds(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    """The shipped spec cifar10_lt_ce_vs_fcc (docs/results.md) expands, by name from any folder (a user's,
    outside any checkout), into CE / CE+FCC pairs on CIFAR-10-LT IF 100 that differ only in FCC and share
    each seed; its data is the official download into the default data/, nothing of this project's machines."""
    from fcc_lt.config.recipes import resolve_sweep

    monkeypatch.chdir(tmp_path)
    spec = resolve_sweep("cifar10_lt_ce_vs_fcc")
    assert "../" not in spec.read_text() and "shared" not in spec.read_text()
    runs = sweep.expand(load_spec(spec))
    assert {r.resolved["data"]["root"] for r in runs} == {"data"}
    assert sorted(r.name for r in runs) == sorted(f"{c}__seed{s}" for c in ("ce_if100", "ce_fcc_if100")
                                                  for s in (0, 1, 2, 3))
    assert {r.resolved["data"]["val_per_class"] for r in runs} == {50}  # fcc analyze's logit adjustment
    for seed in (0, 1, 2, 3):
        ce, fcc = (next(r.resolved for r in runs if r.name == f"{c}__seed{seed}") for c in ("ce_if100", "ce_fcc_if100"))
        assert (ce["seed"], ce["data"]["dataset"], ce["data"]["imbalance_factor"]) == (seed, "cifar10", 100)
        assert (ce["fcc"]["enabled"], fcc["fcc"]["enabled"]) == (False, True)
        assert {k: v for k, v in ce.items() if k != "fcc"} == {k: v for k, v in fcc.items() if k != "fcc"}
