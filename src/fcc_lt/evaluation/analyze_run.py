"""`fcc analyze`: the analyses of ``fcc_lt.evaluation.analyses`` on one trained run -> ``analysis.json``.

It loads the run's checkpoint and data, computes the pooled features of the test split, of the training
images (eval mode, no augmentation: what the network makes of them, not what one training step saw) and of
the validation split when the run held one out, and writes ``analysis.json`` (``analysis_<checkpoint>.json``
for another checkpoint) into the run directory. It writes nothing else: eval.json, the checkpoints and every
other file of the run stay as they are.

The head analysed is the trained one (``eval.tau_norm`` is not applied). Each class's tau is the factor the
head saw in training, from the run's own config: ``fcc.enabled``, ``gamma``, ``rank_by`` and
``round_decimals`` over the protocol's training counts. A run whose FCC never started (``fcc.start_epoch``
after the checkpoint's epoch) trained its head on unscaled features: its tau is 1 for every class, as for a
run without FCC, and analysis.json says why.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from fcc_lt.config.schema import Config
from fcc_lt.data.build import build_eval_loader
from fcc_lt.data.class_stats import fcc_factors
from fcc_lt.evaluation import analyses as A
from fcc_lt.evaluation.evaluate import open_run
from fcc_lt.evaluation.files import write_json
from fcc_lt.evaluation.metrics import shot_groups
from fcc_lt.evaluation.passes import run_feature_stats
from fcc_lt.evaluation.tau_sweep import validation_problem
from fcc_lt.util.distributed import barrier
from fcc_lt.util.errors import ConfigError
from fcc_lt.util.precision import autocast_dtype

FORMAT = "fcc-analysis"
VERSION = 1


def last_trained_epoch(epoch: int | str | None, planned: int) -> int:
    """The last epoch the checkpoint's weights trained in: its finished epoch, the epoch it stopped inside,
    or (unknown, e.g. the original code's checkpoints) the config's ``train.epochs``."""
    if isinstance(epoch, int):
        return epoch
    if isinstance(epoch, str) and epoch.split(" ", 1)[0].isdigit():
        return int(epoch.split(" ", 1)[0])
    return planned


def head_factors(cfg: Config, train_counts: Sequence[int], epoch: int | str | None,
                 scale_invariant: bool = False) -> tuple[Tensor, dict[str, Any]]:
    """(C,) float64 tau of each class as the run's head saw it in training, and what decided it."""
    f = cfg.fcc
    ones = torch.ones(len(train_counts), dtype=torch.float64)
    if not f.enabled:
        return ones, {"enabled": False, "active": False, "note": "fcc.enabled is false: tau = 1 for every class"}
    info: dict[str, Any] = {"enabled": True, "gamma": f.gamma, "rank_by": f.rank_by,
                            "round_decimals": f.round_decimals, "start_epoch": f.start_epoch}
    last = last_trained_epoch(epoch, cfg.train.epochs)
    if last < f.start_epoch:
        return ones, {**info, "active": False,
                      "note": f"fcc.start_epoch {f.start_epoch} was never reached (the checkpoint trained up to epoch "
                              f"{last}): FCC scaled no feature, so the head trained on tau = 1 for every class"}
    tau = fcc_factors(train_counts, f.gamma, f.rank_by, f.round_decimals).double()
    info["active"] = True
    if scale_invariant:
        info["note"] = ("the head normalises its features, so FCC's factors changed nothing it saw; tau is given as "
                        "configured")
    return tau, info


def _stem(checkpoint: str) -> str:
    return "analysis" if checkpoint == "last" else f"analysis_{Path(checkpoint).stem}"


def analyze_run(run_dir: Path, cfg: Config, checkpoint: str = "last") -> dict[str, Any]:
    """Run every analysis on ``run_dir``'s ``checkpoint`` and write analysis[_<checkpoint>].json; returns it.

    Logit adjustment needs a validation split the run held out; without one it is refused (recorded in the
    file with the reason, and warned about), as `fcc eval --tau-sweep` refuses.
    """
    problem = validation_problem(run_dir, cfg)
    if problem is not None and problem[0] == "changed":
        raise ConfigError(f"fcc analyze: {problem[1]}")
    ctx, splits, run, stats = open_run(run_dir, cfg, checkpoint, command="fcc analyze")
    counts = list(stats.train_counts)
    num_classes = stats.num_classes
    if num_classes < 2:
        raise ConfigError(f"fcc analyze: {run_dir} has {num_classes} class; margins need two or more")
    amp = autocast_dtype(cfg.train.amp, ctx.device)

    def features(split: str) -> tuple[Tensor, Tensor]:
        loader = build_eval_loader(cfg, splits, splits.split(split), ctx)
        _, kept = run_feature_stats(run.network, loader, num_classes, ctx, amp, keep=True)
        assert kept is not None
        return kept[0].float().cpu(), kept[1].long().cpu()

    test_f, test_y = features("test")
    train_f, train_y = features("train")
    val = features("val") if problem is None else None
    result: dict[str, Any] = {}
    if ctx.is_main:
        head = A.AnalysisHead(run.network.head)
        tau, fcc_info = head_factors(cfg, counts, run.epoch, head.scale_invariant)
        e = cfg.eval
        groups = shot_groups(counts, e.many_shot_min, e.few_shot_max)
        logit, geometric = A.margins(head, test_f, test_y)
        no_affine = {"skipped": f"the {head.name} head has no affine form (logits = f W^T + b), so a distance "
                                "to the boundary between two classes is not defined in feature space"}
        result = {
            "format": FORMAT, "version": VERSION, "checkpoint": run.shown_path(), "epoch": run.epoch,
            "split": "test", "head": head.name,
            "head_note": (f"the trained head; eval.tau_norm {e.tau_norm:g} is not applied"
                          if e.tau_norm is not None else "the trained head"),
            "samples": {"test": len(test_y), "train": len(train_y), "val": len(val[1]) if val else None},
            "class_names": list(run.class_names or splits.class_names), "train_counts": counts,
            "shot_groups": {"many_min": e.many_shot_min, "few_max": e.few_shot_max,
                            "sizes": {g: len(v) for g, v in groups.items()}},
            "fcc": fcc_info,
            "units": "accuracies in percent; norms and geometric margins in feature units; logit margins in logits",
            "norm_ratio": A.norm_ratio(train_f, train_y, test_f, test_y, tau, groups),
            "margins": {"logit": A.margin_summary(logit, test_y, groups, num_classes),
                        "geometric": (A.margin_summary(geometric, test_y, groups, num_classes)
                                      if geometric is not None else no_affine)},
            "scale_sweep": A.scale_sweep(head, test_f, test_y, groups, num_classes),
            "oracle_factor": A.oracle_factor(head, test_f, test_y, tau, groups, num_classes),
        }
        if val is None:
            assert problem is not None
            reason = f"refused: {problem[1]}; train with data.val_per_class > 0 (or data.val_json) to choose t"
            result["logit_adjustment"] = {"skipped": reason}
            warnings.warn(f"fcc analyze: logit adjustment {reason}", stacklevel=2)
        else:
            result["logit_adjustment"] = A.logit_adjustment(head, val[0], val[1], test_f, test_y, counts, groups)
        path = run_dir / f"{_stem(checkpoint)}.json"
        write_json(path, result)
        tqdm.write(summary_line(run_dir, result))
    barrier(ctx)
    return result


def _num(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def summary_line(run_dir: Path, result: dict[str, Any]) -> str:
    """A few numbers of analysis.json, for the console."""
    ratio = result["norm_ratio"]
    logit = result["margins"]["logit"]["all"]
    oracle = result["oracle_factor"]
    sweep = result["scale_sweep"]
    la = result["logit_adjustment"]
    parts = [f"{run_dir}: norm ratio {_num(ratio['mean'], 3)}",
             f"logit margin median {_num(logit['median'], 3)} ({_num(logit['pct_negative'], 1)}% negative)",
             f"top1 {_num(oracle['unscaled']['top1'])}, with the oracle factor {_num(oracle['oracle']['top1'])}"]
    if "skipped" not in sweep:
        parts.append(f"best common scale {sweep['best_scale']:g}")
    parts.append(f"logit adjustment t={la['best_t']:g}: {_num(la['test']['top1'])}" if "skipped" not in la
                 else "logit adjustment refused (no validation split)")
    return "; ".join(parts)
