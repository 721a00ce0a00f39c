"""The one table of benchmarks/gpu_check.sh, from what its phases left in the work folder.

    python benchmarks/gpu_check_table.py WORK [--out TABLE.md]

WORK holds ``env.txt``, ``pytest.log``, ``reference.json`` (benchmarks/reference_step.py --json), the
run directories ``c10/``, ``c100/``, ``c10_fp32_eager/`` and the sweep's ``parallel/``, and beside each
command's output a folder ``NAME.time/`` with its ``log`` and the ``start``/``end``/``rc`` files the
script writes around it; ``throughput.txt`` (benchmarks/train_throughput.py). A phase that did not run
(skipped for time, or failed) shows as such; nothing is made up.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path
from typing import Any

SPEED = re.compile(r"^speed: (.+)$", re.MULTILINE)
COMPILED = re.compile(r"compiled the training forward and backward \(mode ([\w-]+)\) in ([\d.]+) s")


def read(path: Path) -> str | None:
    return path.read_text(errors="replace") if path.is_file() else None


def seconds(folder: Path) -> float | None:
    start, end = read(folder / "start"), read(folder / "end")
    return float(end) - float(start) if start and end else None


def run_summary(run: Path) -> dict[str, Any]:
    """Wall-clock, exit status, compile time, the sum of epoch times and the final top-1 of one run (its
    times and log in RUN.time/, or for a sweep's run its own train.log)."""
    meta = run.with_name(run.name + ".time")
    out: dict[str, Any] = {"wall": seconds(meta), "rc": (read(meta / "rc") or "").strip() or None}
    log = read(meta / "log") or read(run / "train.log") or ""
    found = COMPILED.findall(log)
    out["compile"] = sum(float(s) for _, s in found) if found else None
    out["mode"] = found[0][0] if found else None
    plan = SPEED.findall(log)
    out["plan"] = plan[0] if plan else None
    metrics = read(run / "metrics.jsonl")
    if metrics:
        records = [json.loads(line) for line in metrics.splitlines() if line.strip()]
        out["epochs"] = len(records)
        out["train_time"] = sum(r.get("epoch_time") or 0.0 for r in records)
        out["median_epoch"] = statistics.median(r["epoch_time"] for r in records if r.get("epoch_time"))
    result = read(run / "eval.json")
    out["top1"] = json.loads(result)["top1"] if result else None
    return out


def fmt(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    return "n/a" if value is None else f"{format(value, spec)}{unit}"


def run_row(name: str, run: Path, goal: str = "") -> str:
    s = run_summary(run)
    if s["wall"] is None:
        return f"| {name} | not run | {goal} |"
    status = "" if s["rc"] in (None, "0") else f" **exit {s['rc']}**"
    compile_s = s["compile"]
    apart = s["wall"] - compile_s if compile_s is not None else None
    return (f"| {name} ({s['plan'] or 'plan not logged'}) | {fmt(s['wall'])} s wall{status}; "
            f"compile {fmt(compile_s)} s (mode {s['mode'] or 'eager'}); "
            f"wall without compile {fmt(apart)} s; {s.get('epochs', 0)} epochs, sum of epoch times "
            f"{fmt(s.get('train_time'))} s (median epoch {fmt(s.get('median_epoch'), '.3f')} s); test top-1 "
            f"{fmt(s['top1'], '.2f')} | {goal} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    w = args.work
    rows = ["| check | result | goal |", "|---|---|---|"]
    env = read(w / "env.txt")
    if env:
        rows.append(f"| machine | {' '.join(env.split())} | |")

    log = read(w / "pytest.log")
    if log is None:
        rows.append("| CUDA tests (`pytest -m cuda`) | not run | all pass |")
    else:
        summary = [line for line in log.splitlines() if re.search(r"\d+ (passed|failed|errors?|skipped)", line)]
        rows.append(f"| CUDA tests (`pytest -m cuda`) | {summary[-1].strip('= ') if summary else 'no summary'} "
                    f"| all pass |")

    ref = read(w / "reference.json")
    if ref is None:
        rows.append("| reference-style step vs fcc's full step | not run | fcc >= 30x |")
    else:
        r = json.loads(ref)
        rates = r["images_per_s"]
        names = list(rates)
        base = rates[names[0]]
        parts = "; ".join(f"{k}: {v:,.0f} images/s ({v / base:.1f}x)" for k, v in rates.items())
        rows.append(f"| reference-style step vs fcc's full step (same process, alternating rounds) | {parts}; "
                    f"compile {fmt(r.get('compile_seconds'))} s | fcc >= 30x |")

    rows.append(run_row("CIFAR-10-LT IF 100, ResNet-32, eval every 10 and at the end",
                        w / "c10"))
    rows.append(run_row("CIFAR-100-LT IF 100 shapes (CIFAR-10 relabelled), ResNet-32, eval every 10 and at the end",
                        w / "c100", "<= 60 s wall, aim 20 s"))
    rows.append(run_row("CIFAR-10-LT, fp32 eager NCHW (accuracy reference; ran beside the CUDA tests, so its time "
                        "is not a benchmark)", w / "c10_fp32_eager"))

    par = w / "parallel"
    wall = seconds(w / "parallel.time")
    single = run_summary(w / "c10")["wall"]
    if wall is None:
        rows.append("| 8 concurrent CIFAR-10-LT runs (`fcc sweep --parallel 8`) | not run | far below 8x one run |")
    else:
        runs = sorted(p for p in par.glob("*__seed*") if p.is_dir())
        tops = [t for t in (run_summary(p)["top1"] for p in runs) if t is not None]
        rc = (read(w / "parallel.time" / "rc") or "").strip()
        ratio = (f"{wall / (8 * single):.2f} of 8x one run ({fmt(8 * single)} s)" if single
                 else "no single run to compare")
        noise = (f"test top-1 over {len(tops)} seeds: mean {statistics.mean(tops):.2f}, sd "
                 f"{statistics.stdev(tops):.2f}" if len(tops) > 1 else f"{len(tops)} finished")
        rows.append(f"| 8 concurrent CIFAR-10-LT runs (`fcc sweep --parallel 8`, seeds 1-8) | {wall:.1f} s wall "
                    f"(exit {rc}) = {ratio}; {noise} | far below 8x one run |")
        eager = run_summary(w / "c10_fp32_eager")["top1"]
        fast = run_summary(w / "c10")["top1"]
        if eager is not None and fast is not None and len(tops) > 1:
            sd = statistics.stdev([*tops, fast])
            verdict = "within" if abs(eager - fast) <= 2 * sd * 2 ** 0.5 else "OUTSIDE"
            rows.append(f"| accuracy: fp32 eager vs bf16 compiled, seed 0 | {eager:.2f} vs {fast:.2f} (difference "
                        f"{eager - fast:+.2f}; seed sd {sd:.2f}: {verdict} 2 sd of a difference of two runs) "
                        f"| within seed noise |")

    dec = read(w / "decode.txt")
    if dec:
        for line in dec.splitlines():
            if line.startswith("per CPU-second"):
                rows.append(f"| image path: decode + transform, one process | {line} | |")
            elif line.startswith("| ") and "workers" not in line and not line.startswith("|---"):
                cells = [c.strip() for c in line.strip("|").split("|")]
                rows.append(f"| image path: {cells[0]}, {cells[1]} workers | {cells[2]} images/s | |")
    thr = read(w / "throughput.txt")
    if thr:
        table = [line for line in thr.splitlines() if line.startswith("| ") and "images/s" not in line
                 and not line.startswith("|---")]
        for line in table:
            cells = [c.strip() for c in line.strip("|").split("|")]
            goal = {"full": "the best full step >= 0.95", "eval": "best >= 3x the best full step"}.get(
                cells[0].split()[0].replace("evaluation,", "eval"), "")
            rows.append(f"| train_throughput: {cells[0]} | {cells[1]} images/s ({cells[2]} of the fastest "
                        f"model-only step) | {goal} |")
    for line in (thr or "").splitlines():
        if line.startswith(("full step / fastest", "evaluation / training", "compile:", "device ")):
            rows.append(f"| train_throughput | {line} | |")
    text = "\n".join(rows) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
