"""Local sweeps: the planned runs as `python -m fcc_lt train` child processes on this machine, N at a time.

Why our own pool and not submitit's local executor: see docs/sweeps.md ("Why a process pool of our own").
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import deque
from typing import Any

from fcc_lt.experiments.run_folder import run_status
from fcc_lt.experiments.sweep.plan import Planned
from fcc_lt.experiments.sweep.processes import Outcome, child_env, elsewhere, failure_line, open_log, stop_signals


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
        elif (why := elsewhere(p.run.run_dir, p.run.log_path)) is not None:
            outcome = Outcome("skipped", code, why, elapsed)
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

