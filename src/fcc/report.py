"""Result tables from run directories: everything is read from their eval.json and config.yaml."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from fcc.errors import DataError

COLUMNS = ("top1", "top5", "many", "medium", "few")


def read_run(run_dir: Path, eval_file: str = "eval.json") -> dict[str, Any]:
    path = run_dir / eval_file
    if not path.is_file():
        raise DataError(f"{run_dir}: no {eval_file} (has the run finished? `fcc eval {run_dir}` writes it)")
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    cfg: dict[str, Any] = {}
    cfg_path = run_dir / "config.yaml"
    if cfg_path.is_file():
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
    return {"run": run_dir.name, "path": str(run_dir), "result": result, "config": cfg}


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


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


def table(run_dirs: Sequence[Path], fmt: str = "markdown", eval_file: str = "eval.json") -> str:
    rows = [read_run(Path(d), eval_file) for d in run_dirs]
    header = ["run", "method", "epochs", *COLUMNS]
    lines = []
    for row in rows:
        cfg, res = row["config"], row["result"]
        lines.append([row["run"], describe_method(cfg), _fmt(res.get("epoch")),
                      *(_fmt(res.get(c)) for c in COLUMNS)])
    if fmt == "csv":
        return "\n".join(",".join(c.replace(",", ";") for c in r) for r in [header, *lines]) + "\n"
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in lines]
    return "\n".join(out) + "\n"
