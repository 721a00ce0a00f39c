"""Ctrl-C while `fcc` starts up: print "interrupted" and exit 130 at once, never a traceback or a crash.

Until a command begins its work, an interrupted process has nothing to save. Python's own reaction, a
KeyboardInterrupt raised wherever the interpreter happens to be, is harmful there: raised inside
``import torch`` it leaves torch's native extension half-initialised, and the next use of torch (even the
clean-up at exit) segfaults or aborts. So from the first line of the entry point until the command's
modules are imported, SIGINT ends the process directly (``os._exit``, which runs no Python clean-up, so
nothing can touch a half-imported module); then Python's usual handler is put back for the command,
whose own handlers (training's stop-after-the-step) take over from there.

Only ``os`` and ``_signal`` (both loaded with the interpreter itself) are imported here, so the guard is in
place within the first milliseconds.
"""

from __future__ import annotations

# _signal: the C module behind `signal`, which would import enum first (6 ms, a third of the unguarded time)
import _signal as signal
import os

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a process ended by Ctrl-C


def exit_interrupted(signum: int, frame: object) -> None:
    """The start-up SIGINT handler: one line, exit 130, no Python clean-up."""
    os.write(2, b"interrupted\n")
    os._exit(EXIT_INTERRUPTED)


def guard() -> object:
    """Install ``exit_interrupted`` for SIGINT; returns the handler to give back to ``release``.

    Left alone: a SIGINT that is ignored (a background job, nohup), a handler someone else installed, and
    any thread but the main one (which cannot set handlers: None is returned)."""
    try:
        previous = signal.getsignal(signal.SIGINT)
        if previous in (signal.default_int_handler, signal.SIG_DFL, exit_interrupted):
            signal.signal(signal.SIGINT, exit_interrupted)
    except ValueError:  # not the main thread
        return None
    return previous


def release(previous: object) -> None:
    """End the start-up phase: SIGINT raises KeyboardInterrupt again (or does whatever ``previous`` did)."""
    if previous is None or signal.getsignal(signal.SIGINT) is not exit_interrupted:
        return
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is exit_interrupted else previous)
    except ValueError:  # not the main thread
        return
