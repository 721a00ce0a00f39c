"""`fcc config`: what it says valid can start (the files a config names are there), what it did not check it
says in its last line (issue 18), and a data.root one folder too deep gets its parent suggested (issue 23)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import tiny_run_overrides
from fcc_lt.cli.main import main
from fcc_lt.config.load import load_config
from fcc_lt.data.build import build_splits
from fcc_lt.util.errors import DataError


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
