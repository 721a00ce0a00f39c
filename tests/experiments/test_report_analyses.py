"""`fcc report`'s analyses section and figures on fabricated run directories with analysis.json files:
the numbers taken from the files, FCC against logit adjustment and the decoupling table, paired by seed
and checked by hand; cRT runs on FCC backbones pair with cRT runs on CE backbones."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from fcc_lt.cli.main import main
from fcc_lt.experiments.report import build_report, report_data
from fcc_lt.experiments.report.analysis_metrics import analysis_metrics
from fcc_lt.experiments.report.render import render_csv, render_markdown
from run_fixtures import make_run

T_975_2 = 4.302653  # printed t table, two-sided 95%, 2 degrees of freedom
SCALES = [round(0.5 + 0.1 * i, 10) for i in range(16)]


def analysis_json(*, norm_ratio: float = 1.0, margin: float = 0.5, la_top1: float | None = 70.0,
                  la_gain: float = 1.0, oracle_delta: float = 0.0, sweep_top1: list[float] | None = None
                  ) -> dict[str, Any]:
    """An analysis.json as `fcc analyze` writes it (only what the report and figures read), 3 classes."""
    def dist(median: float) -> dict[str, Any]:
        return {"n": 100, "median": median, "p10": median - 1, "pct_negative": 20.0}

    at = list(range(0, 101, 2))
    curve = [margin - 2 + 4 * p / 100 for p in at]
    margins = {"all": dist(margin), **{g: dist(margin + i) for i, g in enumerate(("many", "medium", "few"))},
               "percentiles": {"at": at, "all": curve, "many": curve, "medium": curve, "few": curve}}
    top1 = sweep_top1 or [60.0 + i for i in range(16)]
    accs = {"top1": top1, "mean_class": top1, "many": top1, "medium": top1, "few": top1}
    la: dict[str, Any] = {"skipped": "refused: no validation split"} if la_top1 is None else {
        "best_t": 1.0, "test": {"top1": la_top1, "many": la_top1 - 10, "medium": la_top1, "few": la_top1 + 10},
        "difference": {"top1": la_gain}}
    return {"format": "fcc-analysis", "version": 1,
            "norm_ratio": {"mean": norm_ratio, "by_group": {"many": norm_ratio + 0.1, "medium": norm_ratio,
                                                            "few": None}},
            "margins": {"logit": margins, "geometric": margins},
            "scale_sweep": {"scales": SCALES, "with_bias": accs, "zero_bias": {k: [top1[5]] * 16 for k in accs},
                            "zero_bias_invariant": True, "best_scale": SCALES[top1.index(max(top1))]},
            "oracle_factor": {"unscaled": {"top1": 50.0 - oracle_delta}, "oracle": {"top1": 50.0},
                              "difference": {"top1": oracle_delta, "many": 5.0, "medium": -5.0, "few": None}},
            "logit_adjustment": la}


def write_analysis(run: Path, data: dict[str, Any]) -> Path:
    (run / "analysis.json").write_text(json.dumps(data))
    return run


def test_numbers_taken_from_an_analysis_json() -> None:
    top1 = [60.0 + i for i in range(16)]  # best at s = 2.0: 75; at 1.0: 65; at 0.5: 60
    m = analysis_metrics(analysis_json(norm_ratio=1.3, margin=0.25, sweep_top1=top1))
    assert (m["norm_ratio"], m["norm_ratio_many"], m["norm_ratio_few"]) == (1.3, pytest.approx(1.4), None)
    assert (m["margin_median"], m["margin_p10"], m["margin_negative"]) == (0.25, -0.75, 20.0)
    assert (m["geo_margin_median_medium"], m["margin_median_few"]) == (1.25, 2.25)
    assert (m["scale_best"], m["scale_top1_half"], m["scale_top1_double"], m["scale_top1_gain"]) == (2.0, 60.0, 75.0,
                                                                                                     10.0)
    assert (m["oracle_top1"], m["oracle_delta_many"], m["oracle_delta_few"]) == (50.0, 5.0, None)
    assert (m["la_t"], m["la_top1"], m["la_many"], m["la_delta_top1"]) == (1.0, 70.0, 60.0, 1.0)
    skipped = analysis_metrics({**analysis_json(la_top1=None), "scale_sweep": {"skipped": "cosine head"}})
    assert skipped["la_top1"] is None and skipped["scale_best"] is None and skipped["scale_top1_gain"] is None
    assert set(analysis_metrics("not a mapping").values()) == {None}


def stage1(root: Path) -> Path:
    """CE and CE + FCC, seeds 0-2, with analysis.json: CE logit-adjusted top1 65, 66, 70 (CE 60, 62, 64),
    CE + FCC 66, 65, 71; norm ratios 1.0 (CE) and 1.2, 1.3, 1.5 (FCC)."""
    for seed, top1, la, ratio, fcc_top1 in ((0, 60.0, 65.0, 1.2, 66.0), (1, 62.0, 66.0, 1.3, 65.0),
                                            (2, 64.0, 70.0, 1.5, 71.0)):
        write_analysis(make_run(root / "stage1" / f"ce__seed{seed}", seed=seed, top1=top1),
                       analysis_json(norm_ratio=1.0, la_top1=la, la_gain=la - top1))
        write_analysis(make_run(root / "stage1" / f"ce_fcc__seed{seed}", seed=seed, fcc=True, top1=fcc_top1),
                       analysis_json(norm_ratio=ratio, la_top1=fcc_top1, la_gain=0.0, oracle_delta=-2.0))
    return root


def test_fcc_against_logit_adjustment_paired_by_seed(tmp_path: Path) -> None:
    report = build_report([stage1(tmp_path)])
    (la,) = report_data(report)["analyses"]["fcc_vs_logit_adjustment"]
    # with - (without + adjustment) = 66 - 65, 65 - 66, 71 - 70 = 1, -1, 1: mean 1/3, sd sqrt(4/3)
    d = la["metrics"]["top1"]
    assert (d["n"], d["mean"], d["sd"]) == (3, pytest.approx(1 / 3), pytest.approx(math.sqrt(4 / 3)))
    half = T_975_2 * math.sqrt(4 / 3) / math.sqrt(3)
    assert (d["ci_low"], d["ci_high"]) == (pytest.approx(1 / 3 - half, abs=1e-5), pytest.approx(1 / 3 + half, abs=1e-5))
    # the adjustment's own gain on CE: 5, 4, 6
    assert la["metrics"]["la_gain"]["mean"] == pytest.approx(5.0) and la["metrics"]["la_gain"]["sd"] == 1.0
    # many: FCC's eval.json many (per_class[0] = 90) minus the adjusted CE many (65-10, 66-10, 70-10)
    assert la["metrics"]["many"]["mean"] == pytest.approx(90 - (65 + 66 + 70 - 30) / 3)
    md = render_markdown(report)
    assert "## Analyses (analysis.json): features or classifier?" in md
    assert f"+0.33 [{1 / 3 - half:+.2f}, {1 / 3 + half:+.2f}]" in md
    pair = report_data(report)["fcc_effect"][0]
    # norm ratio, FCC minus CE: 0.2, 0.3, 0.5
    assert pair["metrics"]["norm_ratio"]["mean"] == pytest.approx(1 / 3)
    assert pair["metrics"]["oracle_delta_top1"]["mean"] == pytest.approx(-2.0)
    rows = [r for r in render_csv(report).splitlines() if r.startswith("fcc_vs_logit_adjustment")]
    assert len(rows) == 8  # top1, many, medium, few, la_gain, without, without_adjusted, with


def test_decoupling_pairs_crt_on_the_fcc_backbone_with_crt_on_the_ce_backbone(tmp_path: Path) -> None:
    stage1(tmp_path)
    # cRT top1 from the CE backbone 80, 81, 82; from the FCC backbone 81, 81, 84 (gains 1, 0, 2);
    # cRT + FCC on the FCC backbone 90 each (never a baseline)
    for seed, base, on_fcc in ((0, 80.0, 81.0), (1, 81.0, 81.0), (2, 82.0, 84.0)):
        for name, src, top1, fcc in (("crt__from_ce", "ce", base, False), ("crt__from_ce_fcc", "ce_fcc", on_fcc, False),
                                     ("crt_fcc__from_ce_fcc", "ce_fcc", 90.0, True)):
            make_run(tmp_path / "stage2" / f"{name}__seed{seed}", seed=seed, top1=top1, fcc=fcc,
                     overrides={"model.init_from": str(tmp_path / "stage1" / f"{src}__seed{seed}"),
                                "sampler.name": "class_balanced"})
    report = build_report([tmp_path])
    rows = {(p.pairs[0][0].path.parent.name, p.pairs[0][0].path.name.split("__seed")[0]): p for p in report.pairs}
    assert set(rows) == {("stage1", "ce_fcc"), ("stage2", "crt__from_ce_fcc"), ("stage2", "crt_fcc__from_ce_fcc")}
    for row in rows.values():  # every with-FCC run is paired with the run without FCC anywhere
        assert all("fcc" not in b.path.name for _, b in row.pairs)
    dec = {d["columns"]["fcc"].split(" [")[0]: d for d in report_data(report)["analyses"]["decoupling"]}
    after = dec["-"]["metrics"]["top1"]  # cRT without FCC on the FCC backbone against cRT on the CE backbone
    assert dec["-"]["columns"]["fcc"].startswith("- [init: FCC(")  # the FCC column says where FCC is
    # stage 1 gains: 71-64... per seed 66-60, 65-62, 71-64 = 6, 3, 7; after cRT 1, 0, 2; after - stage1 -5, -3, -5
    assert after["stage1"]["mean"] == pytest.approx(16 / 3) and after["after_crt"]["mean"] == pytest.approx(1.0)
    assert after["difference"]["mean"] == pytest.approx(-13 / 3)
    assert after["difference"]["sd"] == pytest.approx(math.sqrt(((-5 + 13 / 3) ** 2 * 2 + (-3 + 13 / 3) ** 2) / 2))
    assert len(dec) == 2
    md = render_markdown(report)
    assert "Decoupling: FCC's gain in stage 1 and after a second stage" in md


def test_report_figures_and_untrusted_analysis_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stage1(tmp_path)
    out = tmp_path / "figs"
    assert main(["report", str(tmp_path), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} >= {"margins.png", "margins.pdf", "scale_sweep.png", "scale_sweep.pdf"}
    assert main(["plot", "margins", str(tmp_path / "stage1"), "--out", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "margins.pdf").is_file()
    capsys.readouterr()
    broken = make_run(tmp_path / "broken" / "run", seed=5)
    (broken / "analysis.json").write_text('{"format": "fcc-analysis", "margins": {"logit": 3}}')
    other = make_run(tmp_path / "other" / "run", seed=6)
    (other / "analysis.json").write_text("[1, 2")
    assert main(["report", str(tmp_path / "broken"), str(tmp_path / "other"), "--out", str(tmp_path / "o2")]) == 0
    text = capsys.readouterr().out
    assert "analysis.json is not valid JSON" in text and "Traceback" not in text
    assert "analysis.json: norm_ratio: expected a mapping" in text  # the schema names the field
    assert not (tmp_path / "o2" / "margins.png").exists()  # nothing usable to draw
    assert main(["plot", "scale", str(tmp_path / "broken"), "--out", str(tmp_path / "o3")]) == 2
    assert "no group whose every run has a scale sweep" in capsys.readouterr().err


def test_the_cluster_statistics_are_not_described_as_what_fcc_lowers(tmp_path: Path) -> None:
    from run_fixtures import features_json

    make_run(tmp_path / "a", features=features_json([1.0, 1.2, 1.4], [5.0, 4.0, 3.0], [500, 50, 5]))
    md = render_markdown(build_report([tmp_path]))
    assert "claims to lower" not in md and "descriptive" in md


def test_margin_and_scale_figures_name_the_broken_analysis_json(tmp_path: Path) -> None:
    """A figure that finds no usable analysis.json says which file is wrong and how, not only that none is."""
    from fcc_lt.experiments.plots.analyses import plot_margins, plot_scale_sweep
    from fcc_lt.util.errors import DataError

    runs = tmp_path / "runs"
    broken = make_run(runs / "ce", seed=0)
    write_analysis(broken, {**analysis_json(), "norm_ratio": {"mean": "x"}})
    report = build_report([runs])
    with pytest.raises(DataError, match=r"ce/analysis\.json.*norm_ratio\.mean: expected a number"):
        plot_margins(report.groups, tmp_path / "figs")
    (broken / "analysis.json").unlink()
    with pytest.raises(DataError, match=r"ce/analysis\.json.*not found"):
        plot_scale_sweep(report.groups, tmp_path / "figs")
