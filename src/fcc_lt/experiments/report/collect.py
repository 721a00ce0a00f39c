"""Collecting runs for a report: each run directory's state, identity (what it computes) and numbers.

Everything is read through fcc_lt.experiments.run_folder; a run that is unfinished or broken comes back
with its state and why, never as an exception. A run's identity is its flattened config without the
seed and the keys that do not change results, with a referenced run (``model.init_from``,
``distill.teacher``) replaced by that run's identity; groups and pairs are formed from it in
fcc_lt.experiments.report.compare.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fcc_lt.experiments.effects import IGNORED_KEYS, ineffective_keys
from fcc_lt.experiments.report.analysis_metrics import ANALYSIS_METRICS, analysis_metrics
from fcc_lt.experiments.run_folder import (
    EVAL_METRICS,
    RunFileError,
    config_or_none,
    read_analysis,
    read_config,
    read_eval,
    read_feature_json,
    run_status,
)
from fcc_lt.util.errors import path_problem

ACCURACY_METRICS = EVAL_METRICS
# the feature-cluster statistics of features.json (`fcc eval RUN --features`), by report name
FEATURE_METRICS = {
    "spread_ratio": ("mean_spread_ratio",),
    "spread_ratio_many": ("spread_ratio_by_group", "many"),
    "spread_ratio_medium": ("spread_ratio_by_group", "medium"),
    "spread_ratio_few": ("spread_ratio_by_group", "few"),
    "compactness": ("compactness",),
    "feature_norm": ("mean_norm",),
}
# analysis.json's numbers (`fcc analyze RUN`): fcc_lt.experiments.report.analysis_metrics
METRICS = (*ACCURACY_METRICS, *FEATURE_METRICS, *ANALYSIS_METRICS)


# Config keys naming another run (a stage-1 checkpoint, a teacher): replaced by that run's own identity,
# so stage-2 runs of different seeds (each from its own stage-1 run) still form one group.
REFERENCE_KEYS = ("model.init_from", "distill.teacher")

# the report's standard columns (what tells groups apart) and their titles
COLUMNS = {"dataset": "dataset", "imbalance_factor": "IF", "backbone": "backbone", "epochs": "epochs",
           "method": "method", "fcc": "FCC"}


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; an empty mapping (no params) contributes nothing."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, dict):
                out.update(_flatten(value, dotted + "."))
            else:
                out[dotted] = value
    return out


def _resolve_reference(value: str, run_dir: Path) -> tuple[Path, str | None] | None:
    """The run directory a checkpoint path or run path points at, tried as given (relative to the current
    directory) and relative to each folder above the run (where `fcc train` was started); None if none."""
    raw = Path(value)
    bases = [Path()] if raw.is_absolute() else [Path(), *run_dir.resolve().parents]
    for base in bases:
        candidate = base / raw
        if _is_file(candidate / "config.yaml"):
            return candidate, None
        parent = candidate.parent
        if parent.name == "checkpoints" and _is_file(parent.parent / "config.yaml"):
            return parent.parent, candidate.name
    return None


def _is_file(path: Path) -> bool:
    """Path.is_file, False for a path no file can have (too long once joined to a folder) or cannot reach."""
    if path_problem(path) is not None:
        return False
    try:
        return path.is_file()
    except OSError:
        return False


def config_identity(cfg: dict[str, Any], run_dir: Path, depth: int = 0) -> dict[str, str]:
    """The flattened config without the seed and the keys that do not change results (values as JSON).

    Keys that do nothing given the others drop out (``fcc.gamma`` with FCC off: fcc_lt.experiments.effects),
    and a key naming another run is replaced by that run's identity under ``<key>.run.``.
    """
    ineffective = ineffective_keys(cfg)
    out: dict[str, str] = {}
    for key, value in _flatten(cfg).items():
        if key == "seed" or key in IGNORED_KEYS or key in ineffective:
            continue
        if key in REFERENCE_KEYS and isinstance(value, str) and depth < 4:
            ref = _resolve_reference(value, run_dir)
            ref_cfg = config_or_none(ref[0]) if ref else None
            if ref is not None and ref_cfg is not None:
                for sub, sub_value in config_identity(ref_cfg, ref[0], depth + 1).items():
                    out[f"{key}.run.{sub}"] = sub_value
                out[f"{key}.run.seed"] = json.dumps(ref_cfg.get("seed"))  # pairs match on it, groups do not
                out[f"{key}.checkpoint"] = json.dumps(ref[1])
                continue
        out[key] = json.dumps(value, sort_keys=True)
    return out


def is_fcc_key(key: str) -> bool:
    """Whether an identity key is an FCC setting (of this run or of a run it starts from)."""
    return key.startswith("fcc.") or ".run.fcc." in key


def is_seed_key(key: str) -> bool:
    """Whether an identity key is the seed of a run this one starts from (or learns from)."""
    return key.endswith(".run.seed")


def _fmt_number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe_method(cfg: dict[str, Any]) -> str:
    """A short label such as 'ce + drw' or 'balanced_softmax + FCC(0.5)' from a resolved config."""
    loss = cfg.get("loss", {})
    parts = [str(loss.get("name", "?"))]
    if (loss.get("params") or {}).get("drw_start_epoch"):
        parts[0] += f" (DRW from epoch {loss['params']['drw_start_epoch']})"
    sampler = cfg.get("sampler", {})
    if sampler.get("name") and sampler["name"] != "instance":
        drs = (sampler.get("params") or {}).get("drs_start_epoch")
        parts.append(f"{sampler['name']} sampler" + (f" (DRS from epoch {drs})" if drs else ""))
    mix = cfg.get("mix", {}).get("name")
    if mix and mix != "none":
        parts.append(str(mix))
    fcc = cfg.get("fcc", {})
    if fcc.get("enabled"):
        parts.append(f"FCC(gamma {fcc.get('gamma')}, from epoch {fcc.get('start_epoch')})")
    return " + ".join(parts)


def fcc_label(cfg: dict[str, Any]) -> str:
    """'-' without FCC, else 'FCC(gamma G, from epoch E)' (and its ranking when not by frequency)."""
    fcc = cfg.get("fcc") or {}
    if not fcc.get("enabled"):
        return "-"
    extra = "" if fcc.get("rank_by", "frequency") == "frequency" else f", rank by {fcc.get('rank_by')}"
    return f"FCC(gamma {_fmt_number(fcc.get('gamma'))}, from epoch {fcc.get('start_epoch')}{extra})"


def fcc_chain_label(cfg: dict[str, Any], run_dir: Path, depth: int = 0) -> str:
    """FCC in this run and in the runs it starts from: 'FCC(gamma 0.5, from epoch 1)', '- [init: FCC(...)]'
    (a second stage on an FCC backbone), or '-' when no run of the chain uses FCC."""
    label = fcc_label(cfg)
    for key, name in (("model.init_from", "init"), ("distill.teacher", "teacher")):
        section, leaf = key.split(".")
        value = (cfg.get(section) or {}).get(leaf)
        ref = _resolve_reference(value, run_dir) if isinstance(value, str) and depth < 4 else None
        ref_cfg = config_or_none(ref[0]) if ref else None
        if ref is not None and ref_cfg is not None and (inner := fcc_chain_label(ref_cfg, ref[0], depth + 1)) != "-":
            label += f" [{name}: {inner}]"
    return label


def method_label(cfg: dict[str, Any], run_dir: Path, depth: int = 0) -> str:
    """The method without FCC: loss, DRW, sampler, DRS, mixing, a non-linear head, what it starts from."""
    label = describe_method({**cfg, "fcc": {"enabled": False}})
    model = cfg.get("model") or {}
    if model.get("head") and model["head"] != "linear":
        label += f" + {model['head']} head"
    for key, name in (("model.init_from", "init"), ("distill.teacher", "teacher")):
        section, leaf = key.split(".")
        value = (cfg.get(section) or {}).get(leaf)
        if not isinstance(value, str):
            continue
        ref = _resolve_reference(value, run_dir) if depth < 4 else None
        ref_cfg = config_or_none(ref[0]) if ref else None
        if ref is not None and ref_cfg is not None:
            shown = method_label(ref_cfg, ref[0], depth + 1)
            shown += "" if fcc_label(ref_cfg) == "-" else f" + {fcc_label(ref_cfg)}"
        else:
            shown = value
        label += f" [{name}: {shown}]"
    return label


def run_columns(cfg: dict[str, Any], run_dir: Path) -> dict[str, str]:
    """The values of the report's standard columns for one run."""
    data, model, train = cfg.get("data") or {}, cfg.get("model") or {}, cfg.get("train") or {}
    dataset = str(data.get("dataset", "?"))
    if data.get("train_json"):
        dataset += f" ({Path(str(data['train_json'])).name})"
    backbone = str(model.get("backbone", "?"))
    if model.get("backbone_params"):
        backbone += "(" + ", ".join(f"{k}={_fmt_number(v)}" for k, v in sorted(model["backbone_params"].items())) + ")"
    return {"dataset": dataset, "imbalance_factor": _fmt_number(data.get("imbalance_factor", "?")),
            "backbone": backbone, "epochs": str(train.get("epochs", "?")), "method": method_label(cfg, run_dir),
            "fcc": fcc_label(cfg)}


@dataclass
class ReportRun:
    """One run directory as the report sees it: its state, identity and numbers."""

    path: Path
    state: str
    detail: str = ""
    config: dict[str, Any] | None = None
    seed: Any = None
    identity: dict[str, str] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)
    per_class: list[float | None] | None = None
    class_names: list[str] | None = None
    train_counts: list[int] | None = None
    duplicate_of: Path | None = None
    group: str | None = None
    analysis_problem: str = ""  # why an analysis.json that is there was not used
    caveats: list[str] = field(default_factory=list)  # why its numbers do not mean what its config means
    fcc_chain: str = "-"  # FCC in this run and in the runs it starts from ('-': none)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def counted(self) -> bool:
        return self.state == "finished" and self.duplicate_of is None

    @property
    def marked(self) -> str:
        """'†' for a run counted despite caveats (--include-short), else ''."""
        return "†" if self.caveats and self.counted else ""

    @property
    def fcc_on(self) -> bool:
        """FCC in this run or in a run it starts from (a cRT stage on an FCC-trained backbone is 'with FCC')."""
        return any(k.endswith("fcc.enabled") and is_fcc_key(k) and v == "true" for k, v in self.identity.items())

    @property
    def fcc_here(self) -> bool:
        """FCC in this run's own stage (not only in the run it starts from)."""
        return self.identity.get("fcc.enabled") == "true"

    def group_key(self) -> frozenset[tuple[str, str]]:
        """What a group shares: everything but the seeds (its own and those of the runs it starts from)."""
        return frozenset((k, v) for k, v in self.identity.items() if not is_seed_key(k))

    def method_key(self) -> frozenset[tuple[str, str]]:
        """The method without FCC anywhere in its chain and without seeds: a with-FCC run and its partner
        share it (figures give them one colour)."""
        return frozenset((k, v) for k, v in self.identity.items() if not is_fcc_key(k) and not is_seed_key(k))

    def pair_key(self) -> frozenset[tuple[str, str]]:
        """What a with-FCC run and its partner share: the method, this run's seed and the seeds of the runs
        it starts from (a cRT run pairs only with the cRT run from the same stage-1 seed)."""
        seeds = frozenset((k, v) for k, v in self.identity.items() if is_seed_key(k))
        return self.method_key() | seeds | {("seed", json.dumps(self.seed))}

    def fcc_key(self) -> frozenset[tuple[str, str]]:
        """The FCC settings of this run and of the runs it starts from."""
        return frozenset((k, v) for k, v in self.identity.items() if is_fcc_key(k))


def _dig(data: Any, keys: Sequence[str]) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def collect_run(run_dir: Path, eval_file: str = "eval.json", include_short: bool = False) -> ReportRun:
    """Read a run directory; an unfinished or broken one comes back with its state and why (the file and
    field that failed), never an exception. A finished run whose schedule cannot mean what its config
    means (``schedule_caveats``) is 'short' unless ``include_short``, then counted with its caveats."""
    try:
        cfg = read_config(run_dir)
    except RunFileError:
        cfg = None
    status = run_status(run_dir, cfg)
    run = ReportRun(run_dir, status.state, status.detail, cfg)
    if cfg is None:
        return run
    run.seed = cfg.get("seed")
    run.identity = config_identity(cfg, run_dir)
    run.columns = run_columns(cfg, run_dir)
    run.fcc_chain = fcc_chain_label(cfg, run_dir)
    if status.state != "finished":
        return run
    try:
        result = read_eval(run_dir, eval_file)
    except RunFileError as err:
        run.state, run.detail = "failed", err.detail
        return run
    if result.smoke:  # fcc train --smoke: a few steps and batches, its numbers mean nothing
        run.state = "smoke"
        run.detail = "a smoke run (fcc train --smoke): not a result"
        return run
    if result.flags:  # values that cannot be true: never averaged
        run.state = "flagged"
        run.detail = f"{eval_file}: " + "; ".join(result.flags)
        return run
    run.metrics.update(result.metrics)
    run.per_class, run.class_names, run.train_counts = result.per_class, result.class_names, result.train_counts
    run.caveats = schedule_caveats(cfg, run_dir)
    if run.caveats and not include_short:
        run.state = "short"
        run.detail = "; ".join(run.caveats) + " (--include-short counts it)"
    _collect_analysis(run)
    try:
        features = read_feature_json(run_dir)
    except RunFileError as err:
        if not err.missing:
            _add_detail(run, f"feature statistics left out: {err.detail}")
        return run
    for metric, keys in FEATURE_METRICS.items():
        run.metrics[metric] = _dig(features, keys)
    return run


def _add_detail(run: ReportRun, text: str) -> None:
    run.detail = f"{run.detail}; {text}" if run.detail else text


def _collect_analysis(run: ReportRun) -> None:
    """analysis.json's numbers into ``run.metrics``; an unreadable file is named in ``run.detail``."""
    try:
        data = read_analysis(run.path)
    except RunFileError as err:
        if not err.missing:
            run.analysis_problem = err.detail
            _add_detail(run, err.detail)
        return
    if not isinstance(data, dict) or data.get("format") != "fcc-analysis":
        run.analysis_problem = "analysis.json is not an fcc analysis (`fcc analyze RUN` writes one)"
        _add_detail(run, run.analysis_problem)
        return
    numbers = analysis_metrics(data)
    if all(v is None for v in numbers.values()):
        run.analysis_problem = "analysis.json holds none of the numbers `fcc analyze` writes"
        _add_detail(run, run.analysis_problem)
    run.metrics.update(numbers)



SHORT_WARNING = "is too short for this"  # fcc_lt.config.schedule's ScheduleWarning, as train.log holds it


def schedule_caveats(cfg: dict[str, Any], run_dir: Path) -> list[str]:
    """Why a finished run's numbers do not mean what its config means, as training warned: steps capped by
    train.max_steps_per_epoch (what --smoke sets), LR drops that a shortened schedule moved onto epoch 1 or
    onto one epoch (seen in config.yaml, which holds the rescaled values), and the short-schedule warning
    training wrote to RUN/train.log (a deferred part moved past the first LR drop, which config.yaml alone
    cannot show, since it keeps only the rescaled epochs)."""
    train = cfg.get("train") or {}
    out = []
    if train.get("max_steps_per_epoch") is not None:
        out.append(f"capped at {train['max_steps_per_epoch']} step(s) per epoch (train.max_steps_per_epoch)")
    milestones = train.get("milestones") or []
    if train.get("scheduler", "multistep") == "multistep" and milestones:
        if min(milestones) <= 1:
            out.append(f"the LR drops at epoch {min(milestones)} (train.milestones {milestones}): the whole run "
                       "trains at the lowered LR")
        elif len(set(milestones)) < len(milestones):
            out.append(f"several LR drops fall on one epoch (train.milestones {milestones})")
    warning = _logged_short_warning(Path(run_dir))
    if warning and not out:
        out.append(warning)
    return out


def _logged_short_warning(run_dir: Path, max_lines: int = 100_000) -> str | None:
    """The short-schedule warning training wrote to RUN/train.log, if any (read within bounds, first lines
    first: the warning comes when the config is loaded)."""
    from fcc_lt.util.errors import FccError
    from fcc_lt.util.files import open_input

    path = run_dir / "train.log"
    if not path.is_file():
        return None
    try:
        with open_input(path, "training log") as f:
            for _, line in zip(range(max_lines), f):
                if SHORT_WARNING.encode() in line:
                    text = line.decode("utf-8", "replace").strip()
                    start = text.find("train.epochs=")
                    text = text[start:] if start >= 0 else text
                    return text.split(". Results", 1)[0][:300]
    except (FccError, OSError):
        return None
    return None
