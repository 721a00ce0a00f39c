"""The shipped recipes are package data found by name from any folder: `fcc train cifar10_lt/ce_fcc_if100`,
`fcc configs`, `fcc sweep cifar10_lt_ce_vs_fcc`; a path the user has always wins over a name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fcc_lt.cli.main import main
from fcc_lt.config.load import load_config
from fcc_lt.config.recipes import RECIPES, resolve_config, resolve_sweep
from fcc_lt.util.errors import ConfigError

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "fcc_lt"


def walk_recipes() -> dict[str, str]:
    """name -> first comment line of every shipped config, found with os.walk (not the module under test)."""
    found = {}
    for folder, _dirs, files in os.walk(PACKAGE / "configs"):
        rel = Path(folder).relative_to(PACKAGE / "configs")
        if rel.parts[:1] == ("sweeps",):
            continue
        for name in files:
            if name.endswith(".yaml") and not name.startswith("_"):
                first = (Path(folder) / name).read_text().splitlines()[0]
                found[(rel / name).as_posix()[: -len(".yaml")]] = first.lstrip("# ").strip()
    return found


def test_recipes_live_in_the_package() -> None:
    assert RECIPES == PACKAGE / "configs"
    assert not (PACKAGE.parents[1] / "configs").exists(), "the recipes moved into src/fcc_lt/configs"
    assert len(walk_recipes()) > 300


@pytest.mark.parametrize("name", ["cifar10_lt/ce_fcc_if100", "cifar10_lt/ce_fcc_if100.yaml"])
def test_a_name_resolves_from_any_folder(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_config(name) == PACKAGE / "configs" / "cifar10_lt" / "ce_fcc_if100.yaml"
    cfg = load_config(name)
    assert (cfg.fcc.enabled, cfg.fcc.gamma, cfg.data.imbalance_factor) == (True, 0.5, 100)
    assert cfg.out == "runs/cifar10_lt/ce_fcc_if100"  # the shipped config's own out


def test_a_path_wins_over_a_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "cifar10_lt" / "ce_fcc_if100.yaml"
    mine.parent.mkdir()
    mine.write_text("fcc:\n  enabled: true\n  gamma: 0.25\n")
    for text in ("cifar10_lt/ce_fcc_if100.yaml",):
        assert resolve_config(text) == Path(text)
        assert load_config(text).fcc.gamma == 0.25
    # without .yaml the user's file is not that path, so the name means the shipped config
    assert load_config("cifar10_lt/ce_fcc_if100").fcc.gamma == 0.5


@pytest.mark.parametrize(("text", "hint"), [
    ("cifar10_lt/ce_fcc_if10", "did you mean 'cifar10_lt/ce_fcc_if100'?"),
    ("cifar10/ce_fcc_if100", "did you mean 'cifar10_lt/ce_fcc_if100'?"),
    ("configs/cifar10_lt/ce_fcc_if100.yaml", "did you mean 'cifar10_lt/ce_fcc_if100'?"),  # the 0.1.0 README's path
    ("../configs/cifar10_lt/ce_if100", "fcc configs"),  # never outside the recipes
    ("sweeps/cifar10_lt_ce_vs_fcc", "fcc configs"),  # a sweep spec is not a config
    ("/nowhere/x.yaml", "config file not found"),
])
def test_an_unknown_name_suggests_the_nearest(text: str, hint: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="config file not found, nor a shipped config") as info:
        load_config(text)
    assert hint in str(info.value)


def test_the_cli_takes_names_and_says_did_you_mean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["config", "cifar10_lt/bsce_drw_fcc_if100", "train.epochs=30"]) == 0
    assert "\nloss:\n  name: balanced_softmax  " in capsys.readouterr().out  # fcc config prints nested YAML
    assert main(["train", "cifar10_lt/ce_fcc_if10", "--smoke"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "did you mean 'cifar10_lt/ce_fcc_if100'?" in err
    assert not (tmp_path / "runs").exists()


def test_fcc_configs_lists_every_shipped_config_by_name_from_anywhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = walk_recipes()
    listed = {line.split()[0]: line.split(maxsplit=1)[1] if len(line.split()) > 1 else "" for line in lines}
    assert list(listed) == sorted(expected)
    assert listed == expected
    assert listed["cifar10_lt/ce_fcc_if100"] == "Cross-entropy baseline + FCC, CIFAR-10-LT IF 100."
    for name in list(listed)[:: len(listed) // 7]:  # every listed name is what `fcc train NAME` takes
        assert load_config(name).out


def test_fcc_configs_sweeps_and_fcc_sweep_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["configs", "--sweeps"]) == 0
    assert capsys.readouterr().out.split()[0] == "cifar10_lt_ce_vs_fcc"
    assert resolve_sweep("cifar10_lt_ce_vs_fcc.yaml") == PACKAGE / "configs" / "sweeps" / "cifar10_lt_ce_vs_fcc.yaml"
    assert main(["sweep", "cifar10_lt_ce_vs_fcc", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "8 run(s)" in out and "ce_fcc_if100__seed3" in out
    assert "(cifar10_lt_ce_vs_fcc): 8 run(s)" in out and "/configs/" not in out  # named, not a package path
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pt"))
    assert main(["sweep", "cifar10_lt_ce_vs_fc", "--dry-run"]) == 2
    assert "did you mean 'cifar10_lt_ce_vs_fcc'?" in capsys.readouterr().err


@pytest.mark.parametrize("overrides", [[], ["train.epochs=30", "fcc.gamma=0.25", "loss.params.drw_start_epoch=7"]])
def test_a_shipped_recipe_copied_with_fcc_config_loads_back(overrides: list[str], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`fcc config NAME [overrides] > mine.yaml` is a self-contained copy a user can edit: no base: left,
    the same config as NAME with those overrides (the rescaled schedule included), and a run directory of
    its own instead of the recipe's."""
    monkeypatch.chdir(tmp_path)
    assert main(["config", "cifar10_lt/bsce_drw_fcc_if100", *overrides]) == 0
    mine = tmp_path / "mine.yaml"
    mine.write_text(capsys.readouterr().out)
    assert "base:" not in mine.read_text() and "\nout:" not in mine.read_text()
    copy, original = load_config(mine), load_config("cifar10_lt/bsce_drw_fcc_if100", overrides)
    assert copy.out == "runs/mine" and original.out == "runs/cifar10_lt/bsce_drw_fcc_if100"
    copy.out = original.out
    assert copy.to_dict() == original.to_dict()
    if overrides:
        assert (copy.train.milestones, copy.fcc.gamma, copy.loss.params["drw_start_epoch"]) == ([25, 28], 0.25, 7)


def test_messages_name_a_shipped_config_by_its_recipe_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """The rescaling note of a shipped recipe names cifar10_lt/ce_fcc_if100, not a path inside site-packages; a
    user's file is named by its path."""
    import logging

    from fcc_lt.config.load import load_config

    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="fcc"):
        load_config("cifar10_lt/ce_fcc_if100", ["train.epochs=20"])
    assert "200-epoch schedule of cifar10_lt/ce_fcc_if100; rescaled" in caplog.text
    assert "site-packages" not in caplog.text and "/configs/" not in caplog.text
    own = tmp_path / "mine.yaml"
    own.write_text("base: cifar10_lt/ce_fcc_if100\n", encoding="utf-8")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fcc"):
        load_config(str(own), ["train.epochs=20"])
    assert f"schedule of {own}; rescaled" in caplog.text


def test_zero_epochs_is_refused_before_any_note_about_rescaling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    import logging

    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="fcc"), pytest.raises(ConfigError, match=r"train\.epochs: expected an"):
        load_config("cifar10_lt/ce_fcc_if100", ["train.epochs=0"])
    assert "rescaled" not in caplog.text and "too short" not in caplog.text
