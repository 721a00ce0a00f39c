"""Run folders are untrusted input: every file `fcc report`, `fcc plot` and `fcc sweep` read is checked
against its schema, and a run whose file fails is listed with the file and field instead of stopping the
command (or a traceback). Each broken case here made one of them fail with a traceback before the one
reader existed; the property tests feed each reader random and wrong-typed JSON / YAML."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fcc_lt.cli.main import main
from fcc_lt.experiments import run_folder
from fcc_lt.experiments.report import build_report, collect_run, report_data
from fcc_lt.util.errors import FccError
from run_fixtures import features_json, make_run, write_confusion, write_features_npz

SETTINGS = settings(max_examples=int(os.environ.get("FCC_HYPOTHESIS_EXAMPLES", "150")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
HUGE = 10**400  # an integer of 401 digits: beyond any float


def _edit_yaml(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        edit(cfg)
        (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return apply


def _edit_json(name: str, edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        data = json.loads((run / name).read_text()) if (run / name).exists() else {}
        out = edit(data)
        (run / name).write_text(json.dumps(data if out is None else out))
    return apply


def _metrics_line(line: str) -> Callable[[Path], None]:
    def apply(run: Path) -> None:
        with open(run / "metrics.jsonl", "a") as f:
            f.write(line + "\n")
    return apply


def _set(*keys: str, value: object) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return edit


FEATURES = features_json([0.8, 1.0, 1.2], [5.0, 4.0, 3.0], (500, 50, 5))
# (run name, what breaks it, the state it is listed with, what its detail must name)
BROKEN = [
    ("cfg_section_number", _edit_yaml(_set("train", value=5)), "missing", "config.yaml: train: expected a mapping"),
    ("cfg_section_string", _edit_yaml(_set("fcc", value="on")), "missing", "config.yaml: fcc: expected a mapping"),
    ("cfg_section_list", _edit_yaml(_set("model", value=[1, 2])), "missing", "config.yaml: model: expected a mapping"),
    ("cfg_top_list", lambda r: (r / "config.yaml").write_text("- 1\n- 2\n"), "missing", "config.yaml: top level"),
    ("cfg_seed_date", _edit_yaml(_set("seed", value=date(2020, 1, 1))), "missing", "config.yaml: seed"),
    ("cfg_seed_huge", _edit_yaml(_set("seed", value=HUGE)), "missing", "config.yaml: seed"),
    ("cfg_seed_negative", _edit_yaml(_set("seed", value=-3)), "missing", "config.yaml: seed"),
    ("cfg_epochs_string", _edit_yaml(_set("train", "epochs", value="four")), "missing", "config.yaml: train.epochs"),
    ("cfg_if_huge", _edit_yaml(_set("data", "imbalance_factor", value=HUGE)), "missing",
     "config.yaml: data.imbalance_factor"),
    ("cfg_param_date", _edit_yaml(_set("loss", "params", value={"gamma": date(2020, 1, 1)})), "missing",
     "config.yaml: loss.params.gamma"),
    ("cfg_long_path", _edit_yaml(_set("model", "init_from", value="r/" + "x" * 5000)), "missing",
     "config.yaml: model.init_from"),
    ("cfg_unknown_date", _edit_yaml(_set("train", "when", value=date(2020, 1, 1))), "missing",
     "config.yaml: train.when"),
    ("metrics_epoch_string", _metrics_line('{"epoch": "5"}'), "unreadable", "metrics.jsonl: line 5: epoch"),
    ("metrics_epoch_huge", _metrics_line(f'{{"epoch": {HUGE}}}'), "unreadable", "metrics.jsonl: line 5: epoch"),
    ("metrics_list_line", _metrics_line("[1, 2]"), "unreadable", "metrics.jsonl: line 5"),
    ("metrics_lr_huge", _metrics_line(f'{{"epoch": 4, "lr": {HUGE}}}'), "unreadable", "metrics.jsonl: line 5: lr"),
    ("eval_top1_string", _edit_json("eval.json", _set("top1", value="70")), "failed", "eval.json: top1"),
    ("eval_top1_huge", _edit_json("eval.json", _set("top1", value=HUGE)), "failed", "eval.json: top1"),
    ("eval_top1_nan", lambda r: (r / "eval.json").write_text('{"top1": NaN}'), "failed", "eval.json: top1"),
    ("eval_top1_absurd", _edit_json("eval.json", _set("top1", value=1e200)), "flagged", "eval.json: top1 is 1e+200"),
    ("eval_per_class_string", _edit_json("eval.json", _set("per_class", value="abc")), "failed",
     "eval.json: per_class"),
    ("eval_per_class_mixed", _edit_json("eval.json", _set("per_class", value=[90.0, "x", 30.0])), "failed",
     "eval.json: per_class[1]"),
    ("eval_per_class_absurd", _edit_json("eval.json", _set("per_class", value=[90.0, -5.0, 30.0])), "flagged",
     "eval.json: per_class[1] is -5"),
    ("eval_counts_null", _edit_json("eval.json", _set("train_counts", value=[None, 50, 5])), "failed",
     "eval.json: train_counts[0]"),
    ("eval_counts_string", _edit_json("eval.json", _set("train_counts", value=["many", 50, 5])), "failed",
     "eval.json: train_counts[0]"),
    ("eval_counts_short", _edit_json("eval.json", _set("train_counts", value=[500, 50])), "failed",
     "eval.json: train_counts: expected 3 entries"),
    ("eval_names_number", _edit_json("eval.json", _set("class_names", value=5)), "failed", "eval.json: class_names"),
    ("eval_list", lambda r: (r / "eval.json").write_text("[70.0]"), "failed", "eval.json: top level"),
    ("eval_smoke_string", _edit_json("eval.json", _set("smoke", value="yes")), "failed", "eval.json: smoke"),
]
# files that do not make a run fail but are named where they are used
FEATURE_CASES = [
    ("feat_ratio_string", _edit_json("features.json", lambda d: {**FEATURES, "mean_spread_ratio": "x"}),
     "features.json: mean_spread_ratio"),
    ("feat_nan", lambda r: (r / "features.json").write_text(json.dumps(FEATURES).replace("1.2", "NaN")),
     "features.json: "),
    ("feat_per_class_number", _edit_json("features.json", lambda d: {**FEATURES, "per_class": 5}),
     "features.json: per_class"),
    ("feat_list", lambda r: (r / "features.json").write_text("[1, 2]"), "features.json: top level"),
]


def broken_runs(root: Path) -> Path:
    """Two good seed pairs (ce, ce + FCC) and one run per broken case, each otherwise a finished run."""
    for seed in (0, 1):
        make_run(root / f"ce_s{seed}", seed=seed, top1=70.0 + seed)
        make_run(root / f"fcc_s{seed}", seed=seed, top1=72.0 + 2 * seed, fcc=True)
    for i, (name, breaker, *_rest) in enumerate([*BROKEN, *FEATURE_CASES]):
        run = make_run(root / name, seed=10 + i, top1=50.0)
        breaker(run)
    return root


def test_report_lists_each_broken_run_with_its_file_and_field(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    root = broken_runs(tmp_path / "runs")
    assert main(["report", str(root), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    runs = {r["run"]: r for r in data["runs"]}
    for name, _, state, detail in BROKEN:
        assert (runs[name]["state"], runs[name]["counted"]) == (state, False), name
        assert detail in runs[name]["detail"], (name, runs[name]["detail"])
    for name, _, detail in FEATURE_CASES:  # counted for accuracy, its feature statistics left out and named
        assert runs[name]["counted"] and "spread_ratio" not in runs[name]["metrics"], name
        assert detail in runs[name]["detail"], (name, runs[name]["detail"])
    # the good runs' numbers are untouched: 70, 71 and 72, 74 -> paired differences 2 and 3
    (pair,) = data["fcc_effect"]
    assert pair["n"] == 2 and pair["metrics"]["top1"]["mean"] == pytest.approx(2.5)
    assert main(["report", str(root)]) == 0
    text = capsys.readouterr().out
    not_counted = text.split("## Not counted")[1]
    for name, _, state, _ in BROKEN:
        assert re.search(rf"^\| {name} \| {state} \| ", not_counted, flags=re.MULTILINE), name


def test_plots_and_sweep_over_broken_runs_never_trace_back(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = broken_runs(tmp_path / "runs")
    out = tmp_path / "figs"
    assert main(["plot", "per-class", str(root), "--out", str(out)]) == 0
    notes = capsys.readouterr().err
    assert "eval_top1_absurd: flagged (eval.json: top1 is 1e+200" in notes
    assert main(["plot", "curves", str(root), "--out", str(out)]) == 0
    notes = capsys.readouterr().err
    assert "metrics_lr_huge/metrics.jsonl: line 5: lr: expected a number, got an integer too large" in notes
    for case in ("feat_nan", "feat_per_class_number"):
        assert main(["plot", "clusters", str(root / case), str(root / "ce_s0"), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "features.json" in err, err


def confusion_run(root: Path, cell: str) -> Path:
    run = make_run(root, seed=0)
    write_confusion(run, np.array([[5, 1, 0], [1, 5, 0], [0, 1, 5]]), ["class0", "class1", "class2"])
    text = (run / "confusion.csv").read_text().replace("class1,1,5,0", f"class1,1,{cell},0")
    (run / "confusion.csv").write_text(text)
    return run


@pytest.mark.parametrize(("cell", "message"), [("9" * 30, "row 2 ('class1'), column 2: expected a count"),
                                               ("-1", "expected a count"), ("1.5", "expected a count")])
def test_confusion_counts_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str], cell: str,
                                      message: str) -> None:
    run = confusion_run(tmp_path / "r", cell)
    assert main(["plot", "confusion", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {run / 'confusion.csv'}: ") and message in err and len(err.splitlines()) == 1


def npz_run(root: Path, features: np.ndarray, labels: np.ndarray | None = None) -> Path:
    run = make_run(root, seed=0)
    labels = np.arange(len(features)) % 3 if labels is None else labels
    np.savez(run / "features.npz", features=features, labels=labels, train_counts=np.array([500, 50, 5]),
             class_names=np.array(["a", "b", "c"]))
    return run


@pytest.mark.parametrize(("features", "labels", "message"), [
    (np.full((9, 4), np.nan), None, "features: 36 value(s) are not finite"),
    (np.array([[1.0, np.inf]] * 9), None, "features: 9 value(s) are not finite"),
    (np.zeros((9, 0)), None, "features: expected at least one dimension"),
    (np.ones((9, 4)), np.linspace(0, 2, 9), "labels: expected integers"),
    (np.array([["a", "b"]] * 9), None, "features: expected numbers"),
])
def test_feature_arrays_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str], features: np.ndarray,
                                    labels: np.ndarray | None, message: str) -> None:
    run = npz_run(tmp_path / "r", features, labels)
    assert main(["plot", "features", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {run / 'features.npz'}: ") and message in err and len(err.splitlines()) == 1


def test_negative_seed_and_bad_counts_are_refused_when_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = npz_run(tmp_path / "r", np.random.default_rng(0).normal(size=(9, 4)))
    for args, message in ((["--seed", "-1"], "--seed: expected an integer >= 0, got -1"),
                          (["--max-points", "2"], "--max-points: expected an integer >= 3, got 2")):
        with pytest.raises(SystemExit) as stop:
            main(["plot", "features", str(run), *args])
        assert stop.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["plot", "confusion", str(run), "--blocks", "0"])
    assert "--blocks: expected an integer >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", "r/" + "x" * 300])
    assert "has a file or folder name of 300 bytes" in capsys.readouterr().err
    for name in ("/dev/zero", "../eval.json", "eval.txt"):  # a file name inside each run, not a path
        with pytest.raises(SystemExit):
            main(["report", str(run), "--eval-file", name])
        assert "--eval-file: expected the name of a result file in each run directory" in capsys.readouterr().err


@pytest.mark.parametrize("record", ['{"jobs": [1]}', '{"runs": 5}', '{"runs": [{"name": 5}]}', "[1]",
                                    '{"jobs": {"base__seed0": {"job_id": [1]}}}', "{not json"])
def test_a_broken_sweep_record_is_named_and_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str], record: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.yaml").write_text("{}\n")
    (tmp_path / "s.yaml").write_text("out: runs/s\nconfigs: [base.yaml]\noverrides: [device=cpu]\n")
    (tmp_path / "runs" / "s").mkdir(parents=True)
    (tmp_path / "runs" / "s" / "sweep.json").write_text(record)
    assert main(["sweep", "s.yaml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "note: runs/s/sweep.json: " in out and "the previous record is ignored" in out
    assert re.search(r"train +base__seed0 +new", out)


def test_a_sweep_refuses_to_train_over_an_unreadable_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.yaml").write_text("{}\n")
    (tmp_path / "s.yaml").write_text("out: runs/s\nconfigs: [base.yaml]\nseeds: [0, 1]\noverrides: [device=cpu]\n")
    make_run(tmp_path / "runs" / "s" / "base__seed0", seed=0)
    (tmp_path / "runs" / "s" / "base__seed0" / "metrics.jsonl").write_text('{"epoch": "one"}\n')
    assert main(["sweep", "s.yaml", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "1 run directory in runs/s hold files that cannot be read" in err
    assert "runs/s/base__seed0: metrics.jsonl: line 1: epoch: expected an integer" in err


# ------------------------------------------------------------------------------------------ properties


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-3, 300), st.just(HUGE),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                    st.sampled_from(["70", "nan", "1e400", "", "many"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=5)),
                      max_leaves=15)
EVAL_KEYS = ["top1", "top5", "mean_class", "many", "medium", "few", "per_class", "class_names", "train_counts",
             "smoke"]
FEATURE_KEYS = ["mean_spread_ratio", "compactness", "mean_norm", "spread_ratio_by_group", "train_counts", "per_class"]


def mutated(base: dict, keys: list[str]) -> st.SearchStrategy[object]:
    """Mostly the valid ``base`` with some of its fields (or fields inside them) replaced by anything, else
    any JSON value at all."""
    def replace(changes: dict) -> dict:
        out = json.loads(json.dumps(base))
        for key, value in changes.items():
            if isinstance(out.get(key), list) and out[key] and isinstance(value, tuple):
                out[key][value[0] % len(out[key])] = value[1]
            else:
                out[key] = value
        return out
    change = st.one_of(values, st.tuples(st.integers(0, 5), values))
    return st.one_of(st.dictionaries(st.sampled_from(keys), change, min_size=1, max_size=3).map(replace), values)


def named_error_or(read: Callable[[], object]) -> object:
    """``read()``'s value, or None when it raised one of fcc's errors with a message; anything else fails."""
    try:
        return read()
    except FccError as err:
        assert str(err).strip() and "\n" not in str(err).strip(), repr(err)
        return None


GOOD_EVAL = json.loads(json.dumps({"top1": 70.0, "top5": 95.0, "mean_class": 60.0, "many": 90.0, "medium": 60.0,
                                   "few": 30.0, "per_class": [90.0, 60.0, 30.0], "class_names": ["a", "b", "c"],
                                   "train_counts": [500, 50, 5]}))


_BASE_RUNS: dict[str, Path] = {}
# a short config.yaml (keys left out take their defaults): each example parses it, so it is kept small
SHORT_CONFIG = {"seed": 0, "train": {"epochs": 4, "lr": 0.1}, "fcc": {"enabled": False, "gamma": 0.5},
                "loss": {"name": "ce", "params": {}}, "model": {"backbone": "resnet32", "init_from": None},
                "data": {"dataset": "cifar10", "imbalance_factor": 100.0}, "eval": {"many_shot_min": 101}}


def base_run(factory: pytest.TempPathFactory, name: str) -> Path:
    """One finished run per property test, made once; each example rewrites the file it is about."""
    if name not in _BASE_RUNS:
        _BASE_RUNS[name] = make_run(factory.mktemp(name), seed=0)
    run = _BASE_RUNS[name]
    (run / "config.yaml").write_text(yaml.safe_dump(SHORT_CONFIG, sort_keys=False))
    return run


def _write(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, allow_nan=True) if not isinstance(data, str) else data)


@SETTINGS
@given(data=mutated(GOOD_EVAL, EVAL_KEYS))
def test_property_eval_files_read_or_name_the_field(tmp_path_factory: pytest.TempPathFactory, data: object) -> None:
    run = base_run(tmp_path_factory, "eval")
    try:
        _write(run / "eval.json", data)
    except ValueError:  # an integer json cannot write (over 4300 digits)
        return
    result = named_error_or(lambda: run_folder.read_eval(run))
    if result is not None:  # every number it hands on is finite; out-of-range accuracies are flagged
        numbers = [v for v in [*result.metrics.values(), *(result.per_class or [])] if v is not None]
        assert all(isinstance(v, float) and math.isfinite(v) for v in numbers)
        assert bool(result.flags) == any(not 0 <= v <= 100 for v in numbers)
    report_run = collect_run(run)  # and the report takes whatever it is without an exception
    assert report_run.state in ("finished", "failed", "flagged")
    if report_run.state != "finished":
        assert report_run.detail.startswith("eval.json")


@SETTINGS
@given(data=mutated(FEATURES, FEATURE_KEYS))
def test_property_feature_files_read_or_name_the_field(tmp_path_factory: pytest.TempPathFactory,
                                                        data: object) -> None:
    run = base_run(tmp_path_factory, "features")
    try:
        _write(run / "features.json", data)
    except ValueError:
        return
    named_error_or(lambda: run_folder.read_feature_stats(run))
    report_run = collect_run(run)
    assert report_run.state == "finished"
    assert all(v is None or math.isfinite(v) for v in report_run.metrics.values())


config_values = st.one_of(values, st.dates(), st.sampled_from([HUGE, -HUGE, "x" * 300]))


@SETTINGS
@given(edits=st.dictionaries(st.sampled_from(["seed", "train", "train.epochs", "fcc", "fcc.enabled", "fcc.gamma",
                                              "loss.params", "model.init_from", "data.imbalance_factor", "eval",
                                              "eval.many_shot_min", "model.backbone_params", "other", "train.x"]),
                             config_values, min_size=1, max_size=4))
def test_property_configs_read_or_name_the_key(tmp_path_factory: pytest.TempPathFactory, edits: dict) -> None:
    run = base_run(tmp_path_factory, "config")
    cfg = json.loads(json.dumps(SHORT_CONFIG))
    for dotted, value in edits.items():
        *parents, leaf = dotted.split(".")
        node = cfg
        for p in parents:
            node = node[p] if isinstance(node.get(p), dict) else node.setdefault(p, {})
            if not isinstance(node, dict):
                break
        else:
            node[leaf] = value
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cfg = named_error_or(lambda: run_folder.read_config(run))
    report = build_report([run])  # a report, whatever the config holds
    assert len(report.runs) == 1 and json.dumps(report_data(report), allow_nan=False)
    assert report.runs[0].state == "missing" if cfg is None else report.runs[0].state in ("finished", "stopped")


@SETTINGS
@given(lines=st.lists(st.one_of(values.map(lambda v: json.dumps(v, allow_nan=True)),
                                st.dictionaries(st.sampled_from(["epoch", "lr", "train_loss", "test_top1", "x"]),
                                                values, max_size=4).map(lambda v: json.dumps(v, allow_nan=True)),
                                st.text(max_size=20)), max_size=6),
       cut=st.booleans())
def test_property_metrics_files_read_or_name_the_line(tmp_path_factory: pytest.TempPathFactory, lines: list[str],
                                                       cut: bool) -> None:
    run = base_run(tmp_path_factory, "metrics")
    text = "".join(f"{line}\n" for line in lines)
    (run / "metrics.jsonl").write_text(text[:-1] if cut and text else text)
    try:
        records, error = run_folder.read_metrics(run), None
    except FccError as err:
        assert str(err).strip() and "\n" not in str(err).strip(), repr(err)
        records, error = [], err
    for record in records:
        assert isinstance(record["epoch"], int) and record["epoch"] >= 1
        assert all(record.get(k) is None or math.isfinite(record[k]) for k in ("lr", "train_loss", "test_top1"))
    state = collect_run(run).state  # a broken log makes the run unreadable, named; nothing else escapes
    assert state == "unreadable" if isinstance(error, run_folder.RunFileError) else state in ("finished", "empty")


@SETTINGS
@given(data=mutated({"format": "fcc-sweep", "spec": {"configs": ["a.yaml"]}, "runs": [{"name": "a__seed0"}],
                     "jobs": {"a__seed0": {"executor": "slurm", "job_id": "12_0"}}}, ["spec", "runs", "jobs"]))
def test_property_sweep_records_read_or_name_the_field(tmp_path_factory: pytest.TempPathFactory,
                                                        data: object) -> None:
    out = tmp_path_factory.mktemp("sweep")
    try:
        _write(out / "sweep.json", data)
    except ValueError:
        return
    record = named_error_or(lambda: run_folder.read_sweep_record(out))
    if record is not None:
        assert all(isinstance(r["name"], str) for r in record["runs"]) and isinstance(record["jobs"], dict)


@SETTINGS
@given(cells=st.lists(st.lists(st.one_of(st.integers(-5, 10**20).map(str), st.text(max_size=4)), min_size=3,
                                       max_size=4), min_size=2, max_size=4))
def test_property_confusion_files_read_or_name_the_cell(tmp_path_factory: pytest.TempPathFactory,
                                                         cells: list[list[str]]) -> None:
    run = tmp_path_factory.mktemp("run")
    rows = ["true\\pred,a,b,c", *(",".join(["x", *row]) for row in cells)]
    (run / "confusion.csv").write_text("\n".join(rows) + "\n")
    parsed = named_error_or(lambda: run_folder.read_confusion(run))
    if parsed is not None:
        assert parsed[1].min() >= 0


@st.composite
def feature_arrays(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """features.npz contents: a valid set (N samples of D dimensions, labels of C classes) with one of its
    parts broken, or none: non-finite values, no dimensions, too few samples, labels out of range or of
    another length, negative counts."""
    n, width, classes = draw(st.integers(1, 6)), draw(st.integers(1, 3)), draw(st.integers(1, 4))
    features = draw(st.floats(-3, 3)) + np.arange(n * width, dtype=np.float64).reshape(n, width)
    labels = np.array(draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)), dtype=np.int64)
    counts = draw(st.lists(st.integers(0, 9), min_size=classes, max_size=classes))
    broken = draw(st.sampled_from(["none", "nan", "inf", "width", "label", "length", "count"]))
    if broken in ("nan", "inf"):
        features[draw(st.integers(0, n - 1)), 0] = np.nan if broken == "nan" else -np.inf
    elif broken == "width":
        features = features[:, :0]
    elif broken == "label":
        labels[draw(st.integers(0, n - 1))] = draw(st.sampled_from([-1, classes, classes + 5]))
    elif broken == "length":
        labels = labels[:-1]
    elif broken == "count":
        counts[draw(st.integers(0, classes - 1))] = -draw(st.integers(1, 5))
    return features, labels, counts


@SETTINGS
@given(arrays=feature_arrays())
def test_property_feature_arrays_read_or_are_named(tmp_path_factory: pytest.TempPathFactory,
                                                    arrays: tuple[np.ndarray, np.ndarray, list[int]]) -> None:
    run = tmp_path_factory.mktemp("run")
    features, labels, counts = arrays
    write_features_npz(run, features, labels, counts, [str(c) for c in counts])
    data = named_error_or(lambda: run_folder.read_features_npz(run))
    if data is not None:
        assert np.isfinite(data["features"]).all() and data["features"].shape[1] >= 1
        assert (data["train_counts"] >= 0).all() and data["labels"].max() < len(data["train_counts"])
