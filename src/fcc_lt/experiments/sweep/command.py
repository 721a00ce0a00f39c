"""`fcc sweep SPEC.yaml`: train a grid of configs x overrides x seeds, resumably.

The spec is read and every run's config resolved and validated (sweep.spec, sweep.plan) before anything
is trained; the runs then go one or several at a time on this machine (``--parallel N``, sweep.local; the
CPU cores are split between them, a GPU is shared), or onto SLURM through submitit (``--executor slurm``,
sweep.slurm). The spec format and every option are described in docs/sweeps.md.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from fcc_lt.experiments.run_folder import RunFileError, read_sweep_record
from fcc_lt.experiments.sweep.local import ProcessPool
from fcc_lt.experiments.sweep.plan import (
    LOG_NAME,
    Planned,
    duplicate_note,
    expand,
    plan,
    refusal,
    spec_differences,
    write_record,
)
from fcc_lt.experiments.sweep.processes import threads_per_run
from fcc_lt.experiments.sweep.spec import Spec, load_spec, run_count
from fcc_lt.util.errors import ConfigError, FccError

EXECUTORS = ("process", "slurm", "local")
DEFAULT_MAX_RUNS = 1000


def prepare_datasets(todo: list[Planned], stream: TextIO, strict: bool) -> None:
    """Fetch (download and extract) each CIFAR dataset the runs need once, here, before they start: runs
    starting together would otherwise all download into the same data.root at once. A failure is an
    error when ``strict`` (the runs run here and would fail the same way), else a note (SLURM jobs may
    see a data.root this machine does not)."""
    import warnings

    from fcc_lt.data.cifar import SPECS, locate

    seen: set[tuple[str, Path]] = set()
    for p in todo:
        data = p.run.resolved.get("data") or {}
        key = data.get("dataset")
        if key not in SPECS:
            continue
        root = Path(str(data.get("root", "data"))).expanduser()
        if (key, root) in seen or (root / SPECS[key].folder).is_dir():
            continue
        seen.add((key, root))
        stream.write(f"fetching {SPECS[key].name} into {root} once, before the runs start\n")
        stream.flush()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                locate(SPECS[key], root, bool(data.get("download", True)))
        except FccError as err:
            if strict:
                raise
            stream.write(f"note: {err}; each job will look for it itself\n")


# ---------------------------------------------------------------------------------------------- main


@dataclass
class SweepOptions:
    """The command-line options of `fcc sweep` (see fcc_lt.cli.experiments)."""

    parallel: int | None = None  # None: 1 on this machine, no limit on SLURM
    dry_run: bool = False
    rerun_changed: bool = False
    executor: str = "process"
    gpus: list[str] | None = None
    no_wait: bool = False
    slurm: dict[str, Any] = field(default_factory=dict)  # --slurm-* options given, over the spec's slurm:
    max_runs: int = DEFAULT_MAX_RUNS  # --max-runs: a spec that makes more runs is refused before it is expanded


def check_size(spec: Spec, limit: int) -> None:
    """Refuse a spec that makes more than ``limit`` runs, counted from its lists before any run is expanded
    (every run's config is resolved and checked before the first starts, so a grid of hundreds of
    thousands would otherwise take hours before a plan, a refusal or a first run)."""
    total, parts = run_count(spec)
    if total > limit:
        raise ConfigError(f"{spec.path}: the spec makes {total} runs ({parts}), more than the limit of {limit}; "
                          f"make the grid smaller, or pass --max-runs {total} to sweep them all")


def parse_gpus(text: str | None) -> list[str] | None:
    if text is None:
        return None
    gpus = [g.strip() for g in text.split(",") if g.strip()]
    if not gpus or not all(re.fullmatch(r"\d+|[A-Za-z0-9-]+", g) for g in gpus):
        raise ConfigError(f"--gpus: expected comma-separated GPU ids such as 0,1, got {text!r}")
    return gpus


def run_sweep(spec_path: Path, options: SweepOptions, stream: TextIO | None = None) -> int:
    """Validate the spec and every run's config, plan, then train what is left; returns the exit status
    (0 all good, 1 some run failed, 128+N stopped by signal N, 2 for a bad spec through ConfigError)."""
    from fcc_lt.experiments.sweep.display import Display, print_plan, summary

    stream = stream or sys.stdout
    if options.parallel is not None and options.parallel < 1:
        raise ConfigError(f"--parallel: expected an integer >= 1, got {options.parallel}")
    if options.executor not in EXECUTORS:
        raise ConfigError(f"--executor: expected one of {', '.join(EXECUTORS)}, got {options.executor!r}")
    if options.no_wait and options.executor != "slurm":
        raise ConfigError("--no-wait needs --executor slurm (local runs end with the sweep that runs them)")
    if options.gpus and options.executor != "process":
        raise ConfigError("--gpus is for --executor process; on SLURM ask for GPUs with --slurm-gpus")
    spec = load_spec(spec_path)
    check_size(spec, options.max_runs)
    slurm_options: dict[str, Any] = {}
    if options.executor != "process":
        from fcc_lt.experiments.sweep.slurm import check_options, require_submitit

        slurm_options = check_options(spec, options.slurm, options.executor)
        require_submitit(options.executor)
    runs = expand(spec)
    record_note = []
    try:
        previous = read_sweep_record(spec.out)
    except RunFileError as err:  # the run directories are what counts; the record is rewritten below
        previous, record_note = None, [f"{err}; the previous record is ignored (each run directory's own files "
                                       "decide) and replaced"]
    jobs = dict((previous or {}).get("jobs") or {})
    planned = plan(spec, runs, rerun_changed=options.rerun_changed, executor=options.executor, jobs=jobs)
    notes = record_note + spec_differences(previous, spec, runs) + duplicate_note(planned)
    refused = refusal(spec, planned)
    if options.dry_run:
        print_plan(spec, planned, notes, stream, commands=True)
        if refused is not None:
            raise refused
        return 0
    if refused is not None:
        raise refused
    write_record(spec, runs, previous, jobs)
    todo = [p for p in planned if p.action in ("train", "retrain", "resume", "attach")]
    parallel = options.parallel or 1
    threads = threads_per_run(parallel)
    display = Display(stream, planned)
    print_plan(spec, planned, notes, stream, commands=False, interactive=display.interactive)
    if not todo:
        summary(spec, planned, {}, stream, None)
        return 0
    prepare_datasets(todo, stream, strict=options.executor != "slurm")
    if options.executor == "process":
        user_threads = os.environ.get("OMP_NUM_THREADS")
        where = (f"OMP_NUM_THREADS={user_threads} each (from the environment)" if user_threads else
                 f"{threads} CPU thread(s) each (OMP_NUM_THREADS)")
        if options.gpus:
            where += f", on GPUs {','.join(options.gpus)} in turn"
        stream.write(f"{min(parallel, len(todo))} run(s) at a time, {where}; logs in RUN_DIR/{LOG_NAME}\n")
        stream.flush()
        pool = ProcessPool(parallel, display, options.gpus, threads)
        display.begin()
        try:
            outcomes = pool.run(todo)
        finally:
            display.close()
        stop = pool.stop_signal
    else:
        from fcc_lt.experiments.sweep.slurm import run_with_submitit

        def remember(submitted: dict[str, dict[str, Any]]) -> None:
            jobs.update(submitted)
            write_record(spec, runs, previous, jobs)

        outcomes, stop = run_with_submitit(spec, todo, options, slurm_options, display, remember, threads)
        if outcomes is None:  # --no-wait: submitted, not watched
            return 0
    summary(spec, planned, outcomes, stream, stop)
    if stop is not None:
        return 128 + stop
    return 1 if any(o.state == "failed" for o in outcomes.values()) else 0
