"""What a run says, and where: RUN/train.log (environment, warnings, the speed choice, epoch lines, the end),
timestamps in metrics.jsonl, progress lines where stderr is no terminal, messages above a progress bar,
the end of `fcc train`, and `--resume` of a finished run."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import torch

from conftest import TINY_MODEL, subprocess_env, tiny_run_overrides
from fcc_lt import __version__
from fcc_lt.cli.main import main
from fcc_lt.config.load import load_config
from fcc_lt.engine.trainer import Trainer


def shipped_run(root: Path, out: Path, *extra: str) -> list[str]:
    """A shipped config shortened to 2 tiny epochs: its schedule is rescaled and called too short."""
    return ["cifar10_lt/ce_fcc_if100", f"data.root={root}", "data.imbalance_factor=10", "device=cpu", f"out={out}",
            "train.epochs=2", "train.batch_size=16", "train.progress=false", "eval.confusion_png_max_classes=0",
            *TINY_MODEL, *extra]


def log_lines(run: Path) -> list[str]:
    """train.log's lines without their timestamps (each line starts with one)."""
    lines = (run / "train.log").read_text().splitlines()
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d\d:\d\d ")
    assert all(stamp.match(line) for line in lines), lines
    return [stamp.sub("", line) for line in lines]


def test_every_run_writes_train_log_and_timestamps_its_metrics(cifar10_root: Path, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fcc")  # as the command line configures logging
    out = tmp_path / "run"
    assert main(["train", *shipped_run(cifar10_root, out)]) == 0
    lines = log_lines(out)
    assert lines[0] == f"===== fcc train {' '.join(shipped_run(cifar10_root, out))}".replace(
        "model.backbone_params={depth: 8, width: 4}", "'model.backbone_params={depth: 8, width: 4}'")
    assert lines[1].startswith(f"fcc {__version__}, torch {torch.__version__}, ")
    assert lines[2] == f"device: {lines[2].split(': ', 1)[1]}" and "(cpu, " in lines[2]
    assert lines[3].startswith(f"python {sys.version.split()[0]} on ")
    said = "\n".join(lines)
    assert "train.epochs=2 differs from the 200-epoch schedule" in said  # the rescaling, said at config load
    assert "warning: train.epochs=2 is too short for this 200-epoch schedule" in said
    assert re.search(r"^speed: channels-last, eager \(auto: 2 epochs < 100", said, re.M)
    epochs = [line for line in lines if re.match(r"epoch \d/2  lr ", line)]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"]
    assert lines[-1].startswith(f"finished {out} in ") and f"{out / 'eval.json'}" in lines[-1]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    times = [datetime.fromisoformat(r["time"]) for r in records]
    assert all(t.tzinfo is not None for t in times) and times == sorted(times)
    # a resume appends to the same log, with its own header
    assert main(["train", "--resume", str(out), "train.epochs=3"]) == 0
    lines = log_lines(out)
    assert [line for line in lines if line.startswith("=====")][-1] == \
        f"===== fcc train --resume {out} train.epochs=3"
    assert [line.split()[1] for line in lines if re.match(r"epoch \d/3  lr ", line)] == ["3/3"]


@pytest.mark.slow
def test_a_run_whose_output_already_goes_to_train_log_writes_it_once(cifar10_root: Path, tmp_path: Path) -> None:
    """`fcc sweep` sends a run's whole output to RUN/train.log: the run then adds nothing of its own."""
    out = tmp_path / "run"
    out.mkdir()
    with open(out / "train.log", "ab") as log:
        done = subprocess.run([sys.executable, "-m", "fcc_lt", "train", *tiny_run_overrides(cifar10_root, out)],
                              stdout=log, stderr=log, env=subprocess_env(), timeout=300)
    assert done.returncode == 0
    text = (out / "train.log").read_text()
    assert len(re.findall(r"^epoch 1/2  lr ", text, re.M)) == 1 and "=====" not in text


def test_progress_lines_where_stderr_is_no_terminal(cifar10_root: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Plain lines (here every step: TQDM_MININTERVAL=0) with running means from the first step, and the
    evaluation's own lines; no carriage return anywhere."""
    monkeypatch.setenv("TQDM_MININTERVAL", "0")
    trainer = Trainer(load_config(None, tiny_run_overrides(cifar10_root, tmp_path / "run", "train.progress=true",
                                                           "eval.confusion_png_max_classes=0")))
    losses: list[float] = []
    real = trainer.step.objective

    def objective(*args):
        out = real(*args)
        losses.append(float(out.loss.detach()))
        return out

    trainer.step.objective = objective  # type: ignore[assignment]
    trainer.fit()
    err = capsys.readouterr().err
    assert "\r" not in err
    steps = [line for line in err.splitlines() if line.startswith("epoch 1/2: ")]
    assert len(steps) == 15
    first = re.fullmatch(r"epoch 1/2: 1/15  loss ([\d.]+)  acc ([\d.]+)  img/s \d+  lr 0\.05", steps[0])
    assert first and float(first.group(1)) == pytest.approx(losses[0], abs=5e-5)
    second = re.match(r"epoch 1/2: 2/15  loss ([\d.]+)", steps[1])
    assert float(second.group(1)) == pytest.approx((losses[0] + losses[1]) / 2, abs=5e-5)  # a running mean
    assert "epoch 1: evaluating test: 1/1" in err and "final evaluation: test: 1/1" in err


def test_log_messages_and_warnings_print_above_a_progress_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    from tqdm import tqdm

    from fcc_lt.cli.main import _ConsoleHandler, _show_warning

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    bar = tqdm(total=10, desc="epoch 1/2", file=screen, mininterval=0)
    bar.update(3)
    handler = _ConsoleHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.emit(logging.LogRecord("fcc", logging.INFO, __file__, 1, "compiled in 3.0 s", None, None))
    _show_warning("tracker failed", UserWarning, __file__, 1)
    bar.close()
    for message in ("compiled in 3.0 s", "warning: tracker failed"):
        before, _, after = screen.getvalue().partition(message)
        assert before.endswith("\r") and after.startswith("\n")  # the bar's line was cleared first
        assert "epoch 1/2" not in before.rsplit("\n", 1)[-1].rsplit("\r", 2)[-1]


def test_the_end_of_training_says_where_results_are_and_a_finished_run_is_not_redone(
        cifar10_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import fcc_lt.engine.trainer

    caplog.set_level(logging.INFO, logger="fcc")
    out = tmp_path / "run"
    assert main(["train", *tiny_run_overrides(cifar10_root, out, "eval.confusion_png_max_classes=0")]) == 0
    top1 = json.loads((out / "eval.json").read_text())["top1"]
    assert re.search(rf"finished {re.escape(str(out))} in [\d.]+ s: top-1 {top1:.2f}% on test, "
                     rf"{re.escape(str(out / 'eval.json'))}", caplog.text)
    before = {name: (out / name).read_bytes() for name in ("eval.json", "metrics.jsonl", "config.yaml")}
    caplog.clear()

    def no_evaluation(*args, **kwargs):
        raise AssertionError("a finished run was evaluated again")

    monkeypatch.setattr(fcc_lt.engine.trainer, "evaluate_to_files", no_evaluation)
    assert main(["train", "--resume", str(out), "train.lr=0.01"]) == 0
    assert f"{out} is finished: 2 epochs trained, evaluated in {out / 'eval.json'}; nothing to do" in caplog.text
    assert {name: (out / name).read_bytes() for name in before} == before  # config.yaml records no change
    assert not (out / "config_history.yaml").exists()
    assert "is finished: 2 epochs trained" in log_lines(out)[-1]


def test_a_resume_reads_metrics_jsonl_within_bounds(tmp_path):
    """metrics.jsonl is read back on resume (to drop the epochs trained again); a FIFO or a file over the cap in
    its place is an error naming it, not a hang or a read of gigabytes."""
    import os

    from fcc_lt.engine.run_dir import MetricsFile
    from fcc_lt.util.errors import OutputError

    metrics = MetricsFile(tmp_path)
    metrics.path.write_text('{"epoch": 1}\n{"epoch": 2}\n{"epoch": 3, "cut sh', encoding="utf-8")
    metrics.truncate(3)
    assert metrics.path.read_text(encoding="utf-8") == '{"epoch": 1}\n{"epoch": 2}\n'
    metrics.path.unlink()
    os.mkfifo(metrics.path)
    with pytest.raises(OutputError, match=r"metrics\.jsonl: cannot read metrics file: .*not a regular file"):
        metrics.truncate(1)


def test_the_run_log_appended_to_must_be_a_regular_file(tmp_path: Path) -> None:
    """train.log is appended to on every resume; a FIFO in its place (which would block the run until a reader
    came) or a folder is an OutputError naming the file, at once (metrics.jsonl is read through the bounded
    reader before any append: test_a_resume_reads_metrics_jsonl_within_bounds)."""
    import os

    from fcc_lt.util.errors import OutputError
    from fcc_lt.util.files import open_append

    with open_append(tmp_path / "train.log", "the run's log") as f:
        f.write("one\n")
    with open_append(tmp_path / "train.log", "the run's log") as f:
        f.write("two\n")
    assert (tmp_path / "train.log").read_text(encoding="utf-8") == "one\ntwo\n"
    os.mkfifo(tmp_path / "fifo.log")
    with pytest.raises(OutputError, match=r"the run's log .*fifo\.log: it is a FIFO"):
        open_append(tmp_path / "fifo.log", "the run's log")
    (tmp_path / "folder.log").mkdir()
    with pytest.raises(OutputError, match=r"folder\.log: it is a folder"):
        open_append(tmp_path / "folder.log", "the run's log")


def test_a_sweep_reads_a_failed_runs_log_tail_without_blocking(tmp_path: Path) -> None:
    import os

    from fcc_lt.experiments.sweep.processes import failure_line

    log = tmp_path / "train.log"
    log.write_text("x\n" * 10000 + "error: the reason\nlast\n", encoding="utf-8")
    assert failure_line(log) == "error: the reason"
    log.unlink()
    os.mkfifo(log)
    assert failure_line(log) == ""  # a FIFO is not read (it would wait for a writer)
