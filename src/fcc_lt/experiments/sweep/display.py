"""What `fcc sweep` prints: the plan, one progress line per run, and the summary.

On a terminal the per-run lines are redrawn in place (state, epoch from RUN_DIR/metrics.jsonl, elapsed
time); anywhere else (a log file, CI, a SLURM job's output) the same information comes as plain event
lines, one when a run starts or ends and at most one a minute per run while it trains.
"""

from __future__ import annotations

import os
import shlex
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from fcc_lt.config.recipes import shown_name
from fcc_lt.experiments.run_folder import last_epoch

_REDRAW_S = 0.5
_EVENT_EVERY_S = 60.0


def clock(seconds: float) -> str:
    """3:05 or 1:02:03."""
    s = int(seconds)
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


@dataclass
class Row:
    name: str
    state: str
    epochs: int
    epoch: int | None = None
    started: float | None = None
    ended: float | None = None
    note: str = ""
    last_event: float = 0.0
    last_event_epoch: int | None = None


def _initial(p: Any) -> Row:
    keeps = p.action in ("skip", "attach", "resume")  # a run trained (again) from scratch starts at epoch 0
    row = Row(p.run.name, "pending", p.run.epochs, p.status.epoch if keeps else None)
    if p.action == "skip":
        row.state, row.note = "skipped", p.reason
    elif p.action == "attach":
        row.state, row.note = "queued", p.reason
    return row


class Display:
    """Per-run progress of a sweep, written to ``stream``."""

    def __init__(self, stream: TextIO, planned: list[Any]) -> None:
        self.stream = stream
        self.planned = {p.run.name: p for p in planned}
        self.rows = {p.run.name: _initial(p) for p in planned}
        isatty = getattr(stream, "isatty", None)
        self.interactive = bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"
        self._drawn = 0
        self._last_draw = 0.0
        self._width = max((len(n) for n in self.rows), default=10)

    # -------------------------------------------------------------------------------------- events

    def begin(self) -> None:
        if self.interactive:
            self._draw(force=True)

    def started(self, p: Any, gpu: str | None = None, note: str = "") -> None:
        row = self.rows[p.run.name]
        row.state = "resuming" if p.action == "resume" else "training"
        row.started = time.monotonic()
        row.last_event = row.started
        if p.action != "resume":
            row.epoch = None
        row.note = note or (f"GPU {gpu}" if gpu is not None else "")
        if self.interactive:
            self._draw(force=True)
        else:
            what = {"resume": f"resume ({p.reason})", "retrain": "train again from scratch (config changed)",
                    "attach": "watch"}.get(p.action, "train")
            extra = f", {row.note}" if row.note else ""
            self._event(f"start    {p.run.name}: {what}{extra}; log: {p.run.log_path}")

    def queued(self, p: Any, note: str) -> None:
        row = self.rows[p.run.name]
        row.state, row.note = "queued", note
        if self.interactive:
            self._draw(force=True)
        else:
            self._event(f"queued   {p.run.name}: {note}")

    def running(self, p: Any) -> None:
        """A queued (SLURM) run has started training."""
        row = self.rows[p.run.name]
        if row.state == "queued":
            row.state, row.started = "training", time.monotonic()
            if not self.interactive:
                self._event(f"running  {p.run.name}")

    def ended(self, p: Any, outcome: Any) -> None:
        row = self.rows[p.run.name]
        row.state = outcome.state
        row.ended = time.monotonic()
        row.epoch = last_epoch(p.run.run_dir / "metrics.jsonl")
        row.note = self._outcome_note(p, outcome)
        if self.interactive:
            self._draw(force=True)
        else:
            took = f" after {clock(outcome.elapsed)}" if outcome.elapsed else ""
            label = {"finished": "finished", "failed": "FAILED", "stopped": "stopped"}.get(outcome.state,
                                                                                         outcome.state)
            self._event(f"{label:<8} {p.run.name}{took}{': ' + row.note if row.note else ''}")

    @staticmethod
    def _outcome_note(p: Any, outcome: Any) -> str:
        if outcome.state == "failed":
            code = f"exit {outcome.exit_code}" if outcome.exit_code is not None else "failed"
            return f"{code}: {outcome.message} (log: {p.run.log_path})" if outcome.message else \
                f"{code} (log: {p.run.log_path})"
        return outcome.message

    def tick(self) -> None:
        now = time.monotonic()
        for name, row in self.rows.items():
            if row.state in ("training", "resuming"):
                row.epoch = last_epoch(self.planned[name].run.run_dir / "metrics.jsonl")
                if (not self.interactive and row.epoch is not None and row.epoch != row.last_event_epoch
                        and now - row.last_event >= _EVENT_EVERY_S):
                    row.last_event, row.last_event_epoch = now, row.epoch
                    self._event(f"progress {name}: epoch {row.epoch}/{row.epochs}, {clock(now - (row.started or now))}")
        if self.interactive:
            self._draw()

    def close(self) -> None:
        if self.interactive:
            self._draw(force=True)

    # ------------------------------------------------------------------------------------- drawing

    def _event(self, text: str) -> None:
        self.stream.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
        self.stream.flush()

    def line(self, row: Row) -> str:
        active = row.state in ("training", "resuming")
        epoch = f"epoch {row.epoch or 0}/{row.epochs}" if row.epoch is not None or active else ""
        if row.started is not None:
            elapsed = clock((row.ended or time.monotonic()) - row.started)
        else:
            elapsed = ""
        return f"{row.state:<9} {row.name:<{self._width}}  {epoch:>13} {elapsed:>8}  {row.note}".rstrip()

    def lines(self, height: int) -> list[str]:
        """One line per run, or, when they do not fit the terminal, the active and failed runs first and a
        count of the rest."""
        rows = list(self.rows.values())
        if len(rows) <= height:
            return [self.line(r) for r in rows]
        order = {"training": 0, "resuming": 0, "failed": 1, "queued": 2, "stopped": 3}
        shown = sorted(rows, key=lambda r: order.get(r.state, 9))[: max(0, height - 1)]
        rest = Counter(r.state for r in rows if r not in shown)
        return [self.line(r) for r in shown] + [f"... and {sum(rest.values())} more: " +
                                                ", ".join(f"{n} {s}" for s, n in rest.most_common())]

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < _REDRAW_S:
            return
        self._last_draw = now
        size = shutil.get_terminal_size((100, 40))
        lines = self.lines(max(3, size.lines - 3))
        out = []
        if self._drawn:
            out.append(f"\x1b[{self._drawn}F")  # back to the first line of the previous frame
        for text in lines:
            out.append("\x1b[2K" + text[: max(10, size.columns - 1)] + "\n")
        for _ in range(self._drawn - len(lines)):  # a shorter frame: blank what is left of the last one
            out.append("\x1b[2K\n")
        extra = max(0, self._drawn - len(lines))
        if extra:
            out.append(f"\x1b[{extra}F")
        self._drawn = len(lines)
        self.stream.write("".join(out))
        self.stream.flush()


# ------------------------------------------------------------------------------------ plan, summary


_ACTION_WORDS = {"train": "to train", "retrain": "to train again (config changed)", "resume": "to resume",
                 "attach": "queued on SLURM", "refuse": "refused (config changed)"}


def _plan_counts(planned: list[Any]) -> str:
    counts: Counter[str] = Counter()
    for p in planned:
        if p.action == "skip" and getattr(p, "duplicate_of", None):
            word = "repeating another run (not trained)"
        elif p.action == "skip":
            word = "finished" if p.status.finished else ("running elsewhere" if p.status.state == "running"
                                                         else "queued on SLURM")
        elif p.action == "refuse" and not p.changes:
            word = "refused (unreadable)"
        else:
            word = _ACTION_WORDS[p.action]
        counts[word] += 1
    return ", ".join(f"{n} {w}" for w, n in counts.items())


def print_plan(spec: Any, planned: list[Any], notes: list[str], stream: TextIO, *, commands: bool,
               interactive: bool = False) -> None:
    """The sweep's runs and what will happen to each (with --dry-run, also the command of each)."""
    stream.write(f"sweep {spec.out} ({shown_name(Path(spec.path))}): {len(planned)} run(s): "
                 f"{_plan_counts(planned)}\n")
    for note in notes:
        stream.write(f"note: {note}\n")
    if not interactive:
        width = max((len(p.run.name) for p in planned), default=10)
        for p in planned:
            stream.write(f"  {p.action:<8} {p.run.name:<{width}}  {p.reason}".rstrip() + "\n")
            if commands and p.action in ("train", "retrain", "resume"):
                stream.write(f"           {shlex.join(['fcc', *p.run.command(p.action)])}\n")
    stream.flush()


def summary(spec: Any, planned: list[Any], outcomes: dict[str, Any], stream: TextIO, stop: int | None) -> None:
    """Counts of finished / failed / skipped runs, each failure with its exit code and log, and what next."""
    import signal

    counts: Counter[str] = Counter()
    failed = []
    for p in planned:
        outcome = outcomes.get(p.run.name)
        if outcome is None:
            counts["finished before (skipped)" if p.status.finished else "skipped"] += 1
        elif outcome.state == "finished":
            counts["finished now"] += 1
        elif outcome.state == "failed":
            counts["failed"] += 1
            failed.append((p, outcome))
        else:
            counts[outcome.state] += 1
    order = ["finished now", "finished before (skipped)", "failed", "stopped", "queued", "pending", "skipped"]
    parts = [f"{counts[k]} {k}" for k in order if counts[k]]
    parts += [f"{n} {k}" for k, n in counts.items() if k not in order]
    stream.write(f"\nsweep {spec.out}: {len(planned)} run(s): {', '.join(parts)}\n")
    for p, outcome in failed:
        code = f"exit {outcome.exit_code}" if outcome.exit_code is not None else "failed"
        took = f" after {clock(outcome.elapsed)}" if outcome.elapsed else ""
        stream.write(f"  FAILED {p.run.name}: {code}{took}{': ' + outcome.message if outcome.message else ''}\n"
                     f"         log: {p.run.log_path}\n")
    skipped = [p for p in planned if p.run.name not in outcomes and p.action == "skip" and not p.status.finished]
    for p in skipped:
        stream.write(f"  skipped {p.run.name}: {p.reason}\n")
    for p in planned:
        o = outcomes.get(p.run.name)
        if o is not None and o.state == "skipped":
            stream.write(f"  skipped {p.run.name}: {o.message}\n")
    if stop is not None:
        name = signal.Signals(stop).name
        if any(o.state == "queued" for o in outcomes.values()):
            stream.write(f"stopped watching ({name}); the queued jobs go on\n")
        else:
            stream.write(f"stopped by {name}: the runs that were training saved a checkpoint; run "
                         f"`fcc sweep {spec.path}` again to continue the sweep\n")
    elif failed:
        stream.write(f"fix the failures and run `fcc sweep {spec.path}` again: finished runs are skipped\n")
    stream.write(f"results: fcc report {spec.out}\n")
    stream.flush()
