"""The commands that use a trained run (`fcc eval`, `fcc predict`, `fcc data cam-generate`) as a user meets
them: one rule for a run still training, non-finite outputs as an error that says so."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from evaluation_fixtures import copy_run, trained_fcc_run  # noqa: F401 - the fcc_run fixture
from PIL import Image

from fcc_lt.cli.main import main
from fcc_lt.evaluation.metrics import ClassificationTally, FeatureTally


def a_photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


@contextmanager
def held_elsewhere(run: Path) -> Iterator[None]:
    """The run's lock as another process holds it (an flock of its own open file, which this process's
    is_locked probe conflicts with; the process's own run_lock registry knows nothing of it)."""
    fcntl = pytest.importorskip("fcntl")
    with open(run / ".lock", "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield


def test_a_run_still_training_is_refused_by_every_command_that_uses_it(fcc_run: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(fcc_run, tmp_path)
    other = copy_run(fcc_run, tmp_path / "elsewhere")
    photo, csv, cam = a_photo(tmp_path), tmp_path / "p.csv", tmp_path / "cam"
    before = sorted(p.name for p in run.iterdir())
    with held_elsewhere(run):  # as a training process holds it
        for args in (["eval", str(run)], ["eval", str(run), "--features"], ["eval", str(run), "--tau-sweep", "0,1"],
                     ["predict", str(run), str(photo), "--out", str(csv)],
                     ["data", "cam-generate", str(run), "--out", str(cam)],
                     # another run's command naming this run's checkpoint file
                     ["predict", str(other), str(photo), "--out", str(csv),
                      "--checkpoint", str(run / "checkpoints" / "last.pt")]):
            assert main(args) == 2, args
            err = capsys.readouterr().err
            assert f"{run} is in use by another fcc process (training or resuming)" in err, (args, err)
    assert not csv.exists() and not cam.exists() and sorted(p.name for p in run.iterdir()) == before
    assert main(["predict", str(run), str(photo), "--out", str(csv)]) == 0  # once it is done


def poison(run: Path, key_part: str) -> None:
    """Make last.pt's weights whose names contain ``key_part`` NaN (as an edited or outside file could be:
    fcc itself never saves a non-finite checkpoint)."""
    path = run / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    hit = [k for k in state["model"] if key_part in k and state["model"][k].is_floating_point()]
    assert hit
    for k in hit:
        state["model"][k].fill_(float("nan"))
    torch.save(state, path)


def test_nan_logits_are_an_error_not_a_top1(fcc_run: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(fcc_run, tmp_path)
    poison(run, "head.fc.bias")
    assert main(["eval", str(run)]) == 2  # before: top1 10.00, exit 0
    err = capsys.readouterr().err
    assert "100 of 100 images gave non-finite logits (NaN or inf), so no accuracy is reported" in err
    assert not (run / "eval_last_test.json").exists()
    assert main(["eval", str(run), "--tau-sweep", "0,1"]) == 2
    assert "non-finite logits" in capsys.readouterr().err and not (run / "tau_sweep.json").exists()
    csv = tmp_path / "p.csv"
    assert main(["predict", str(run), str(a_photo(tmp_path)), "--out", str(csv)]) == 2
    assert "non-finite logits (NaN or inf) for" in capsys.readouterr().err and not csv.exists()


def test_nan_features_are_an_error_not_a_traceback(fcc_run: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(fcc_run, tmp_path)
    poison(run, "backbone.stem.1.running_var")
    assert main(["eval", str(run), "--features"]) == 2  # before: a traceback
    err = capsys.readouterr().err
    assert "gave non-finite pooled features (NaN or inf), so no feature statistics are reported" in err
    assert not (run / "features.json").exists() and not (run / "features.npz").exists()


class NoHostReads(torch.overrides.TorchFunctionMode):
    """Fails on anything that reads a device value on the host."""

    FORBIDDEN = frozenset({"__float__", "__int__", "__bool__", "__index__", "item", "tolist", "numpy", "cpu"})

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if getattr(func, "__name__", "") in self.FORBIDDEN:
            raise AssertionError(f"host read in a tally update: {func.__name__}")
        return func(*args, **(kwargs or {}))


def test_the_non_finite_flag_is_kept_on_the_device_and_read_once() -> None:
    logits = torch.randn(6, 4)
    logits[2, 1] = float("nan")
    logits[4, 0] = float("inf")
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    tally = ClassificationTally(4, torch.device("cpu"))
    features = FeatureTally(4, 3, torch.device("cpu"))
    with NoHostReads():
        for _ in range(3):
            tally.update(logits, labels)
            features.update(torch.where(torch.arange(6)[:, None] == 5, float("nan"), torch.ones(6, 3)), labels)
    assert int(tally.nonfinite) == 6 and int(features.nonfinite) == 3
    with pytest.raises(Exception, match="6 of 18 images gave non-finite logits"):
        tally.check_finite()
    with pytest.raises(Exception, match="3 of 18 images gave non-finite pooled features"):
        features.check_finite()
    clean = ClassificationTally(4, torch.device("cpu"))
    clean.update(torch.randn(6, 4), labels)
    clean.check_finite()



def test_the_features_line_shows_what_the_report_shows(fcc_run: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import json

    run = copy_run(fcc_run, tmp_path)
    assert main(["eval", str(run), "--features"]) == 0
    out = capsys.readouterr().out
    stats = json.loads((run / "features.json").read_text())
    by = stats["spread_ratio_by_group"]

    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4g}"

    assert (f"test features (checkpoints/last.pt): spread ratio {num(stats['mean_spread_ratio'])} (many "
            f"{num(by['many'])}, medium {num(by['medium'])}, few {num(by['few'])}), feature norm "
            f"{num(stats['mean_norm'])}, compactness {num(stats['compactness'])}") in out
    assert f"wrote {run / 'features.json'} (and features.npz" in out


def test_fcc_eval_of_a_folder_evaluates_each_finished_run(fcc_run: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    sweep = tmp_path / "sweep"
    done, running, stopped, broken = (Path(shutil.copytree(fcc_run, sweep / name)) for name in "abcd")
    lines = (stopped / "metrics.jsonl").read_text().splitlines(keepends=True)
    (stopped / "metrics.jsonl").write_text(lines[0])  # stopped after epoch 1 of 2
    (stopped / "eval.json").unlink()
    poison(broken, "backbone.stem.1.running_var")
    with held_elsewhere(running):
        assert main(["eval", str(sweep), "--features"]) == 2  # one failed; before: "not a run directory"
    out = capsys.readouterr().out
    assert f"{sweep}: 4 runs, 1 evaluated, 2 skipped, 1 failed" in out
    assert f"  {done}: spread ratio " in out and (done / "features.json").is_file()
    assert f"  {running}: skipped: running (in use by another fcc process)" in out
    assert f"  {stopped}: skipped: stopped (stopped after epoch 1 of 2)" in out
    assert f"  {broken}: failed: " in out and "non-finite pooled features" in out
    assert not any((run / "features.json").exists() for run in (running, stopped, broken))
    shutil.rmtree(broken)
    assert main(["eval", str(sweep)]) == 0  # the rest evaluates cleanly (b no longer training)
    assert f"{sweep}: 3 runs, 2 evaluated, 1 skipped, 0 failed" in capsys.readouterr().out
    assert (done / "eval_last_test.json").is_file() and not (stopped / "eval_last_test.json").exists()


def test_near_misses_get_the_command_that_was_meant(fcc_run: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(fcc_run, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["eval", str(run / "config.yaml")], f"that is the config of the run directory {run}; evaluate the run: "
                                             f"fcc eval {run}"),
        (["eval", str(run / "checkpoints" / "best.pt")], f"evaluate it with: fcc eval {run} --checkpoint best"),
        (["eval", str(tmp_path / "rum")], f"{tmp_path / 'rum'} is not a run directory: it does not exist; did you "
                                          f"mean {run}?"),
        (["predict", str(tmp_path / "nope"), str(a_photo(tmp_path))], "nope is not a run directory: it does not exist"),
        (["train", "--resume", str(tmp_path / "nope")], "nope is not a run directory: it does not exist"),
        (["eval", str(empty)], f"{empty / 'config.yaml'} is missing (a run directory is what `fcc train` writes)"),
    ]
    for args, said in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert said in err and "nothing to resume" not in err and "Traceback" not in err, (args, err)


def test_the_python_api_follows_the_same_rules(fcc_run: Path, tmp_path: Path) -> None:
    """fcc_lt.load / fcc_lt.predict: a run still training is refused, NaN logits are an error, as in the CLI."""
    import fcc_lt
    from fcc_lt.evaluation.metrics import NonFiniteOutputs
    from fcc_lt.util.errors import OutputError

    run = copy_run(fcc_run, tmp_path)
    photo = a_photo(tmp_path)
    with held_elsewhere(run), pytest.raises(OutputError, match="in use by another fcc process"):
        fcc_lt.load(run, device="cpu")
    assert fcc_lt.load(run, device="cpu").predict(photo).index in range(10)
    poison(run, "head.fc.bias")
    with pytest.raises(NonFiniteOutputs, match="non-finite logits"):
        fcc_lt.predict(run, photo, device="cpu")
