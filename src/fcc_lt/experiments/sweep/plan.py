"""`fcc sweep SPEC.yaml`: train a grid of configs x overrides x seeds, resumably.

Every run of a sweep is an ordinary run directory, ``OUT/<config name>[__<key>-<value>...]__seed<S>``,
trained by its own ``python -m fcc_lt train CONFIG OVERRIDES... seed=S out=RUN_DIR`` process with its output
in ``RUN_DIR/train.log``. Because the names are deterministic and a run's state is read from its files
(fcc_lt.experiments.run_folder), running the same sweep again continues it: finished runs are skipped, stopped ones are
resumed with ``fcc train --resume``, runs another process is training are left alone, and a run
directory whose config differs from what the spec asks for now is refused, naming the keys (or trained
again from scratch with ``--rerun-changed``). The spec and every run's overrides are recorded in
``OUT/sweep.json``.

Runs go one or several at a time on this machine (``--parallel N``; the CPU cores are split between them,
a GPU is shared), or onto SLURM through submitit (``--executor slurm``, see fcc_lt.experiments.sweep.slurm). The
spec format and every option are described in docs/sweeps.md.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import yaml

from fcc_lt.experiments.run_folder import RunStatus, read_config, run_status
from fcc_lt.experiments.sweep.processes import (
    Outcome,
    child_env,
    failure_line,
    open_log,
    stop_signals,
    threads_per_run,
)
from fcc_lt.util.errors import ConfigError, FccError
from fcc_lt.util.files import read_input_text
from fcc_lt.util.typecheck import suggest

SPEC_KEYS = ("out", "configs", "seeds", "overrides", "grid", "slurm")
SLURM_KEYS = ("partition", "time", "gpus", "cpus", "mem_gb", "account", "qos", "constraint", "setup",
              "additional", "signal_delay_s")
EXECUTORS = ("process", "slurm", "local")
RECORD = "sweep.json"
LOG_NAME = "train.log"
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_MAX_VALUE_CHARS = 40
_MAX_NAME_CHARS = 200


# ------------------------------------------------------------------------------------------------ spec


@dataclass(frozen=True)
class ConfigEntry:
    """One entry of ``configs:``: a config file and the name its runs start with."""

    path: str
    name: str
    where: str  # "configs[0]", for error messages


@dataclass
class Spec:
    """A validated sweep spec (see docs/sweeps.md)."""

    path: Path
    raw: dict[str, Any]
    out: Path
    configs: list[ConfigEntry]
    seeds: list[int]
    overrides: list[str]
    grid: dict[str, list[Any]]
    slurm: dict[str, Any] = field(default_factory=dict)


def yaml_value(value: Any) -> str:
    """``value`` as the YAML text of a ``key=value`` override that reads back as the same value
    (strings that would read as numbers or booleans are quoted; lists and mappings in flow style)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False).strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")].strip()
    elif text == "...":
        text = ""
    return text


def _spec_error(spec: Path, where: str, message: str) -> ConfigError:
    return ConfigError(f"{spec}: {where}: {message}")


def load_spec(path: Path) -> Spec:
    """Read and validate a sweep spec; every problem is a ConfigError naming the file and the key."""
    from fcc_lt.config.load import parse_override, parse_yaml

    path = Path(path)
    source = read_input_text(path, "sweep spec", ConfigError)
    raw = parse_yaml(source, f"{path}: not valid YAML")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a sweep spec is a mapping with the keys {', '.join(SPEC_KEYS)}, "
                          f"got {type(raw).__name__}")
    for key in raw:
        if key not in SPEC_KEYS:
            raise ConfigError(f"{path}: unknown key {key!r}{suggest(str(key), SPEC_KEYS)} (a sweep spec has "
                              f"{', '.join(SPEC_KEYS)})")

    out = raw.get("out", f"runs/sweeps/{path.stem}")
    if not isinstance(out, str) or not out.strip():
        raise _spec_error(path, "out", f"expected the folder the runs go into, got {out!r}")

    configs = _spec_configs(path, raw.get("configs"))

    seeds = raw.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds:
        raise _spec_error(path, "seeds", f"expected a non-empty list of seeds such as [0, 1, 2], got {seeds!r}")
    for i, seed in enumerate(seeds):
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise _spec_error(path, f"seeds[{i}]", f"expected a non-negative integer, got {seed!r}")
        if seed in seeds[:i]:
            raise _spec_error(path, f"seeds[{i}]", f"seed {seed} is listed twice")

    overrides = raw.get("overrides", [])
    if isinstance(overrides, str):
        overrides = [overrides]
    if overrides is None:
        overrides = []
    if not isinstance(overrides, list):
        raise _spec_error(path, "overrides", "expected a list of key.sub=value strings, e.g. "
                          f"[train.epochs=30, data.root=data/cifar10], got {type(overrides).__name__}")
    override_keys: dict[str, str] = {}
    for i, text in enumerate(overrides):
        where = f"overrides[{i}]"
        if isinstance(text, dict):
            raise _spec_error(path, where, "expected a 'key.sub=value' string, got a mapping (write "
                              "`- train.epochs=30`, not `- train.epochs: 30`)")
        if not isinstance(text, str):
            raise _spec_error(path, where, f"expected a 'key.sub=value' string, got {text!r}")
        try:
            keys, _ = parse_override(text)
        except ConfigError as err:
            raise _spec_error(path, where, str(err)) from None
        key = ".".join(keys)
        _reserved(path, where, key)
        if key in override_keys:
            raise _spec_error(path, where, f"{key} is already set by {override_keys[key]}")
        override_keys[key] = where

    grid = raw.get("grid") or {}
    if not isinstance(grid, dict):
        raise _spec_error(path, "grid", "expected a mapping of key -> list of values, e.g. "
                          f"{{fcc.gamma: [0.5, 1.0]}}, got {type(grid).__name__}")
    for key, values in grid.items():
        where = f"grid[{key!r}]"
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise _spec_error(path, where, "not a dotted config key such as fcc.gamma")
        _reserved(path, where, key)
        if key in override_keys:
            raise _spec_error(path, where, f"{key} is also set by {override_keys[key]}; give it in one place")
        if not isinstance(values, list) or not values:
            raise _spec_error(path, where, f"expected a non-empty list of values, e.g. [0.5, 1.0], got {values!r}")
        texts = []
        for j, value in enumerate(values):
            text = yaml_value(value)
            if parse_yaml(text, f"{path}: {where}[{j}]") != value:
                raise _spec_error(path, f"{where}[{j}]", f"{value!r} cannot be passed as a key=value override")
            if text in texts:
                raise _spec_error(path, f"{where}[{j}]", f"the value {text} is listed twice")
            texts.append(text)

    slurm = raw.get("slurm") or {}
    if not isinstance(slurm, dict):
        raise _spec_error(path, "slurm", f"expected a mapping of SLURM options, got {type(slurm).__name__}")
    if isinstance(slurm.get("time"), int) and ":" in (_plain_scalar(source, "slurm", "time") or ""):
        slurm["time"] = _plain_scalar(source, "slurm", "time")  # YAML 1.1 reads 4:00:00 as the integer 14400
    for key in slurm:
        if key not in SLURM_KEYS:
            raise _spec_error(path, f"slurm.{key}", f"unknown SLURM option{suggest(str(key), SLURM_KEYS)} "
                              f"(known: {', '.join(SLURM_KEYS)})")
    return Spec(path, raw, Path(out), configs, list(seeds), list(overrides), dict(grid), dict(slurm))


def _plain_scalar(text: str, *keys: str) -> str | None:
    """The text of the plain scalar at ``keys`` in a YAML document (composed, never constructed)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            return None
        node = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)
    return node.value if isinstance(node, yaml.ScalarNode) and node.style is None else None


def _reserved(path: Path, where: str, key: str) -> None:
    if key == "seed":
        raise _spec_error(path, where, "seed is set by the sweep: list the seeds under `seeds:`")
    if key == "out":
        raise _spec_error(path, where, "out is set by the sweep: every run goes to OUT/<run name>; set the "
                          "sweep's folder with `out:`")


def _spec_configs(path: Path, entries: Any) -> list[ConfigEntry]:
    if entries is None:
        raise ConfigError(f"{path}: 'configs' is missing: list the config files to train, e.g. "
                          "configs: [configs/cifar10_lt/ce_if100.yaml, configs/cifar10_lt/ce_fcc_if100.yaml]")
    if isinstance(entries, str):
        entries = [entries]
    if not isinstance(entries, list) or not entries:
        raise _spec_error(path, "configs", f"expected a non-empty list of config files, got {entries!r}")
    out: list[ConfigEntry] = []
    names: dict[str, ConfigEntry] = {}
    for i, entry in enumerate(entries):
        where = f"configs[{i}]"
        name = None
        if isinstance(entry, dict):
            for key in entry:
                if key not in ("config", "name"):
                    raise _spec_error(path, f"{where}.{key}", f"unknown key{suggest(str(key), ['config', 'name'])}"
                                      " (an entry is a file name, or {config: FILE, name: NAME})")
            config, name = entry.get("config"), entry.get("name")
        else:
            config = entry
        if not isinstance(config, str) or not config.strip():
            raise _spec_error(path, where, f"expected a config file name, got {config!r}")
        if not Path(config).is_file():
            raise _spec_error(path, where, f"config file {config!r} not found (relative paths are taken from "
                              f"the current directory, {Path.cwd()})")
        if name is None:
            name = _UNSAFE.sub("_", Path(config).stem).strip("_") or "config"
        elif not isinstance(name, str) or not _NAME.fullmatch(name):
            raise _spec_error(path, f"{where}.name", f"expected letters, digits and ._+- (it names run "
                              f"directories), got {name!r}")
        if name in names:
            other = names[name]
            raise _spec_error(path, where, f"its runs would be named {name!r} like those of {other.where} "
                              f"({other.path}); give one of them a name: `- {{config: {config}, name: NAME}}`")
        names[name] = ConfigEntry(config, name, where)
        out.append(names[name])
    return out


# ------------------------------------------------------------------------------------------------ runs


@dataclass
class Run:
    """One run of a sweep: its name, directory, and the `fcc train` arguments that make it."""

    name: str
    run_dir: Path
    config: str
    seed: int
    grid: dict[str, Any]
    overrides: list[str]  # everything after CONFIG on the `fcc train` command line
    epochs: int
    resolved: dict[str, Any]  # the resolved config as its config.yaml will hold it, without `out`

    @property
    def log_path(self) -> Path:
        return self.run_dir / LOG_NAME

    def command(self, action: str) -> list[str]:
        """The `fcc train` arguments of an action: train, retrain (from scratch) or resume."""
        if action == "resume":
            return ["train", "--resume", str(self.run_dir)]
        return ["train", self.config, *self.overrides, *(["--overwrite"] if action == "retrain" else [])]

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "dir": str(self.run_dir), "config": self.config, "seed": self.seed,
                "grid": self.grid, "overrides": self.overrides,
                "command": shlex.join(["fcc", *self.command("train")])}


def value_slug(value: Any) -> str:
    """A grid value as part of a directory name: characters other than letters, digits and ._+- become
    '_'; a long value is cut and completed by a hash of the whole, so names stay short and distinct."""
    import hashlib

    text = yaml_value(value)
    slug = _UNSAFE.sub("_", text).strip("_") or "empty"
    if len(slug) > _MAX_VALUE_CHARS:
        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
        slug = f"{slug[: _MAX_VALUE_CHARS - 9]}-{digest}"
    return slug


def expand(spec: Spec) -> list[Run]:
    """Every run of the spec (seed by seed, so a sweep stopped early has comparable sets), each config
    resolved and validated with fcc_lt.config.load.load_config before anything is trained."""
    from fcc_lt.config.load import load_config

    origins = {text: f"overrides[{i}]" for i, text in enumerate(spec.overrides)}
    runs: list[Run] = []
    names: dict[str, dict[str, Any]] = {}
    fcc_log = logging.getLogger("fcc")
    level = fcc_log.level
    fcc_log.setLevel(logging.WARNING)  # the schedule-rescaling note, once per run, is for train.log
    try:
        for seed in spec.seeds:
            for entry in spec.configs:
                for combo in itertools.product(*spec.grid.values()):
                    point = dict(zip(spec.grid, combo))
                    name = "__".join([entry.name, *(f"{k}-{value_slug(v)}" for k, v in point.items()),
                                      f"seed{seed}"])
                    if len(name) > _MAX_NAME_CHARS:
                        raise ConfigError(f"{spec.path}: the run name {name[:60]}... is longer than "
                                          f"{_MAX_NAME_CHARS} characters; use fewer grid keys or shorter values")
                    key = f"{entry.name}/{seed}"
                    if name in names and names[name] != {"config": key, **point}:
                        raise ConfigError(f"{spec.path}: grid: the values {names[name]} and {point} give the same "
                                          f"run directory {spec.out / name} (characters other than letters, "
                                          "digits and ._+- are replaced by '_'); make the values distinct")
                    names[name] = {"config": key, **point}
                    run_dir = spec.out / name
                    grid_overrides = [f"{k}={yaml_value(v)}" for k, v in point.items()]
                    for k, text in zip(point, grid_overrides):
                        origins[text] = f"grid[{k!r}]"
                    overrides = [*spec.overrides, *grid_overrides, f"seed={seed}", f"out={yaml_value(str(run_dir))}"]
                    try:
                        cfg = load_config(entry.path, overrides)
                    except FccError as err:
                        raise ConfigError(_where_from(spec, entry, name, str(err), origins)) from None
                    resolved = yaml.safe_load(cfg.dump())
                    resolved.pop("out", None)
                    runs.append(Run(name, run_dir, entry.path, seed, point, overrides, cfg.train.epochs, resolved))
    finally:
        fcc_log.setLevel(level)
    return runs


def _where_from(spec: Spec, entry: ConfigEntry, name: str, message: str, origins: dict[str, str]) -> str:
    """Prefix a config error with the spec entry it comes from (an override or grid value if it names one)."""
    for text, where in origins.items():
        if f"override {text!r}" in message:
            return f"{spec.path}: {where}: {message}"
    return f"{spec.path}: {entry.where} ({entry.path}), run {name}: {message}"


# ------------------------------------------------------------------------------------ changed configs


def config_changes(stored: dict[str, Any], wanted: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, stored value, wanted value) for every key where a run's config.yaml differs from the config the
    spec resolves to now. ``out`` is the directory itself and not compared. A key this version of fcc does
    not know is ignored, and so is a key the stored config lacks when the wanted value is the default (the
    run was written before the key existed and behaved as the default)."""
    from fcc_lt.config.schema import Config, all_keys, flat_keys

    keys = all_keys()
    leaves = {k for k in keys if not any(o.startswith(k + ".") for o in keys)}  # sections excluded
    defaults = flat_keys(Config().to_dict())
    old, new = flat_keys(stored), flat_keys(wanted)

    def known(key: str) -> bool:
        parts = key.split(".")
        return any(".".join(parts[:i]) in leaves for i in range(1, len(parts) + 1))

    absent = "(absent)"
    changes = []
    for key in [*new, *(k for k in old if k not in new)]:
        if key == "out" or not known(key):
            continue
        if key not in old:
            if key in defaults and new[key] == defaults[key]:
                continue
            changes.append((key, absent, new[key]))
        elif key not in new:
            if old[key] == {} and any(k.startswith(key + ".") for k in new):
                continue  # an empty mapping now filled: its new keys are listed instead
            changes.append((key, old[key], absent))
        elif old[key] != new[key]:
            changes.append((key, old[key], new[key]))
    return changes


def _show(value: Any) -> str:
    text = value if value == "(absent)" else yaml_value(value)
    return text if len(text) <= 40 else text[:37] + "..."


def describe_changes(changes: list[tuple[str, Any, Any]], limit: int = 6) -> str:
    shown = [f"{k} {_show(a)} -> {_show(b)}" for k, a, b in changes[:limit]]
    more = f" and {len(changes) - limit} more" if len(changes) > limit else ""
    return "; ".join(shown) + more


# ---------------------------------------------------------------------------------------------- plan


@dataclass
class Planned:
    """What the sweep does with one run now: train, retrain, resume, attach (to a queued SLURM job) or skip."""

    run: Run
    status: RunStatus
    action: str
    reason: str = ""
    changes: list[tuple[str, Any, Any]] = field(default_factory=list)
    job_id: str | None = None


def plan(spec: Spec, runs: list[Run], *, rerun_changed: bool, executor: str,
         jobs: dict[str, Any] | None = None) -> list[Planned]:
    """Decide every run's action from its directory (experiments.run_folder) and any SLURM job recorded
    for it."""
    from fcc_lt.experiments.sweep.slurm import active_job_states

    job_states = active_job_states(jobs or {}, spec.out)
    planned = []
    for run in runs:
        status = run_status(run.run_dir)
        stored = read_config(run.run_dir) if status.state != "missing" else None
        changes = config_changes(stored, run.resolved) if stored is not None else []
        job_state = job_states.get(run.name) if status.state not in ("finished", "running") else None
        if status.state == "running":
            note = f"; its config differs from the spec: {describe_changes(changes)}" if changes else ""
            p = Planned(run, status, "skip", f"running (another process holds {run.run_dir / '.lock'}){note}",
                        changes)
        elif job_state is not None:
            action = "attach" if executor == "slurm" else "skip"
            job_id = str((jobs or {})[run.name]["job_id"])
            p = Planned(run, status, action, f"queued on SLURM as job {job_id} ({job_state})", job_id=job_id)
        elif changes and status.state != "empty":
            p = Planned(run, status, "retrain" if rerun_changed else "refuse",
                        f"{status.state}, but its config differs from the spec: {describe_changes(changes)}", changes)
        elif status.state == "finished":
            p = Planned(run, status, "skip", f"finished ({status.epoch}/{status.epochs} epochs)")
        elif status.state == "stopped":
            p = Planned(run, status, "resume", status.detail)
        else:
            p = Planned(run, status, "train", "new" if status.state == "missing" else status.detail)
        planned.append(p)
    return planned


def refusal(spec: Spec, planned: list[Planned]) -> ConfigError | None:
    """The error for runs whose directories hold another config than the spec asks for, if any."""
    refused = [p for p in planned if p.action == "refuse"]
    if not refused:
        return None
    lines = [f"  {p.run.run_dir}: {describe_changes(p.changes)}" for p in refused]
    return ConfigError(f"{spec.path}: {len(refused)} run(s) in {spec.out} were started with another config than "
                       "the spec asks for now:\n" + "\n".join(lines) + "\nRestore the spec, choose another `out:`, "
                       "or pass --rerun-changed to train them again from scratch (their checkpoints, metrics "
                       "and results are replaced)")


# -------------------------------------------------------------------------------------------- record


def read_record(out: Path) -> dict[str, Any] | None:
    """OUT/sweep.json of an earlier sweep, or None when absent or unreadable."""
    try:
        data = json.loads((out / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def spec_differences(previous: dict[str, Any] | None, spec: Spec, runs: list[Run]) -> list[str]:
    """Notes on how the spec differs from the one recorded in OUT/sweep.json by the previous sweep."""
    if previous is None or not isinstance(previous.get("spec"), dict):
        return []
    old_spec = previous["spec"]
    now = json.loads(json.dumps(spec.raw, default=str))  # as sweep.json holds it
    keys = [k for k in SPEC_KEYS if old_spec.get(k) != now.get(k)]
    if not keys:
        return []
    old_runs = [r.get("name") for r in previous.get("runs", []) if isinstance(r, dict)]
    names = {r.name for r in runs}
    added = [r.name for r in runs if r.name not in old_runs]
    removed = [n for n in old_runs if n not in names]
    notes = [f"the spec differs from the one recorded in {spec.out / RECORD} in: {', '.join(keys)}"]
    if added:
        notes.append(f"{len(added)} run(s) added: {', '.join(added[:8])}{' ...' if len(added) > 8 else ''}")
    if removed:
        notes.append(f"{len(removed)} run(s) no longer in the spec (their directories are left as they are): "
                     f"{', '.join(str(n) for n in removed[:8])}{' ...' if len(removed) > 8 else ''}")
    return notes


def write_record(spec: Spec, runs: list[Run], previous: dict[str, Any] | None, jobs: dict[str, Any]) -> None:
    """OUT/sweep.json: the spec and every run's resolved overrides (and SLURM jobs), written atomically."""
    from fcc_lt.util.files import atomic_write_text

    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record = {
        "format": "fcc-sweep", "version": 1, "spec_file": str(spec.path), "spec": spec.raw,
        "created": (previous or {}).get("created", now), "updated": now,
        "runs": [r.record() for r in runs],
        "jobs": {name: job for name, job in jobs.items() if name in {r.name for r in runs}},
    }
    atomic_write_text(spec.out / RECORD, json.dumps(record, indent=2, default=str) + "\n")


# ------------------------------------------------------------------------------------ local processes


class ProcessPool:
    """Runs planned runs as `python -m fcc_lt train` processes on this machine, ``parallel`` at a time.

    The processes get sessions of their own, so a Ctrl-C reaches the sweep only, which passes it on once
    (each run then saves a checkpoint and exits) and waits; a second Ctrl-C kills them (they resume from
    their last epoch checkpoint)."""

    def __init__(self, parallel: int, display: Any, gpus: list[str] | None = None,
                 threads: int | None = None, poll_s: float = 0.2) -> None:
        self.parallel = parallel
        self.display = display
        self.gpus = gpus or []
        self.threads = threads
        self.poll_s = poll_s
        self.stop_signal: int | None = None
        self._active: dict[int, tuple[Planned, subprocess.Popen[bytes], float]] = {}

    def _on_signal(self, signum: int) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
            forward = signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM
            for _, proc, _ in self._active.values():
                with contextlib.suppress(OSError):
                    proc.send_signal(forward)
        else:  # a second signal: stop waiting for checkpoints
            for _, proc, _ in self._active.values():
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)

    def _start(self, slot: int, p: Planned) -> None:
        args = p.run.command(p.action)
        gpu = self.gpus[slot % len(self.gpus)] if self.gpus else None
        with open_log(p.run, args) as log:
            proc = subprocess.Popen([sys.executable, "-m", "fcc_lt", *args], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=child_env(self.threads, gpu),
                                    start_new_session=True)
        self._active[slot] = (p, proc, time.monotonic())
        if self.stop_signal is not None:  # the signal came while this run was being started
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGTERM)
        self.display.started(p, gpu=gpu)

    def _finish(self, slot: int, code: int) -> tuple[str, Outcome]:
        p, _, started = self._active.pop(slot)
        elapsed = time.monotonic() - started
        stopped_codes = {128 + signal.SIGINT, 128 + signal.SIGTERM, -signal.SIGINT, -signal.SIGTERM, -signal.SIGKILL}
        if code == 0 and run_status(p.run.run_dir).finished:
            outcome = Outcome("finished", 0, elapsed=elapsed)
        elif self.stop_signal is not None and code in stopped_codes:
            outcome = Outcome("stopped", code, "stopped by the sweep; resumes on the next `fcc sweep`", elapsed)
        elif code == 0:
            state = run_status(p.run.run_dir).state
            outcome = Outcome("failed", code, f"exited 0 but the run is {state}", elapsed)
        else:
            outcome = Outcome("failed", code, failure_line(p.run.log_path), elapsed)
        self.display.ended(p, outcome)
        return p.run.name, outcome

    def run(self, todo: list[Planned]) -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        queue = deque(todo)
        with stop_signals(self._on_signal):
            try:
                while queue or self._active:
                    while queue and self.stop_signal is None and len(self._active) < self.parallel:
                        p = queue.popleft()
                        now = run_status(p.run.run_dir)  # another sweep may have got there since planning
                        if now.state == "running" or (now.finished and p.action != "retrain"):
                            outcomes[p.run.name] = Outcome("skipped", message=f"{now.state} when its turn came")
                            self.display.ended(p, outcomes[p.run.name])
                            continue
                        slot = next(s for s in range(self.parallel) if s not in self._active)
                        self._start(slot, p)
                    for slot, (_, proc, _) in list(self._active.items()):
                        code = proc.poll()
                        if code is not None:
                            name, outcome = self._finish(slot, code)
                            outcomes[name] = outcome
                    if self.stop_signal is not None and not self._active:
                        break
                    self.display.tick()
                    time.sleep(self.poll_s)
            finally:
                for _, proc, _ in self._active.values():  # only if the sweep itself failed: leave nothing behind
                    with contextlib.suppress(OSError):
                        proc.terminate()
        for p in queue:
            outcomes[p.run.name] = Outcome("pending", message="not started")
        return outcomes


# ---------------------------------------------------------------------------------------------- data


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
    """The command-line options of `fcc sweep` (see build_parser in fcc_lt.cli.main)."""

    parallel: int | None = None  # None: 1 on this machine, no limit on SLURM
    dry_run: bool = False
    rerun_changed: bool = False
    executor: str = "process"
    gpus: list[str] | None = None
    no_wait: bool = False
    slurm: dict[str, Any] = field(default_factory=dict)  # --slurm-* options given, over the spec's slurm:


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
    slurm_options: dict[str, Any] = {}
    if options.executor != "process":
        from fcc_lt.experiments.sweep.slurm import check_options, require_submitit

        slurm_options = check_options(spec, options.slurm, options.executor)
        require_submitit(options.executor)
    runs = expand(spec)
    previous = read_record(spec.out)
    jobs = dict((previous or {}).get("jobs") or {})
    planned = plan(spec, runs, rerun_changed=options.rerun_changed, executor=options.executor, jobs=jobs)
    notes = spec_differences(previous, spec, runs)
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
