"""`fcc config`: what it says valid can start (the files a config names are there), what it did not check it
says in its last line (issue 18), and a data.root one folder too deep gets its parent suggested (issue 23)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from conftest import tiny_run_overrides
from fcc_lt.cli.main import main
from fcc_lt.config.load import load_config
from fcc_lt.config.validate import ConfigWarning
from fcc_lt.data.build import build_splits
from fcc_lt.util.errors import ConfigError, DataError


def config_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["config", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("overrides, message", [
    (["model.init_from=NOWHERE"], "error: model.init_from: checkpoint not found: NOWHERE"),
    (["model.init_from=RUN"], "error: model.init_from: checkpoint not found: RUN/checkpoints/last.pt"),
    (["loss.name=dive", "distill.teacher=NOWHERE"], "error: distill.teacher: checkpoint not found: NOWHERE"),
    (["data.root=NOWHERE", "data.download=false"], "error: CIFAR-10 is not under NOWHERE and could not be fetched"),
    (["eval.checkpoint=best"], "error: eval.checkpoint: best needs a validation split"),
    (["data.dataset=json", "data.train_json=NOWHERE/train.json", "data.test_json=NOWHERE/test.json"],
     "error: data.train_json: NOWHERE/train.json does not exist (an annotation file is expected)"),
    (["data.dataset=image_folder", "data.root=NOWHERE"], "error: data.root: NOWHERE/train does not exist"),
])
def test_a_config_that_cannot_start_is_not_called_valid(cifar10_root: Path, tmp_path: Path, overrides: list[str],
                                                        message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Each of these passed `fcc config` ("valid") and failed at the start of `fcc train`."""
    run = tmp_path / "run"
    run.mkdir()  # a folder that holds no checkpoint
    subst = {"NOWHERE": str(tmp_path / "nowhere"), "RUN": str(run)}
    given = [o.replace("NOWHERE", subst["NOWHERE"]).replace("RUN", subst["RUN"]) for o in overrides]
    code, out, err = config_cli(capsys, *tiny_run_overrides(cifar10_root, tmp_path / "out", *given))
    expected = message.replace("NOWHERE", subst["NOWHERE"]).replace("RUN", subst["RUN"])
    assert code == 2 and err.startswith(expected), err
    assert "valid" not in out


def test_the_last_line_says_what_was_not_checked(cifar10_root: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = config_cli(capsys, *tiny_run_overrides(cifar10_root, tmp_path / "out"))
    assert code == 0
    assert out.splitlines()[-1] == (
        "# valid: the defaults with 12 override(s) passes every check `fcc train` makes before training, and the "
        f"files it names are there; not checked: the contents of the CIFAR-10 files in {cifar10_root}/"
        "cifar-10-batches-py (checksums, images: read when training starts)")
    code, out, _ = config_cli(capsys, *tiny_run_overrides(tmp_path / "empty", tmp_path / "out"))
    assert code == 0 and out.splitlines()[-1].endswith(
        f"not checked: the download of CIFAR-10 into {tmp_path / 'empty'} (data.download: true; it happens when "
        "training starts)")


def test_a_data_root_one_folder_too_deep_suggests_its_parent(cifar10_root: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """data.root pointing into cifar-10-batches-py: not a download of a second copy inside it, but the parent."""
    deep = cifar10_root / "cifar-10-batches-py"
    hint = (f"data.root {deep} looks like the extracted cifar-10-batches-py folder itself: data.root is the folder "
            f"that holds it; did you mean data.root={cifar10_root}?")
    code, _, err = config_cli(capsys, *tiny_run_overrides(deep, tmp_path / "out"))
    assert code == 2 and err.rstrip().endswith(hint)
    with pytest.raises(DataError) as info:  # training says the same, and downloads nothing
        build_splits(load_config(None, tiny_run_overrides(deep, tmp_path / "out")))
    assert str(info.value).endswith(hint)
    assert not (deep / "cifar-10-batches-py").exists() and not (deep / "cifar-10-python.tar.gz").exists()


# ------------------------------------------------------------------ a variant's folder; fcc config > file


def test_a_variant_of_a_shipped_config_gets_its_own_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`base:` brings a shipped config's settings, not its run directory (issue 23): the default folder comes
    from the file the user named; an `out:` in that file still wins."""
    from fcc_lt.config.recipes import shipped_configs

    monkeypatch.chdir(tmp_path)
    shipped = shipped_configs()["cifar10_lt/ce_if100"]
    assert load_config(shipped).out == "runs/cifar10_lt/ce_if100"  # the shipped config names its folder
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"base: {shipped}\ntrain: {{lr: 0.05}}\n")
    assert load_config(mine).out == "runs/mine"
    middle = tmp_path / "middle.yaml"  # a base of the user's own that names a folder: still a base
    middle.write_text(f"base: {shipped}\nout: runs/middle\n")
    mine.write_text("base: middle.yaml\n")
    assert load_config(mine).out == "runs/mine"
    mine.write_text(f"base: {shipped}\nout: runs/elsewhere\n")
    assert load_config(mine).out == "runs/elsewhere"
    assert load_config(mine, ["out=runs/override"]).out == "runs/override"
    mine.write_text(f"base: {shipped}\n")
    code, out, _ = config_cli(capsys, str(mine))
    assert code == 0
    assert "# out: runs/mine  " in out and "# default: runs/<config file name>" in out


@pytest.mark.parametrize("args", [
    ["cifar10_lt/bsce_drw_fcc_if100", "train.epochs=30", "seed=3"],  # rescaled schedule, a part's params
    ["cifar10_lt/ldam_drw_if100", "loss.params.scale=20", "model.head_params={scale: 1.0}"],
    [],
])
def test_fcc_config_output_loads_back_as_the_same_config(args: list[str], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`fcc config X > mine.yaml` then `fcc train mine.yaml`: the same run, in runs/mine (issue 23)."""
    monkeypatch.chdir(tmp_path)
    code, out, _ = config_cli(capsys, *args)
    assert code == 0
    mine = tmp_path / "mine.yaml"
    mine.write_text(out)
    config, overrides = (args[0], args[1:]) if args else (None, [])
    expected = load_config(config, overrides).to_dict()
    loaded = load_config(mine).to_dict()
    assert loaded.pop("out") == "runs/mine" and expected.pop("out") != "runs/mine"
    assert loaded == expected
    assert "# override" in out or not overrides  # provenance stays, as comments
    code, again, _ = config_cli(capsys, str(mine))  # and its own provenance: every value from mine.yaml
    assert code == 0 and "# default" not in "".join(line for line in again.splitlines() if not line.startswith("#"))


# ----------------------------------------------------------------------------------- near-miss help


@pytest.mark.parametrize("overrides, message", [
    (["loss.name=CE"], "loss.name: unknown loss 'CE'; did you mean 'ce'?"),
    (["loss.name=Balanced_Softmax"], "did you mean 'balanced_softmax'?"),
    (["device=CPU"], "device: expected auto, cpu, cuda or cuda:N, got 'CPU'; did you mean 'cpu'?"),
    (["device=CUDA:1"], "did you mean 'cuda:1'?"),
    (["train.optimizer=SGD"], "did you mean 'sgd'?"),
    (["Train.epochs=3"], "unknown key 'Train.epochs'; did you mean 'train.epochs'?"),
    (["model.backbone=resnet33"], "model.backbone: unknown backbone 'resnet33'; did you mean 'resnet32'?"),
    (["model.backbone=ResNet32"], "model.backbone: unknown backbone 'ResNet32'; did you mean 'resnet32'?"),
    (["model.head=Cosine"], "model.head: unknown head 'Cosine'; did you mean 'cosine'?"),
])
def test_case_and_near_misses_get_did_you_mean(overrides: list[str], message: str) -> None:
    """Issue 23: a different case was no match at all ('CE' got no suggestion), and an unknown backbone was
    blamed on model.backbone_params."""
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert message in str(err.value)


def test_ldam_on_a_linear_head_warns() -> None:
    with pytest.warns(ConfigWarning, match=r"loss.name: ldam with model.head 'linear': LDAM is meant for the cosine "
                                           r"head \(model.head: cosine"):
        load_config(None, ["loss.name=ldam"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        load_config(None, ["loss.name=ldam", "model.head=cosine"])  # as the shipped ldam configs: no warning
        load_config("cifar10_lt/ldam_drw_if100")
