"""Where a finished epoch's record goes: metrics.jsonl, the console, tensorboard and a tracker (rank 0).

One record per epoch (``epoch``, ``lr``, ``train_loss``, ``train_acc``, ``<split>_top1`` on evaluated
epochs, ``epoch_time``, ``images_per_s``, ...); every sink gets the same numbers.

metrics.jsonl is the run's own record: a failure to write it stops the run (OutputError). Tensorboard and
the trackers are copies: one that fails after start-up (a full store, a lost connection) is warned
about once and dropped, and the run, its checkpoints and metrics.jsonl go on.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fcc_lt.config.schema import Config
from fcc_lt.engine.run_dir import MetricsFile
from fcc_lt.util.errors import ConfigError


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {record['epoch']}/{epochs}", f"lr {record['lr']:.4g}",
             f"loss {_fmt(record.get('train_loss'), '.4f')}", f"acc {_fmt(record.get('train_acc'), '.2f')}"]
    parts += [f"{k} {v:.2f}" for k, v in record.items() if k.endswith("_top1") and v is not None]
    parts.append(f"{record['epoch_time']:.1f}s")
    return "  ".join(parts)


class TensorboardSink:
    def __init__(self, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("train.tensorboard: true needs the tensorboard package; "
                              "pip install 'fcc-lt[tensorboard]' or set train.tensorboard=false") from None
        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def log(self, record: dict[str, Any]) -> None:
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, record["epoch"])

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.flush()


class SinkWarning(UserWarning):
    """A tensorboard writer or tracker failed during the run and was dropped; the run goes on."""


class MetricsLog:
    """The epoch records of one run, written by the main process only."""

    def __init__(self, run_dir: Path, cfg: Config, *, is_main: bool, resuming: bool = False,
                 echo: Callable[[str], None] | None = None) -> None:
        """``echo``: where the epoch lines also go (the run's train.log)."""
        self.cfg = cfg
        self.echo = echo
        self.is_main = is_main
        self.file = MetricsFile(run_dir)
        self.sinks: list[Any] = []
        if is_main and cfg.train.tensorboard:
            self.sinks.append(TensorboardSink(run_dir))
        if is_main and cfg.train.tracker != "none":
            from fcc_lt.engine.trackers import build_tracker

            self.sinks.append(build_tracker(run_dir, cfg, resuming=resuming))

    def _each_sink(self, call: Callable[[Any], Any], what: str) -> None:
        """``call(sink)`` for every sink; a sink that raises is warned about and dropped."""
        for sink in list(self.sinks):
            try:
                call(sink)
            except Exception as err:  # any library's error: the copy is lost, the run is not
                self.sinks.remove(sink)
                name = "tensorboard" if isinstance(sink, TensorboardSink) else f"train.tracker={self.cfg.train.tracker}"
                first = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
                warnings.warn(f"{name} failed while {what} ({type(err).__name__}: {first}); it is dropped for the "
                              "rest of the run, which goes on: metrics.jsonl and the checkpoints hold every "
                              "result", SinkWarning, stacklevel=3)

    def log(self, record: dict[str, Any]) -> None:
        if not self.is_main:
            return
        clean = {**MetricsFile.clean(record), "time": datetime.now().astimezone().isoformat(timespec="seconds")}
        self.file.append(clean)
        self._each_sink(lambda sink: sink.log(clean), f"logging epoch {clean.get('epoch')}")
        line = epoch_line(clean, self.cfg.train.epochs)
        tqdm.write(line)
        if self.echo is not None:
            self.echo(line)

    def truncate(self, next_epoch: int) -> None:
        if self.is_main:
            self.file.truncate(next_epoch)

    def final(self, result: dict[str, Any]) -> None:
        """The final evaluation (eval.json's numbers), for the sinks that keep a summary."""
        self._each_sink(lambda sink: getattr(sink, "final", lambda _result: None)(result),
                        "logging the final evaluation")

    def flush(self) -> None:
        self._each_sink(lambda sink: getattr(sink, "flush", lambda: None)(), "flushing")

    def close(self, status: str = "finished") -> None:
        """``status``: finished, failed or interrupted (a tracker marks its run so)."""
        self._each_sink(lambda sink: sink.close(status) if not isinstance(sink, TensorboardSink) else sink.close(),
                        "closing")
        self.sinks = []
