"""`fcc report` on fabricated run directories: groups, paired FCC differences with t-intervals, the
columns that tell runs apart, unfinished runs, output formats and argument errors, checked by hand."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

import pytest

from fcc_lt.cli.main import main
from fcc_lt.experiments.report import build_report, report_data, table
from fcc_lt.util.errors import ConfigError
from run_fixtures import features_json, make_run

T_975 = {1: 12.706205, 2: 4.302653, 3: 3.182446}  # printed t tables, two-sided 95%


def seed_runs(root: Path) -> Path:
    """ce and ce+FCC on seeds 0, 1, 2 (3 classes: many, medium, few)."""
    for seed, top1, pc in ((0, 70.0, (90.0, 60.0, 30.0)), (1, 72.0, (91.0, 61.0, 32.0)), (2, 74.0, (92.0, 62.0, 34.0))):
        make_run(root / f"ce_s{seed}", seed=seed, top1=top1, per_class=pc)
    for seed, top1, pc in ((0, 71.0, (89.0, 62.0, 35.0)), (1, 74.0, (91.0, 64.0, 36.0)), (2, 77.0, (92.0, 63.0, 40.0))):
        make_run(root / f"ce_fcc_s{seed}", seed=seed, fcc=True, top1=top1, per_class=pc)
    return root


def test_groups_and_paired_differences_by_hand(tmp_path: Path) -> None:
    data = report_data(build_report([seed_runs(tmp_path)]))
    base, with_fcc = data["groups"]
    assert base["columns"]["fcc"] == "-" and with_fcc["columns"]["fcc"].startswith("FCC(gamma 0.5")
    assert base["n"] == 3 and base["seeds"] == [0, 1, 2]
    # top1 70, 72, 74: mean 72, sd sqrt((4 + 0 + 4) / 2) = 2, 95% CI 72 +- 4.302653 * 2 / sqrt(3)
    top1 = base["metrics"]["top1"]
    assert (top1["mean"], top1["sd"]) == (pytest.approx(72.0), pytest.approx(2.0))
    assert top1["ci_high"] == pytest.approx(72 + T_975[2] * 2 / math.sqrt(3), abs=1e-5)
    # few 35, 36, 40: mean 37, sd sqrt((4 + 1 + 9) / 2) = sqrt(7)
    assert with_fcc["metrics"]["few"]["sd"] == pytest.approx(math.sqrt(7))
    # per class: class 1 of the FCC group, 62, 64, 63 -> mean 63, sd 1
    assert with_fcc["per_class"]["mean"][1] == pytest.approx(63.0)
    assert with_fcc["per_class"]["sd"][1] == pytest.approx(1.0)
    (pair,) = data["fcc_effect"]
    assert pair["n"] == 3 and pair["seeds"] == [0, 1, 2]
    assert pair["with_groups"] == [with_fcc["id"]] and pair["without_groups"] == [base["id"]]
    # paired top1 differences 1, 2, 3: mean 2, sd 1, CI 2 +- t_{0.975,2} / sqrt(3) = [-0.484138, 4.484138]
    d = pair["metrics"]["top1"]
    assert (d["n"], d["mean"], d["sd"]) == (3, pytest.approx(2.0), pytest.approx(1.0))
    assert (d["ci_low"], d["ci_high"]) == (pytest.approx(-0.484138, abs=1e-5), pytest.approx(4.484138, abs=1e-5))
    assert (d["with_mean"], d["without_mean"]) == (pytest.approx(74.0), pytest.approx(72.0))
    # few: 35-30, 36-32, 40-34 = 5, 4, 6: mean 5, sd 1; many: -1, 0, 0: mean -1/3, sd sqrt(1/3)
    assert pair["metrics"]["few"]["mean"] == pytest.approx(5.0)
    assert pair["metrics"]["few"]["ci_low"] == pytest.approx(5 - T_975[2] / math.sqrt(3), abs=1e-5)
    assert pair["metrics"]["many"]["mean"] == pytest.approx(-1 / 3)
    assert pair["metrics"]["many"]["sd"] == pytest.approx(math.sqrt(1 / 3))


def test_markdown_shows_mean_sd_and_the_interval(tmp_path: Path) -> None:
    text = table([seed_runs(tmp_path)])
    assert "| 72.00 ± 2.00 |" in text and "| 74.00 ± 3.00 |" in text
    assert "+2.00 [-0.48, +4.48]" in text and "+5.00 [+2.52, +7.48]" in text
    assert "| run | method |" in text and "FCC(gamma 0.5, from epoch 1)" in text
    # the per-class table is in rank order with the training counts
    rows = [line for line in text.splitlines() if line.startswith("| 1 | class0 | 500 |")]
    assert rows == ["| 1 | class0 | 500 | 91.00 ± 1.00 | 90.67 ± 1.53 |"]


def test_pairs_only_over_matching_seeds(tmp_path: Path) -> None:
    for seed, top1 in ((1, 70.0), (2, 71.0), (3, 90.0)):
        make_run(tmp_path / f"base{seed}", seed=seed, top1=top1)
    for seed, top1 in ((0, 10.0), (1, 73.0), (2, 72.0)):
        make_run(tmp_path / f"fcc{seed}", seed=seed, top1=top1, fcc=True)
    (pair,) = report_data(build_report([tmp_path]))["fcc_effect"]
    assert pair["seeds"] == [1, 2]
    d = pair["metrics"]["top1"]  # differences 3 and 1: mean 2, sd sqrt(2), df 1
    assert (d["n"], d["mean"], d["sd"]) == (2, pytest.approx(2.0), pytest.approx(math.sqrt(2)))
    assert d["ci_high"] == pytest.approx(2 + T_975[1] * math.sqrt(2) / math.sqrt(2), abs=1e-5)


def test_one_pair_has_no_interval_and_no_pair_is_said(tmp_path: Path) -> None:
    make_run(tmp_path / "a", seed=0, top1=70.0)
    make_run(tmp_path / "b", seed=0, top1=72.5, fcc=True)
    text = table([tmp_path])
    assert "+2.50 (n=1)" in text
    make_run(tmp_path / "c", seed=5, top1=72.5, fcc=True, overrides={"train.lr": 0.05})
    solo = tmp_path / "solo"
    make_run(solo / "c", seed=5, top1=72.5, fcc=True)
    assert "No pairs: no finished run with FCC has a finished run without FCC" in table([solo])


def test_unfinished_and_failed_runs_are_listed_not_fatal(tmp_path: Path) -> None:
    import fcntl

    seed_runs(tmp_path / "done")
    make_run(tmp_path / "stopped", seed=3, epochs=4, done_epochs=2)
    empty = make_run(tmp_path / "empty", seed=4, done_epochs=0)
    assert not (empty / "eval.json").exists()
    broken = make_run(tmp_path / "broken", seed=5)
    (broken / "eval.json").write_text("{ not json")
    running = make_run(tmp_path / "running", seed=6, done_epochs=1)
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "config.yaml").write_text("[unclosed")
    with open(running / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = report_data(build_report([tmp_path]))
        text = table([tmp_path])
    states = {Path(r["path"]).name: r["state"] for r in data["runs"]}
    assert states == {**{f"ce_s{s}": "finished" for s in range(3)}, **{f"ce_fcc_s{s}": "finished" for s in range(3)},
                      "stopped": "stopped", "empty": "empty", "broken": "failed", "running": "running",
                      "corrupt": "missing"}
    assert [g["n"] for g in data["groups"]] == [3, 3]  # the numbers are those of the finished runs alone
    assert data["fcc_effect"][0]["metrics"]["top1"]["mean"] == pytest.approx(2.0)
    section = text.split("## Not counted")[1]
    for line in ("| stopped | stopped | stopped after epoch 2 of 4 |",
                 "| broken | failed | eval.json is not valid JSON", "| running | running |", "| empty | empty |",
                 "| corrupt | missing |"):
        assert line in section
    rows = list(csv.DictReader(io.StringIO(table([tmp_path], fmt="csv"))))
    assert {r["run"]: r["state"] for r in rows if r["section"] == "run" and r["state"] != "finished"} == {
        "stopped": "stopped", "empty": "empty", "broken": "failed", "running": "stopped", "corrupt": "missing"}


def test_runs_with_the_same_folder_name_are_told_apart(tmp_path: Path) -> None:
    make_run(tmp_path / "a" / "ce_if100", seed=0, top1=70.0)
    make_run(tmp_path / "b" / "ce_if100", seed=0, top1=60.0, overrides={"data.imbalance_factor": 50.0})
    make_run(tmp_path / "c" / "ce_if100", seed=0, top1=65.0, overrides={"train.lr": 0.05})
    make_run(tmp_path / "d" / "ce_if100", seed=0, top1=66.0, overrides={"model.backbone": "resnet56",
                                                                         "data.dataset": "cifar100"})
    data = report_data(build_report([tmp_path]))
    assert len(data["groups"]) == 4
    cols = {g["runs"][0].split("/")[-2]: (g["columns"], g["differs"]) for g in data["groups"]}
    assert cols["b"][0]["imbalance_factor"] == "50" and cols["a"][0]["imbalance_factor"] == "100"
    assert cols["d"][0]["backbone"] == "resnet56" and cols["d"][0]["dataset"] == "cifar100"
    # a and c agree on every column shown: the key that differs is named
    assert (cols["a"][1], cols["c"][1]) == ("train.lr=0.1", "train.lr=0.05")
    assert cols["b"][1] == "" and cols["d"][1] == ""
    text = table([tmp_path])
    assert "differs in" in text and "train.lr=0.05" in text
    for letter in "abcd":
        assert str(tmp_path / letter / "ce_if100") in text


def test_keys_that_do_not_change_results_do_not_split_groups(tmp_path: Path) -> None:
    make_run(tmp_path / "x0", seed=0, overrides={"device": "cpu", "data.root": "/data", "train.progress": False})
    make_run(tmp_path / "x1", seed=1, overrides={"device": "cuda", "data.root": "/other", "fcc.gamma": 2.0})
    (group,) = report_data(build_report([tmp_path]))["groups"]
    assert group["n"] == 2  # fcc.gamma is irrelevant with FCC off


def test_keys_without_effect_in_a_config_do_not_split_groups(tmp_path: Path) -> None:
    """Under a cosine schedule the milestones and lr_factor do nothing, with Adam the momentum does nothing:
    runs differing only there are one group (as a sweep trains them once)."""
    for seed, (milestones, factor, momentum) in enumerate((([100], 0.1, 0.9), ([150], 0.01, 0.5))):
        make_run(tmp_path / f"cos{seed}", seed=seed, overrides={
            "train.scheduler": "cosine", "train.milestones": milestones, "train.lr_factor": factor,
            "train.optimizer": "adam", "train.momentum": momentum})
    make_run(tmp_path / "cos_min_lr", seed=2, overrides={"train.scheduler": "cosine", "train.min_lr": 0.01,
                                                          "train.optimizer": "adam"})
    data = report_data(build_report([tmp_path]))
    assert sorted(g["n"] for g in data["groups"]) == [1, 2]  # min_lr does act under cosine


def test_duplicates_are_counted_once(tmp_path: Path) -> None:
    make_run(tmp_path / "one", seed=0, top1=70.0)
    make_run(tmp_path / "two", seed=0, top1=70.0)
    make_run(tmp_path / "three", seed=1, top1=74.0)
    data = report_data(build_report([tmp_path / "one", tmp_path / "two", tmp_path / "three", tmp_path / "one"]))
    (group,) = data["groups"]
    assert group["n"] == 2 and group["metrics"]["top1"]["mean"] == pytest.approx(72.0)
    dup = [r for r in data["runs"] if r["duplicate_of"]]
    assert [Path(r["path"]).name for r in dup] == ["two"] and len(data["runs"]) == 3  # "one" named twice: once
    assert "same config and seed as" in table([tmp_path])


def test_stage_two_runs_group_by_their_stage_one_config(tmp_path: Path) -> None:
    for seed in (0, 1):
        make_run(tmp_path / f"ce_s{seed}", seed=seed)
        make_run(tmp_path / f"ce_fcc_s{seed}", seed=seed, fcc=True)
        for fcc in (False, True):
            stage1 = tmp_path / (f"ce_fcc_s{seed}" if fcc else f"ce_s{seed}")
            make_run(tmp_path / f"crt{'_fcc' if fcc else ''}_s{seed}", seed=seed, fcc=fcc, top1=70.0 + 3 * fcc + seed,
                     overrides={"model.init_from": str(stage1 / "checkpoints" / "last.pt"),
                                "sampler.name": "class_balanced"})
    data = report_data(build_report([tmp_path]))
    crt = [g for g in data["groups"] if "init:" in g["columns"]["method"]]
    assert sorted(g["n"] for g in crt) == [2, 2]  # each seed starts from its own stage-1 run, yet one group
    assert {g["columns"]["method"] for g in crt} == {"ce + class_balanced sampler [init: ce]",
                                                     "ce + class_balanced sampler [init: ce + FCC(gamma 0.5, from "
                                                     "epoch 1)]"}
    pairs = {p["columns"]["method"]: p for p in data["fcc_effect"]}
    assert len(pairs) == 2  # ce + FCC vs ce, and the two-stage pipeline with FCC vs without
    crt_pair = next(p for m, p in pairs.items() if "init:" in m)
    assert crt_pair["n"] == 2 and crt_pair["metrics"]["top1"]["mean"] == pytest.approx(3.0)


def test_feature_cluster_statistics_are_reported(tmp_path: Path) -> None:
    counts = (500, 50, 5)
    for seed, (a, b) in enumerate(((0.8, 0.6), (0.9, 0.5))):
        make_run(tmp_path / f"ce{seed}", seed=seed, features=features_json([a, 1.0, 1.2], [5.0, 4.0, 3.0], counts))
        make_run(tmp_path / f"fcc{seed}", seed=seed, fcc=True,
                 features=features_json([b, 0.7, 0.9], [4.0, 3.5, 3.0], counts))
    data = report_data(build_report([tmp_path]))
    base = data["groups"][0]["metrics"]["spread_ratio"]
    # seed means (0.8 + 1 + 1.2) / 3 = 1.0 and (0.9 + 1 + 1.2) / 3 = 31/30
    assert base["mean"] == pytest.approx((1.0 + 31 / 30) / 2)
    d = data["fcc_effect"][0]["metrics"]["spread_ratio"]
    # per seed: (0.6 + 0.7 + 0.9) / 3 - 1.0 = -4/15 and (0.5 + 0.7 + 0.9) / 3 - 31/30 = -1/3
    assert d["n"] == 2 and d["mean"] == pytest.approx((-4 / 15 - 1 / 3) / 2)
    many = data["fcc_effect"][0]["metrics"]["spread_ratio_many"]
    assert many["mean"] == pytest.approx(((0.6 - 0.8) + (0.5 - 0.9)) / 2)
    text = table([tmp_path])
    assert "## Feature clusters" in text and "| 1.017 ± 0.024 |" in text
    rows = list(csv.DictReader(io.StringIO(table([tmp_path], fmt="csv"))))
    ratio = next(r for r in rows if r["section"] == "group" and r["metric"] == "spread_ratio")
    assert (ratio["mean"], ratio["sd"]) == ("1.017", "0.02357")  # four significant digits, as the table


def test_group_by_pools_and_validates(tmp_path: Path) -> None:
    seed_runs(tmp_path)
    make_run(tmp_path / "focal_s0", seed=0, top1=60.0, overrides={"loss.name": "focal"})
    data = report_data(build_report([tmp_path], group_by="fcc"))
    assert [g["n"] for g in data["groups"]] == [4, 3]  # ce and focal pooled without FCC
    assert data["groups"][0]["metrics"]["top1"]["mean"] == pytest.approx((70 + 72 + 74 + 60) / 4)
    (pair,) = data["fcc_effect"]  # pairs stay strict: focal has no FCC partner
    assert pair["n"] == 3
    data = report_data(build_report([tmp_path], group_by="method,train.lr"))
    assert sorted(g["n"] for g in data["groups"]) == [1, 6]
    text = table([tmp_path], group_by="loss.name")
    assert "| group | loss.name | n | seeds |" in text
    with pytest.raises(ConfigError, match=r"unknown key 'lr'; did you mean 'train\.lr'"):
        build_report([tmp_path], group_by="lr")
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        build_report([tmp_path], group_by="dataset,epoch")
    with pytest.raises(ConfigError, match="expected comma-separated keys"):
        build_report([tmp_path], group_by=" , ")


def test_csv_and_json_formats(tmp_path: Path) -> None:
    seed_runs(tmp_path)
    rows = list(csv.DictReader(io.StringIO(table([tmp_path], fmt="csv"))))
    top1 = [r for r in rows if r["section"] == "group" and r["metric"] == "top1"]
    assert [float(r["mean"]) for r in top1] == pytest.approx([72.0, 74.0])
    assert top1[0]["method"] == "ce" and top1[0]["seeds"] == "0,1,2" and top1[0]["imbalance_factor"] == "100"
    effect = next(r for r in rows if r["section"] == "fcc_effect" and r["metric"] == "top1")
    # numbers rounded as the markdown shows them (+2.00 [-0.48, +4.48]); the JSON keeps them unrounded
    assert (effect["mean"], effect["sd"], effect["ci_low"], effect["ci_high"], effect["n"]) == (
        "2.00", "1.00", "-0.48", "4.48", "3")
    assert [r["mean"] for r in top1] == ["72.00", "74.00"] and top1[0]["sd"] == "2.00"
    per_class = [r for r in rows if r["metric"] == "per_class" and r["group"] == "G1"]
    assert [(r["class_name"], r["train_count"], r["mean"]) for r in per_class] == [
        ("class0", "500", "91.00"), ("class1", "50", "61.00"), ("class2", "5", "32.00")]
    runs = [r for r in rows if r["section"] == "run" and r["metric"] == "top1"]
    assert len(runs) == 6 and {r["state"] for r in runs} == {"finished"}
    data = json.loads(table([tmp_path], fmt="json"))
    assert data["format"] == "fcc-report/1" and data["level"] == 0.95 and len(data["runs"]) == 6
    assert table([tmp_path], fmt="markdown") == table([tmp_path], fmt="md")
    with pytest.raises(ConfigError, match="--format"):
        table([tmp_path], fmt="html")


def test_names_with_commas_and_pipes_survive(tmp_path: Path) -> None:
    make_run(tmp_path / "r", seed=0, class_names=["a,b", "c|d", 'e"f'])
    rows = list(csv.DictReader(io.StringIO(table([tmp_path], fmt="csv"))))
    assert [r["class_name"] for r in rows if r["metric"] == "per_class"] == ["a,b", "c|d", 'e"f']
    assert "| c\\|d |" in table([tmp_path])


def test_eval_file_option(tmp_path: Path) -> None:
    run = make_run(tmp_path / "r", seed=0, top1=70.0)
    alt = json.loads((run / "eval.json").read_text())
    (run / "eval_best_val.json").write_text(json.dumps({**alt, "top1": 55.5}))
    assert "| 55.50 |" in table([run], eval_file="eval_best_val.json")
    text = table([run], eval_file="eval_missing.json")
    assert "| r | failed | no eval_missing.json |" in text


@pytest.mark.parametrize("case", ["none", "file", "missing", "empty"])
def test_bad_arguments_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    run = make_run(tmp_path / "r", seed=0)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "sub").mkdir()
    args = {"none": [], "file": [str(run / "eval.json")], "missing": [str(tmp_path / "nope")],
            "empty": [str(run), str(tmp_path / "empty")]}[case]
    assert main(["report", *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    expected = {"none": "name one or more run directories", "file": "not a directory",
                "missing": "no such directory", "empty": "no run directories in it"}[case]
    assert expected in err
    assert main(["report", str(run), "--group-by", "nonsense"]) == 2
    assert "--group-by: unknown key 'nonsense'" in capsys.readouterr().err


def test_cli_report_formats_and_out_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed_runs(tmp_path / "runs")
    assert main(["report", str(tmp_path / "runs"), "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["groups"]) == 2
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "runs"), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith("# fcc report") and "wrote" in printed.err and "glyph" not in printed.err
    assert (out / "report.md").read_text() == printed.out
    assert json.loads((out / "report.json").read_text())["fcc_effect"][0]["n"] == 3
    assert (out / "report.csv").read_text().startswith("section,group,run,path")
    assert (out / "per_class_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "per_class_accuracy.pdf").read_bytes()[:5] == b"%PDF-"


# ------------------------------------------------------------------- two-stage pairing, speed keys (issue 21)


def crt(path: Path, stage1: Path, seed: int, top1: float, fcc: bool = False) -> Path:
    """A second stage (cRT: class-balanced sampler) on the backbone of ``stage1``."""
    return make_run(path, seed=seed, fcc=fcc, top1=top1, overrides={
        "model.init_from": str(stage1 / "checkpoints" / "last.pt"), "sampler.name": "class_balanced"})


def pair_rows(root: Path) -> dict[str, dict]:
    return {p["columns"]["fcc"]: p for p in report_data(build_report([root]))["fcc_effect"]}


@pytest.mark.parametrize("baseline_name", ["a_crt", "z_crt"])
def test_a_second_stage_pairs_with_the_run_without_fcc_anywhere_whatever_the_names(tmp_path: Path,
                                                                                  baseline_name: str) -> None:
    """cRT + FCC (FCC in stage 2) against cRT: the partner is the cRT run whose stage 1 has no FCC either,
    never the cRT run on an FCC backbone, whichever folder name sorts first (+1.0 here, not -14.0); the run on
    an FCC backbone is with FCC, in a row of its own (+15.0)."""
    s1_ce, s1_fcc = make_run(tmp_path / "s1_ce", seed=0), make_run(tmp_path / "s1_fcc", seed=0, fcc=True)
    crt(tmp_path / baseline_name, s1_ce, 0, 70.0)
    crt(tmp_path / "m_crt_on_fcc_backbone", s1_fcc, 0, 85.0)
    crt(tmp_path / "m_crt_fcc", s1_ce, 0, 71.0, fcc=True)
    rows = pair_rows(tmp_path)
    stage2 = rows["FCC(gamma 0.5, from epoch 1)"]
    assert stage2["columns"]["method"] == "ce + class_balanced sampler [init: ce]"
    assert stage2["pairs"] == [{"seed": 0, "with": str(tmp_path / "m_crt_fcc"),
                                "without": str(tmp_path / baseline_name)}]
    assert stage2["metrics"]["top1"]["mean"] == pytest.approx(1.0)
    stage1 = rows["- [init: FCC(gamma 0.5, from epoch 1)]"]
    assert stage1["metrics"]["top1"]["mean"] == pytest.approx(15.0) and stage1["n"] == 1


def test_fcc_in_both_stages_and_in_stage_two_only_are_separate_rows(tmp_path: Path) -> None:
    s1_ce, s1_fcc = make_run(tmp_path / "s1_ce", seed=0), make_run(tmp_path / "s1_fcc", seed=0, fcc=True)
    crt(tmp_path / "crt", s1_ce, 0, 70.0)
    crt(tmp_path / "crt_fcc_both", s1_fcc, 0, 74.0, fcc=True)
    crt(tmp_path / "crt_fcc_stage2", s1_ce, 0, 71.0, fcc=True)
    rows = pair_rows(tmp_path)
    both = rows["FCC(gamma 0.5, from epoch 1) [init: FCC(gamma 0.5, from epoch 1)]"]
    only2 = rows["FCC(gamma 0.5, from epoch 1)"]
    assert (both["n"], both["seeds"], both["metrics"]["top1"]["mean"]) == (1, [0], pytest.approx(4.0))
    assert (only2["n"], only2["seeds"], only2["metrics"]["top1"]["mean"]) == (1, [0], pytest.approx(1.0))
    assert "FCC(gamma 0.5, from epoch 1) [init: FCC(gamma 0.5, from epoch 1)]" in table([tmp_path])


def test_a_second_stage_pairs_only_with_the_same_stage_one_seed(tmp_path: Path) -> None:
    stage1 = {s: make_run(tmp_path / f"s1_ce_{s}", seed=s) for s in (0, 1)}
    crt(tmp_path / "crt_seed0_from1", stage1[1], 0, 70.0)
    crt(tmp_path / "crt_fcc_seed0_from0", stage1[0], 0, 73.0, fcc=True)
    data = report_data(build_report([tmp_path]))
    assert data["fcc_effect"] == []
    assert data["unpaired"] == [{"run": str(tmp_path / "crt_fcc_seed0_from0"),
                                 "reason": "no finished run without FCC of the same config and seeds"}]
    assert "Runs with FCC not paired (1):" in table([tmp_path])
    # cRT runs of seed 0 (from stage-1 seed 1) and seed 1 (from stage-1 seed 0) still form one group over seeds
    crt(tmp_path / "crt_seed1_from0", stage1[0], 1, 72.0)
    groups = [g for g in report_data(build_report([tmp_path]))["groups"]
              if "init: ce]" in g["columns"]["method"] and g["columns"]["fcc"] == "-"]
    assert [(g["n"], g["seeds"]) for g in groups] == [(2, [0, 1])]


def test_runs_differing_only_in_speed_settings_group_together(tmp_path: Path) -> None:
    make_run(tmp_path / "eager", seed=0, top1=70.0, overrides={"train.compile": "off", "train.amp": "off"})
    make_run(tmp_path / "compiled", seed=1, top1=71.0, overrides={"train.compile": "on", "train.channels_last": True,
                                                                   "train.compile_mode": "max-autotune"})
    make_run(tmp_path / "bf16", seed=2, top1=72.0, overrides={"train.amp": "bf16", "train.channels_last": False})
    (group,) = report_data(build_report([tmp_path]))["groups"]
    assert group["n"] == 3 and group["metrics"]["top1"]["mean"] == pytest.approx(71.0)


# ---------------------------------------------------------------------- short and capped runs (issue 21)


SHORT_LOG = ("/src/fcc_lt/config/load.py:200: ScheduleWarning: train.epochs=20 is too short for this 200-epoch "
             "schedule: fcc.start_epoch 170 -> 18: in the 200-epoch schedule it acts ... before the first LR drop; now "
             "only after it (epoch 17). Results will not mean what the config means; ...\n")


def short_runs(root: Path) -> Path:
    """ce and ce + FCC over seeds 0 and 1, plus a capped, a collapsed-schedule and a logged-short run."""
    for seed in (0, 1):
        make_run(root / f"ce_s{seed}", seed=seed, top1=70.0 + seed)
        make_run(root / f"fcc_s{seed}", seed=seed, fcc=True, top1=72.0 + seed)
    make_run(root / "capped", seed=2, top1=10.0, overrides={"train.max_steps_per_epoch": 2})
    make_run(root / "collapsed", seed=2, fcc=True, top1=90.0, overrides={"train.milestones": [4, 4]})
    logged = make_run(root / "logged", seed=3, top1=11.0)
    (logged / "train.log").write_text("===== fcc sweep: fcc train x.yaml\n" + SHORT_LOG + "epoch 1/4 ...\n")
    return root


def test_short_and_capped_runs_are_left_out_of_the_intervals_and_said_so(tmp_path: Path) -> None:
    root = short_runs(tmp_path)
    data = report_data(build_report([root]))
    runs = {r["run"]: r for r in data["runs"]}
    assert {n: runs[n]["state"] for n in ("capped", "collapsed", "logged")} == dict.fromkeys(
        ("capped", "collapsed", "logged"), "short")
    assert runs["capped"]["caveats"] == ["capped at 2 step(s) per epoch (train.max_steps_per_epoch)"]
    assert runs["collapsed"]["caveats"] == ["several LR drops fall on one epoch (train.milestones [4, 4])"]
    assert runs["logged"]["caveats"][0].startswith("train.epochs=20 is too short for this 200-epoch schedule")
    # the groups and the paired difference are those of the four full runs alone: 70.5, 72.5 and +2
    assert [g["metrics"]["top1"]["mean"] for g in data["groups"]] == [pytest.approx(70.5), pytest.approx(72.5)]
    assert data["fcc_effect"][0]["n"] == 2 and data["fcc_effect"][0]["metrics"]["top1"]["mean"] == pytest.approx(2.0)
    text = table([root])
    assert "3 run(s) whose schedule cannot mean what its config means" in text
    assert re.search(r"^\| capped \| short \| capped at 2 step\(s\) per epoch", text, flags=re.MULTILINE)


def test_include_short_counts_them_marked_in_every_table(tmp_path: Path) -> None:
    root = short_runs(tmp_path)
    data = report_data(build_report([root], include_short=True))
    groups = {(g["n"], g["columns"]["fcc"] != "-", bool(g["caveats"])): g for g in data["groups"]}
    # the logged-short run has ce's config: it joins ce's group (mean of 70, 71, 11), which is marked; the
    # capped and collapsed runs have configs of their own (one-run groups, marked); FCC's group is clean
    assert sorted(groups) == [(1, False, True), (1, True, True), (2, True, False), (3, False, True)]
    ce = groups[(3, False, True)]
    assert ce["metrics"]["top1"]["mean"] == pytest.approx((70 + 71 + 11) / 3) and len(ce["caveats"]) == 1
    text = table([root], include_short=True)
    assert text.count("† |") >= 3 + 3 and "| capped† |" in text and "| logged† |" in text
    assert "† counts 3 run(s) whose schedule cannot mean what its config means" in text
    rows = list(csv.DictReader(io.StringIO(table([root], fmt="csv", include_short=True))))
    assert next(r for r in rows if r["run"] == "capped")["caveats"].startswith("capped at 2 step(s)")
    group_row = next(r for r in rows if r["section"] == "group" and r["group"] == ce["id"])
    assert group_row["caveats"].startswith("logged: train.epochs=20 is too short")
