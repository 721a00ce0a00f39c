"""`fcc sweep --executor slurm` (and `--executor local`, the same path on this machine): runs as submitit jobs.

submitit (an optional extra: ``pip install 'fcc-lt[slurm]'``) writes the sbatch files, submits the runs as
one job array, tracks the jobs and requeues them. Each job runs the same ``python -m fcc_lt train`` command
as a local sweep, with its output in ``RUN_DIR/train.log``; submitit's own logs are under
``OUT/.submitit/<job id>/``. A job is checkpointable in submitit's sense: when SLURM signals the end of
its time limit (or a preemption), it stops its run with SIGTERM (the run saves a checkpoint) and the
requeued job resumes it. Job ids are recorded in OUT/sweep.json, so a later `fcc sweep` neither submits
a queued run twice nor loses track of it. This module imports submitit only when it is used.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fcc_lt.experiments.run_folder import run_status
from fcc_lt.util.errors import ConfigError, FccError
from fcc_lt.util.files import read_input_text
from fcc_lt.util.run_lock import is_locked

# sacct states of a job that has not ended (submitit's list of incomplete states, and SLURM's transient ones)
ACTIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED",
                 "CONFIGURING", "COMPLETING", "SIGNALING", "STAGE_OUT", "READY", "PREEMPTED"}
MAX_REQUEUES = 50  # timeouts after which a run is no longer requeued (preemptions do not count)
LOCAL_TIME_MIN = 7 * 24 * 60  # --executor local: no time limit unless one is given


def require_submitit(executor: str) -> Any:
    """The submitit module, or a ConfigError naming the extra to install."""
    try:
        import submitit
    except ImportError:
        raise ConfigError(f"--executor {executor} runs the sweep through submitit, which is not installed: "
                          "pip install 'fcc-lt[slurm]' (or pip install 'submitit>=1.5')") from None
    return submitit


def parse_time(value: Any, where: str) -> int:
    """A time limit in minutes from SLURM's formats (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS),
    a number of minutes, or 90m / 4h / 2d."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    text = str(value).strip() if isinstance(value, str) else ""
    seconds = None
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text):
        seconds = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    elif m := re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text):
        days, first, second, third = (int(g) if g is not None else None for g in m.groups())
        if days is not None:  # D-HH[:MM[:SS]]
            seconds = days * 86400 + first * 3600 + (second or 0) * 60 + (third or 0)
        elif third is not None:  # HH:MM:SS
            seconds = first * 3600 + (second or 0) * 60 + third
        elif second is not None:  # MM:SS
            seconds = first * 60 + second
        else:  # MM
            seconds = first * 60
    if not seconds or seconds <= 0:
        raise ConfigError(f"{where}: expected a time limit such as 4:00:00, 1-00:00:00, 240 (minutes) or 4h, "
                          f"got {value!r}")
    return max(1, int(-(-seconds // 60)))


def check_options(spec: Any, cli: dict[str, Any], executor: str) -> dict[str, Any]:
    """The spec's ``slurm:`` block with the --slurm-* options over it, checked; errors name where each
    value came from."""
    merged: dict[str, tuple[Any, str]] = {k: (v, f"{spec.path}: slurm.{k}") for k, v in spec.slurm.items()}
    merged.update({k: (v, f"--slurm-{k.replace('_', '-')}") for k, v in cli.items() if v is not None})
    opts: dict[str, Any] = {}

    def get(key: str) -> tuple[Any, str]:
        return merged.get(key, (None, f"slurm.{key}"))

    value, where = get("time")
    if value is None:
        if executor == "slurm":
            raise ConfigError("--executor slurm needs a time limit per run: --slurm-time 4:00:00 or `slurm: {time: "
                              "4:00:00}` in the spec (a run that reaches it saves a checkpoint and is requeued)")
        opts["time"] = LOCAL_TIME_MIN
    else:
        opts["time"] = parse_time(value, where)
    for key, default, low, high in (("gpus", 1 if executor == "slurm" else 0, 0, 1), ("cpus", None, 1, None),
                                    ("signal_delay_s", None, 10, None)):
        value, where = get(key)
        if value is None:
            opts[key] = default
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
            span = f"in [{low}, {high}]" if high is not None else f">= {low}"
            hint = " (a sweep run is one process on one GPU)" if key == "gpus" else ""
            raise ConfigError(f"{where}: expected an integer {span}{hint}, got {value!r}")
        opts[key] = value
    value, where = get("mem_gb")
    if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0):
        raise ConfigError(f"{where}: expected a positive number of GB, got {value!r}")
    opts["mem_gb"] = value
    for key in ("partition", "account", "qos", "constraint"):
        value, where = get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(f"{where}: expected a name, got {value!r}")
        opts[key] = value
    value, where = get("setup")
    if isinstance(value, str):
        value = [value]
    if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
        raise ConfigError(f"{where}: expected a list of shell lines run before each job, e.g. "
                          f"['module load cuda'], got {value!r}")
    opts["setup"] = value or []
    value, where = get("additional")
    if value is not None and (not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, (str, int, float, bool)) for k, v in value.items())):
        raise ConfigError(f"{where}: expected a mapping of further sbatch options, e.g. {{mail-type: END}}, "
                          f"got {value!r}")
    opts["additional"] = value or {}
    return opts


def slurm_parameters(opts: dict[str, Any], parallel: int | None, job_name: str) -> dict[str, Any]:
    """submitit.SlurmExecutor parameters (sbatch options) of one run per job, one task, one node."""
    params: dict[str, Any] = {"job_name": job_name, "time": opts["time"], "nodes": 1, "ntasks_per_node": 1}
    if opts["gpus"]:
        params["gpus_per_node"] = opts["gpus"]
    if opts["cpus"]:
        params["cpus_per_task"] = opts["cpus"]
    if opts["mem_gb"]:
        gb = opts["mem_gb"]
        params["mem"] = f"{int(gb)}GB" if gb == int(gb) else f"{int(gb * 1024)}MB"
    for key in ("partition", "account", "qos", "constraint"):
        if opts[key]:
            params[key] = opts[key]
    if opts["setup"]:
        params["setup"] = list(opts["setup"])
    if opts["additional"]:
        params["additional_parameters"] = dict(opts["additional"])
    if opts["signal_delay_s"]:
        params["signal_delay_s"] = opts["signal_delay_s"]
    if parallel:
        params["array_parallelism"] = parallel
    return params


def local_parameters(opts: dict[str, Any]) -> dict[str, Any]:
    """submitit.LocalExecutor parameters: the time limit (with its timeout signal), GPUs, one task."""
    params: dict[str, Any] = {"timeout_min": opts["time"], "gpus_per_node": opts["gpus"], "tasks_per_node": 1,
                              "nodes": 1}
    if opts["signal_delay_s"]:
        params["signal_delay_s"] = opts["signal_delay_s"]
    if opts["setup"]:
        params["setup"] = list(opts["setup"])
    return params


def job_folder(out: Path) -> Path:
    return Path(out) / ".submitit" / "%j"


def active_job_states(jobs: dict[str, Any], out: Path) -> dict[str, str]:
    """{run name: SLURM state} of the recorded jobs that have not ended, from one sacct call. Empty when
    nothing was recorded, or sacct or submitit is not there (the run directories' own states then decide)."""
    recorded = {name: job for name, job in jobs.items()
                if isinstance(job, dict) and job.get("executor") == "slurm" and job.get("job_id")}
    if not recorded:
        return {}
    import shutil

    if shutil.which("sacct") is None:
        return {}
    try:
        import submitit
    except ImportError:
        return {}
    try:
        handles = {name: submitit.SlurmJob(folder=job_folder(out), job_id=str(job["job_id"]))
                   for name, job in recorded.items()}
        submitit.SlurmJob.watcher.update()  # one sacct call for all of them
        states = {name: str(h.get_info(mode="cache").get("State") or "") for name, h in handles.items()}
    except Exception:  # sacct failing or answering garbage: treat the jobs as gone
        return {}
    words = {name: state.split()[0].upper() for name, state in states.items() if state.strip()}
    return {name: state for name, state in words.items() if state in ACTIVE_STATES}


class RunJob:
    """What one submitit job runs: `python -m fcc_lt train` for one run of a sweep (see module doc).

    ``checkpoint`` is submitit's hook for the timeout / preemption signal: it stops the run (SIGTERM; the
    run saves a checkpoint) and returns the same job for requeueing, which then resumes the run."""

    def __init__(self, run: Any, action: str, cwd: str, threads: int | None) -> None:
        self.run = run
        self.action = action
        self.cwd = cwd
        self.threads = threads
        self.attempt = 0
        self._proc: subprocess.Popen[bytes] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_proc"] = None
        return state

    def _action(self) -> str | None:
        """The planned action on a job's first start; on a restart (requeued after our checkpoint, or by
        SLURM itself after a node failure, which reruns the submitted job as it was) what the run directory
        now needs, so a restart never trains from scratch over its own progress."""
        marker = self.run.run_dir / ".sweep-job"
        job_id = _current_job_id()
        try:
            restarted = job_id is not None and read_input_text(marker, "job marker", max_bytes=4096).strip() == job_id
        except FccError:  # absent, or not a small regular file (a FIFO would block): not this job's restart
            restarted = False
        if self.attempt == 0 and not restarted and self.action != "attach":
            if job_id is not None:
                self.run.run_dir.mkdir(parents=True, exist_ok=True)
                marker.write_text(job_id + "\n", encoding="utf-8")
            return self.action
        status = run_status(self.run.run_dir)
        if status.finished:
            return None
        return "resume" if status.state == "stopped" else "train"

    def __call__(self) -> int:
        from fcc_lt.experiments.sweep.processes import child_env, open_log

        os.chdir(self.cwd)
        action = self._action()
        if action is None:
            return 0
        args = self.run.command(action)
        cpus = os.environ.get("SLURM_CPUS_PER_TASK", "")
        threads = int(cpus) if cpus.isdigit() else self.threads
        with open_log(self.run, args) as log:
            usr = signal.SIGUSR2
            previous = signal.signal(usr, signal.SIG_IGN)  # inherited: the run must not die of submitit's signal
            try:
                self._proc = subprocess.Popen([sys.executable, "-m", "fcc_lt", *args], stdout=log,
                                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              env=child_env(threads))
            finally:
                signal.signal(usr, previous)
        try:
            while (code := self._proc.poll()) is None:  # polled: the signal hook below must be able to wait too
                time.sleep(0.5)
        except KeyboardInterrupt:  # submitit's local cancel: stop the run cleanly, then go
            self._stop(wait_s=1.0)
            raise
        return code

    def _stop(self, wait_s: float) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(OSError):
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        import submitit

        self._stop(wait_s=75.0)
        self.attempt += 1
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)


def _current_job_id() -> str | None:
    """The submitit job this process runs in (stable across requeues), or None outside one."""
    try:
        import submitit

        return str(submitit.JobEnvironment().job_id)
    except Exception:  # not in a submitit job
        return None


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    output = getattr(err, "output", None) or getattr(err, "stderr", None)
    if isinstance(output, bytes):
        output = output.decode("utf-8", "replace")
    detail = (output or "").strip().splitlines()
    return "; ".join([*(lines[:2] or [type(err).__name__]), *detail[-1:]])


def make_executor(submitit: Any, executor: str, out: Path, opts: dict[str, Any], parallel: int | None) -> Any:
    folder = job_folder(out)
    if executor == "slurm":
        try:
            ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=MAX_REQUEUES)
        except RuntimeError as err:
            raise ConfigError(f"--executor slurm: {err} (srun not found); try --executor local on this machine") \
                from None
        params = slurm_parameters(opts, parallel, f"fcc-sweep-{Path(out).name}")
    else:
        ex = submitit.LocalExecutor(folder=folder, max_num_timeout=MAX_REQUEUES)
        params = local_parameters(opts)
    try:
        ex.update_parameters(**params)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"--executor {executor}: submitit refused the options: {_first_line(err)}") from None
    return ex


def run_with_submitit(spec: Any, todo: list[Any], options: Any, opts: dict[str, Any], display: Any,
                      remember: Callable[[dict[str, dict[str, Any]]], None],
                      threads: int) -> tuple[dict[str, Any] | None, int | None]:
    """Submit (or attach to) the runs' jobs and watch them; returns (outcomes, stop signal), or (None, None)
    with --no-wait.

    A signal while watching: with --executor local the jobs are cancelled (each run saves a checkpoint)
    and the sweep waits for them to stop; on SLURM the sweep stops watching and leaves the jobs queued
    (a login shell that closes must not cancel a sweep of days); `scancel` stops them."""
    from fcc_lt.experiments.sweep.processes import Outcome, failure_line, stop_signals

    submitit = require_submitit(options.executor)
    slurm = options.executor == "slurm"
    parallel = options.parallel if (options.parallel or not slurm) else None
    ex = make_executor(submitit, options.executor, spec.out, opts, parallel)
    cwd = str(Path.cwd())
    run_threads = None if slurm else threads  # on SLURM: SLURM_CPUS_PER_TASK, when set

    active: dict[str, tuple[Any, Any, float]] = {}
    outcomes: dict[str, Any] = {}
    waiting = deque(p for p in todo if p.action != "attach")

    def submit(batch: list[Any]) -> None:
        calls = [RunJob(p.run, p.action, cwd, run_threads) for p in batch]
        try:
            if slurm and len(batch) > 1:
                with ex.batch():  # one job array
                    jobs = [ex.submit(call) for call in calls]
            else:
                jobs = [ex.submit(call) for call in calls]
        except Exception as err:  # sbatch refused (a wrong partition, account or time)
            raise ConfigError(f"--executor {options.executor}: submitting failed: {_first_line(err)}") from None
        if slurm:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            remember({p.run.name: {"executor": "slurm", "job_id": str(job.job_id), "submitted": stamp}
                      for p, job in zip(batch, jobs)})
        for p, job in zip(batch, jobs):
            if slurm:
                display.queued(p, f"job {job.job_id}")
            else:
                display.started(p, note=f"submitit job {job.job_id}")
            active[p.run.name] = (p, job, time.monotonic())

    for p in todo:
        if p.action == "attach":
            active[p.run.name] = (p, submitit.SlurmJob(folder=job_folder(spec.out), job_id=str(p.job_id)),
                                  time.monotonic())
            display.queued(p, f"job {p.job_id}")
    if slurm and waiting:
        submit(list(waiting))
        waiting.clear()
    if options.no_wait:
        ids = ", ".join(str(job.job_id) for _, job, _ in active.values())
        display.stream.write(f"submitted; jobs {ids}\nrun `fcc sweep {spec.path} --executor slurm` again to watch "
                             "them (finished runs are skipped, queued ones watched, unfinished ones resubmitted), "
                             f"or `fcc sweep {spec.path} --dry-run` to see their states\n")
        display.stream.flush()
        return None, None

    stop: list[int] = []
    cancelled: list[Any] = []
    display.begin()
    with stop_signals(stop.append):
        try:
            while (waiting or active) and not (stop and slurm) and len(stop) < 2:
                if stop and not cancelled:  # local jobs: stop their runs (they save a checkpoint), and so the jobs
                    for p, job, _ in active.values():
                        if not stop_run(p.run.run_dir):
                            with contextlib.suppress(Exception):
                                job.cancel(check=False)
                    cancelled = [p for p, _, _ in active.values()]
                while waiting and not stop and len(active) < (parallel or 1):
                    p = waiting.popleft()
                    now = run_status(p.run.run_dir)
                    if now.state == "running" or (now.finished and p.action != "retrain"):
                        outcomes[p.run.name] = Outcome("skipped", message=f"{now.state} when its turn came")
                        display.ended(p, outcomes[p.run.name])
                        continue
                    submit([p])
                for name, (p, job, started) in list(active.items()):
                    if slurm and job.state == "RUNNING":
                        display.running(p)
                    if job.done():
                        del active[name]
                        outcomes[name] = _outcome(p, job, started, bool(stop), Outcome, failure_line)
                        display.ended(p, outcomes[name])
                display.tick()
                time.sleep(0.5)
            deadline = time.monotonic() + 120
            while cancelled and len(stop) < 2 and time.monotonic() < deadline and any(
                    is_locked(p.run.run_dir) for p in cancelled):  # the cancelled runs are still saving
                time.sleep(0.2)
        finally:
            display.close()
    for name, (_, job, started) in active.items():
        if slurm:
            outcomes[name] = Outcome("queued", message=f"left on SLURM as job {job.job_id}")
        else:
            outcomes[name] = Outcome("stopped", message=f"job {job.job_id} cancelled",
                                     elapsed=time.monotonic() - started)
    for p in waiting:
        outcomes[p.run.name] = Outcome("pending", message="not submitted")
    if stop and slurm and active:
        ids = " ".join(str(job.job_id) for _, job, _ in active.values())
        display.stream.write(f"\nstopped watching; {len(active)} job(s) stay on SLURM: `fcc sweep {spec.path} "
                             f"--executor slurm` watches them again, `scancel {ids}` stops them\n")
    return outcomes, (stop[0] if stop else None)


def stop_run(run_dir: Path) -> bool:
    """SIGTERM to the `fcc train` process holding ``run_dir``'s lock on this machine (its pid is in the lock
    file, see fcc_lt.util.run_lock.lock_run_dir): the run saves a checkpoint and its job ends normally. False when
    no such process is found."""
    import socket

    try:
        text = read_input_text(Path(run_dir) / ".lock", "run lock", max_bytes=4096)
    except FccError:  # absent, or not a small regular file: no process of ours to stop through it
        return False
    m = re.fullmatch(r"pid (\d+) on (\S+)\s*", text)
    if m is None or m.group(2) != socket.gethostname() or not is_locked(run_dir):
        return False
    try:
        os.kill(int(m.group(1)), signal.SIGTERM)
    except OSError:
        return False
    return True


def _outcome(p: Any, job: Any, started: float, stopping: bool, outcome_cls: Any, failure_line: Any) -> Any:
    elapsed = time.monotonic() - started
    if stopping and not job.paths.result_pickle.exists():  # cancelled: no result will come, do not wait for one
        return outcome_cls("stopped", None, failure_line(p.run.log_path), elapsed)
    try:
        code = job.result()
    except Exception as err:  # the job died outside our command (killed, out of memory, node failure)
        message = failure_line(p.run.log_path) if stopping else _first_line(err)
        state = "stopped" if stopping else "failed"
        return outcome_cls(state, None, message, elapsed)
    stopped_codes = {128 + signal.SIGINT, 128 + signal.SIGTERM, -signal.SIGINT, -signal.SIGTERM}
    if code == 0 and run_status(p.run.run_dir).finished:
        return outcome_cls("finished", 0, elapsed=elapsed)
    if stopping and code in stopped_codes:
        return outcome_cls("stopped", code, "stopped by the sweep; resumes on the next `fcc sweep`", elapsed)
    if code == 0:
        return outcome_cls("failed", 0, f"exited 0 but the run is {run_status(p.run.run_dir).state}", elapsed)
    from fcc_lt.experiments.sweep.processes import elsewhere

    if (why := elsewhere(p.run.run_dir, p.run.log_path)) is not None:
        return outcome_cls("skipped", code, why, elapsed)
    return outcome_cls("failed", code, failure_line(p.run.log_path), elapsed)
