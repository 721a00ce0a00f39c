"""Ctrl-C while `fcc` starts up (most of that time is `import torch`) prints "interrupted" and exits
130: no traceback, no segfault or abort from a half-initialised torch, for both entry points (the `fcc`
console script and `python -m fcc_lt`, which torchrun starts)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fcc_lt.cli import startup
from fcc_lt.cli.main import main

SRC = Path(__file__).resolve().parents[2] / "src"
# a command that imports torch and then fails at once: start-up is nearly all it does
COMMAND = ["eval", "/nonexistent/fcc-startup-test-run"]
FRACTIONS = (0.1, 0.25, 0.4, 0.55)  # of the time the command takes to its end


@pytest.fixture(autouse=True)
def foreground_sigint() -> Iterator[None]:
    """Python's own SIGINT handler, as in a foreground shell, even when pytest itself was started with
    SIGINT ignored (in the background, under nohup), where these tests would otherwise see SIG_IGN."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def foreground_child() -> None:
    """Children start with SIGINT at its default (so Python installs its handler), whatever pytest had."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def child_env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def entry_points() -> dict[str, list[str]]:
    points = {"python -m fcc_lt": [sys.executable, "-m", "fcc_lt"]}
    script = shutil.which("fcc", path=str(Path(sys.executable).parent))
    if script is not None:
        points["fcc console script"] = [script]
    return points


def interrupted_after(cmd: list[str], delay: float) -> tuple[int, str]:
    proc = subprocess.Popen([*cmd, *COMMAND], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env(), preexec_fn=foreground_child)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.slow
@pytest.mark.parametrize("entry", sorted(entry_points()))
def test_ctrl_c_during_start_up_exits_130_without_a_traceback(entry: str) -> None:
    """Once, depending on the moment: a traceback from inside an import, a segfault (-11) or an abort
    from torch's native extension imported a second time by the clean-up, or RuntimeErrors about
    types registered twice."""
    cmd = entry_points()[entry]
    start = time.monotonic()
    done = subprocess.run([*cmd, *COMMAND], capture_output=True, text=True, env=child_env(), timeout=120,
                          preexec_fn=foreground_child)
    whole = time.monotonic() - start
    assert done.returncode == 2 and "not a run directory" in done.stderr, done.stderr
    for fraction in FRACTIONS:
        delay = max(0.15, fraction * whole)  # past the interpreter's own start (before fcc's code runs)
        code, err = interrupted_after(cmd, delay)
        assert code == 130, f"SIGINT after {delay:.2f} s of {whole:.2f} s: exit {code}, stderr:\n{err[-3000:]}"
        assert err.strip() == "interrupted", f"SIGINT after {delay:.2f} s: stderr:\n{err[-3000:]}"


def test_start_up_guard_is_released_for_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The guard covers start-up only: the command gets Python's KeyboardInterrupt (training installs
    its own stop-after-the-step handlers on top), and a caller's own handler is given back."""
    (tmp_path / "a.yaml").write_text("# a config\n")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    seen = []

    def spy(args: object) -> int:
        seen.append(signal.getsignal(signal.SIGINT))
        return 0

    import fcc_lt.cli.configs as cli

    original = cli.cmd_configs
    cli.cmd_configs = spy  # type: ignore[assignment]
    try:
        assert main(["configs", "--root", str(tmp_path)]) == 0
    finally:
        cli.cmd_configs = original  # type: ignore[assignment]
    assert seen == [signal.default_int_handler]  # what the command ran with
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    def mine(signum: int, frame: object) -> None:
        raise AssertionError("not called")

    previous = signal.signal(signal.SIGINT, mine)
    try:
        assert main(["configs", "--root", str(tmp_path)]) == 0
        assert signal.getsignal(signal.SIGINT) is mine  # someone else's handler is left alone
    finally:
        signal.signal(signal.SIGINT, previous)
    capsys.readouterr()


def test_guard_and_release() -> None:
    previous = startup.guard()
    try:
        assert previous is signal.default_int_handler
        assert signal.getsignal(signal.SIGINT) is startup.exit_interrupted
    finally:
        startup.release(previous)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    # an ignored SIGINT (a background job, nohup) stays ignored
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        previous = startup.guard()
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        startup.release(previous)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # the entry point's guard, then cli.main's: released to Python's handler, not to the guard
    outer = startup.guard()
    inner = startup.guard()
    startup.release(inner)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    startup.release(outer)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_guard_ends_the_process_at_once_on_sigint() -> None:
    code = ("import os, signal, time\nfrom fcc_lt.cli import startup\nstartup.guard()\n"
            "os.kill(os.getpid(), signal.SIGINT)\ntime.sleep(5)\nprint('not reached')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), timeout=60,
                          preexec_fn=foreground_child)
    assert done.returncode == 130 and done.stderr == "interrupted\n" and done.stdout == ""
