"""Helpers shared by the reliability tests (tests/*/test_reliability_*.py); this module holds no tests.

Real runs here are tiny (an 8-layer CIFAR ResNet with 4/8/16 channels on the 240-image fixture, 15 steps
per epoch) so that killing, signalling and resuming them costs seconds. Subprocess runs are
single-threaded (OMP_NUM_THREADS=1): on a shared 2-core machine that keeps their timing steady, and it
makes every process compute bit-identical results, which the equality checks rely on.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import subprocess_env, tiny_run_overrides

# `fcc` as a script that dies in the middle of a checkpoint write, for the kill tests
KILLER = textwrap.dedent("""
    # `fcc` that SIGKILLs itself at one checkpoint write: FCC_TEST_KILL = "<file>:<count>:<moment>",
    # moment 'before' (nothing of the write happened), 'half' (half the bytes in the temporary file).
    import io, os, signal, sys
    import fcc_lt.util.files as ck

    name, count, moment = os.environ["FCC_TEST_KILL"].split(":")
    real = ck.atomic_write_bytes
    seen = 0

    def dying(path, write):
        global seen
        if path.name == name:
            seen += 1
            if seen == int(count):
                if moment == "before":
                    os.kill(os.getpid(), signal.SIGKILL)
                def half(f):
                    buffer = io.BytesIO()
                    write(buffer)
                    data = buffer.getvalue()
                    f.write(data[: len(data) // 2])
                    f.flush()
                    os.fsync(f.fileno())
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(path, half)
        return real(path, write)

    ck.atomic_write_bytes = dying
    from fcc_lt.cli.main import main
    sys.exit(main(sys.argv[1:]))
""")


EPOCHS = 6
STEPS_PER_EPOCH = 15  # 240 long-tailed fixture images (60 * 10^(-k/9) per class), batch 16, drop_last

_CACHE: dict[Any, Any] = {}


def run_overrides(root: Path, out: Path, *extra: str, epochs: int = EPOCHS) -> list[str]:
    """A tiny run with FCC from epoch 2, warm-up and an LR step, so resume must restore all of them."""
    return tiny_run_overrides(root, out, f"train.epochs={epochs}", "train.warmup_epochs=2",
                              f"train.milestones=[{epochs - 1}]", "fcc.enabled=true", "fcc.start_epoch=2",
                              "eval.confusion_png_max_classes=0", *extra)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch single-threaded, as the subprocesses do: on a loaded 2-core machine a multi-threaded
    CPU step can take 100x longer, and in-process runs compared bit for bit must use the same setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cached(key: Any, make: Callable[[], Any]) -> Any:
    """One value per key for the whole pytest process (shared by every reliability module)."""
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


# ------------------------------------------------------------------------------------- subprocesses


def env() -> dict[str, str]:
    return subprocess_env()


def start(args: list[str], log: Path, script: Path | None = None) -> subprocess.Popen:
    """``python -m fcc_lt ARGS`` (or ``python SCRIPT ARGS``) with output in ``log`` (no pipe to fill up)."""
    cmd = [sys.executable, str(script), *args] if script else [sys.executable, "-m", "fcc_lt", *args]
    with open(log, "ab") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env())


def run(args: list[str], log: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m fcc_lt ARGS`` to completion; stdout and stderr captured separately."""
    return subprocess.run([sys.executable, "-m", "fcc_lt", *args], capture_output=True, text=True, env=env(),
                          timeout=timeout)


def wait_until(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 300) -> bool:
    """Poll until ``ready()`` or the process ends; True when ready while the process still runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return proc.poll() is None
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"timed out after {timeout} s waiting for a condition")


def metric_lines(run_dir: Path) -> int:
    """Complete lines of metrics.jsonl (a kill may leave a last line cut short)."""
    try:
        return (run_dir / "metrics.jsonl").read_bytes().count(b"\n")
    except OSError:
        return 0


def kill(proc: subprocess.Popen, signum: int = signal.SIGKILL) -> int:
    if proc.poll() is None:
        proc.send_signal(signum)
    return proc.wait(timeout=300)


# ---------------------------------------------------------------------------------------- results


def weights(path: Path) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint file or of a run directory's last.pt."""
    path = path / "checkpoints" / "last.pt" if path.is_dir() else path
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(run_dir: Path, reference: Path) -> None:
    """Same final weights, one metrics line per epoch with the same numbers, the same eval.json."""
    assert same_weights(weights(run_dir), weights(reference))
    ours, theirs = metrics(run_dir), metrics(reference)
    assert [m["epoch"] for m in ours] == list(range(1, len(theirs) + 1))
    for a, b in zip(ours, theirs):
        assert (a["train_loss"], a["train_acc"], a["test_top1"]) == (b["train_loss"], b["train_acc"], b["test_top1"])
    ours_eval, their_eval = (json.loads((d / "eval.json").read_text()) for d in (run_dir, reference))
    assert ours_eval["per_class"] == their_eval["per_class"]


def subprocess_reference(root: Path, factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted `fcc train` subprocess run of the standard tiny config (made once per session)."""

    def make() -> Path:
        out = factory.mktemp("reference") / "run"
        done = run(["train", *run_overrides(root, out)], out.parent / "log")
        assert done.returncode == 0, done.stderr
        return out

    return cached(("subprocess-reference", str(root)), make)


def inprocess_reference(root: Path, factory: pytest.TempPathFactory) -> Path:
    """The same run trained inside this process (compared only with in-process runs)."""
    from fcc_lt.config.load import load_config
    from fcc_lt.engine.trainer import Trainer

    def make() -> Path:
        out = factory.mktemp("inprocess-reference") / "run"
        with one_thread():
            Trainer(load_config(None, run_overrides(root, out, epochs=3))).fit()
        return out

    return cached(("inprocess-reference", str(root)), make)
