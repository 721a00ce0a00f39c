"""The `fcc` command end to end on tiny data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import subprocess_env, tiny_run_overrides
from fcc_lt.cli.main import main

REPO = Path(__file__).resolve().parents[2]


def test_train_eval_report(cifar10_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    config = "cifar10_lt/ce_fcc_if100"
    # the shipped 200-epoch config, shortened to 2 epochs: its schedule is rescaled
    assert main(["train", config, *tiny_run_overrides(cifar10_root, out), "--overwrite"]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert {"top1", "top5", "many", "medium", "few", "per_class"} <= set(result)
    assert result["epoch"] == 2 and len(result["per_class"]) == 10
    saved = yaml.safe_load((out / "config.yaml").read_text())
    # fcc.start_epoch 51 of 200 -> 1 + round(50 * 2 / 200) = 2; the explicit milestones stay as given
    assert saved["fcc"] == {**saved["fcc"], "enabled": True, "start_epoch": 2, "gamma": 0.5}
    assert saved["train"]["schedule_epochs"] == 2 and saved["train"]["milestones"] == [2]
    # evaluating again gives the same numbers, in a file of fcc eval's own
    assert main(["eval", str(out)]) == 0
    again = json.loads((out / "eval_last_test.json").read_text())
    assert again["top1"] == result["top1"] and again["per_class"] == result["per_class"]
    assert main(["eval", str(out), "--features"]) == 0
    features = json.loads((out / "features.json").read_text())
    assert features["split"] == "test" and len(features["per_class"]["spread"]) == 10
    assert 0 < features["compactness"] < 100
    assert main(["report", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| run | method |" in table and "FCC(gamma 0.5" in table
    # resuming a finished run only re-evaluates
    assert main(["train", "--resume", str(out)]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_user_errors_exit_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "train.epoch=3"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'train.epochs'" in err and "Traceback" not in err
    assert main(["eval", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_data_cifar_lt_prints_counts() -> None:
    proc = subprocess.run([sys.executable, "-m", "fcc_lt", "data", "cifar-lt", "--dataset", "cifar100",
                           "--imbalance", "100"], capture_output=True, text=True, check=True, env=subprocess_env())
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "total\t10847"
    assert lines[2] == "0\t500" and lines[-2] == "99\t5"


def test_report_describes_the_method() -> None:
    from fcc_lt.experiments.report import describe_method

    cfg = {"loss": {"name": "balanced_softmax", "params": {"drw_start_epoch": 25}},
           "sampler": {"name": "class_balanced", "params": {"drs_start_epoch": 25}},
           "mix": {"name": "remix", "params": {}}, "fcc": {"enabled": True, "gamma": 0.5, "start_epoch": 9}}
    assert describe_method(cfg) == ("balanced_softmax (DRW from epoch 25) + class_balanced sampler (DRS from epoch 25)"
                                    " + remix + FCC(gamma 0.5, from epoch 9)")
    assert describe_method({"loss": {"name": "ce"}, "sampler": {"name": "instance"}}) == "ce"
