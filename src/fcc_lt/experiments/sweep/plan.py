"""`fcc sweep`'s plan: a spec -> its runs (ordinary run directories with deterministic names), and what to
do with each now (train, resume, skip, refuse), read from each run directory's files.

Every run of a sweep is an ordinary run directory, ``OUT/<config name>[__<key>-<value>...]__seed<S>``,
trained by its own ``python -m fcc_lt train CONFIG OVERRIDES... seed=S out=RUN_DIR`` process with its output
in ``RUN_DIR/train.log``. Because the names are deterministic and a run's state is read from its files
(fcc_lt.experiments.run_folder), running the same sweep again continues it: finished runs are skipped,
stopped ones are resumed with ``fcc train --resume``, runs another process is training are left alone, and
a run directory whose config differs from what the spec asks for now is refused, naming the keys (or
trained again from scratch with ``--rerun-changed``). The spec and every run's overrides are recorded in
``OUT/sweep.json``.
"""

from __future__ import annotations

import itertools
import json
import logging
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from fcc_lt.experiments.run_folder import CONFIG, SWEEP_RECORD, RunStatus, config_or_none, run_status
from fcc_lt.experiments.sweep.spec import SPEC_KEYS, UNSAFE_CHARS, ConfigEntry, Spec, yaml_value
from fcc_lt.util.errors import ConfigError, FccError

LOG_NAME = "train.log"
_MAX_VALUE_CHARS = 40
_MAX_NAME_CHARS = 200


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
    slug = UNSAFE_CHARS.sub("_", text).strip("_") or "empty"
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
    duplicate_of: str | None = None  # the run this one would repeat (it differs only in keys without effect)


def plan(spec: Spec, runs: list[Run], *, rerun_changed: bool, executor: str,
         jobs: dict[str, Any] | None = None) -> list[Planned]:
    """Decide every run's action from its directory (experiments.run_folder) and any SLURM job recorded
    for it."""
    from fcc_lt.experiments.sweep.slurm import active_job_states

    job_states = active_job_states(jobs or {}, spec.out)
    planned = []
    first_of: dict[str, Run] = {}  # the first run of each computation (keys without effect set aside)
    for run in runs:
        status = run_status(run.run_dir)
        stored = config_or_none(run.run_dir) if status.state != "missing" else None
        changes = config_changes(stored, run.resolved) if stored is not None else []
        job_state = job_states.get(run.name) if status.state not in ("finished", "running") else None
        broken = status.state == "unreadable" or (status.state == "missing" and (run.run_dir / CONFIG).exists())
        first = first_of.setdefault(effective_signature(run), run)
        if status.state == "running":
            note = f"; its config differs from the spec: {describe_changes(changes)}" if changes else ""
            p = Planned(run, status, "skip", f"running (another process holds {run.run_dir / '.lock'}){note}",
                        changes)
        elif job_state is not None:
            action = "attach" if executor == "slurm" else "skip"
            job_id = str((jobs or {})[run.name]["job_id"])
            p = Planned(run, status, action, f"queued on SLURM as job {job_id} ({job_state})", job_id=job_id)
        elif broken:  # never trained over: the files say something went wrong, and what
            p = Planned(run, status, "refuse", f"cannot be read: {status.detail}")
        elif changes and status.state != "empty":
            p = Planned(run, status, "retrain" if rerun_changed else "refuse",
                        f"{status.state}, but its config differs from the spec: {describe_changes(changes)}", changes)
        elif status.state == "finished":
            p = Planned(run, status, "skip", f"finished ({status.epoch}/{status.epochs} epochs)")
        elif status.state == "stopped":
            p = Planned(run, status, "resume", status.detail)
        elif first is not run:  # would train what another run of the spec trains
            p = Planned(run, status, "skip", f"the same run as {first.name}: {no_effect_reason(run, first)}",
                        duplicate_of=first.name)
        else:
            p = Planned(run, status, "train", "new" if status.state == "missing" else status.detail)
        planned.append(p)
    return planned


def effective_signature(run: Run) -> str:
    """What a run computes: its resolved config (seed included) without the keys that have no effect given
    the others (fcc_lt.experiments.effects), as text to compare."""
    from fcc_lt.config.schema import flat_keys
    from fcc_lt.experiments.effects import ineffective_keys

    drop = ineffective_keys(run.resolved)
    flat = {k: v for k, v in flat_keys(run.resolved).items() if k not in drop}
    return json.dumps(flat, sort_keys=True, default=str)


def no_effect_reason(run: Run, first: Run) -> str:
    """Why ``run`` repeats ``first``: the keys in which they differ and why each does nothing."""
    from fcc_lt.config.schema import flat_keys
    from fcc_lt.experiments.effects import ineffective_keys

    mine, theirs = flat_keys(run.resolved), flat_keys(first.resolved)
    why = ineffective_keys(run.resolved)
    keys = [k for k in dict.fromkeys([*mine, *theirs]) if mine.get(k) != theirs.get(k)]
    return "; ".join(f"{k} has no effect: {why.get(k, 'it changes nothing here')}" for k in keys) or \
        "the same config"


def duplicate_note(planned: list[Planned]) -> list[str]:
    """One note for the runs not trained because they would repeat another run."""
    dups = [p for p in planned if p.duplicate_of is not None]
    if not dups:
        return []
    keys = sorted({part.split(" has no effect")[0] for p in dups for part in p.reason.split(": ", 1)[1].split("; ")
                   if " has no effect" in part})
    return [f"{len(dups)} run(s) differ from another run of the spec only in keys that have no effect there "
            f"({', '.join(keys) or 'none'}): they are not trained (the report would count them as one run); "
            "restrict the grid to the configs where the key acts, or give those configs their own spec"]


def refusal(spec: Spec, planned: list[Planned]) -> ConfigError | None:
    """The error for runs whose directories hold another config than the spec asks for, or files that
    cannot be read, if any."""
    changed = [p for p in planned if p.action == "refuse" and p.changes]
    broken = [p for p in planned if p.action == "refuse" and not p.changes]
    parts = []
    if changed:
        lines = [f"  {p.run.run_dir}: {describe_changes(p.changes)}" for p in changed]
        parts.append(f"{len(changed)} run(s) in {spec.out} were started with another config than the spec asks for "
                     "now:\n" + "\n".join(lines) + "\nRestore the spec, choose another `out:`, or pass --rerun-changed "
                     "to train them again from scratch (their checkpoints, metrics and results are replaced)")
    if broken:
        lines = [f"  {p.run.run_dir}: {p.status.detail}" for p in broken]
        parts.append(f"{len(broken)} run director{'y' if len(broken) == 1 else 'ies'} in {spec.out} hold files "
                     "that cannot be read:\n" + "\n".join(lines) + "\nRepair or remove the file named (or the run "
                     "directory), or choose another `out:`")
    return ConfigError(f"{spec.path}: " + "\n".join(parts)) if parts else None


# -------------------------------------------------------------------------------------------- record


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
    notes = [f"the spec differs from the one recorded in {spec.out / SWEEP_RECORD} in: {', '.join(keys)}"]
    if added:
        notes.append(f"{len(added)} run(s) added: {', '.join(added[:8])}{' ...' if len(added) > 8 else ''}")
    if removed:
        notes.append(f"{len(removed)} run(s) no longer in the spec (their directories are left as they are): "
                     f"{', '.join(str(n) for n in removed[:8])}{' ...' if len(removed) > 8 else ''}")
    return notes


def write_record(spec: Spec, runs: list[Run], previous: dict[str, Any] | None, jobs: dict[str, Any]) -> None:
    """OUT/sweep.json: the spec and every run's resolved overrides (and SLURM jobs), written atomically."""
    from fcc_lt.util.files import atomic_write_text

    now = datetime.now(UTC).isoformat(timespec="seconds")
    record = {
        "format": "fcc-sweep", "version": 1, "spec_file": str(spec.path), "spec": spec.raw,
        "created": (previous or {}).get("created", now), "updated": now,
        "runs": [r.record() for r in runs],
        "jobs": {name: job for name, job in jobs.items() if name in {r.name for r in runs}},
    }
    atomic_write_text(spec.out / SWEEP_RECORD, json.dumps(record, indent=2, default=str) + "\n")

