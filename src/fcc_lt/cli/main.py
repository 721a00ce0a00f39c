"""The `fcc` command: train, eval, predict, analyze, data, configs, report.

Errors meant for the user (bad config, missing data, unusable checkpoint) print one message and exit
with status 2 (3 for a diverged run, 128+N when stopped by signal N); anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from typing import Any

from fcc_lt import __version__
from fcc_lt.cli import startup
from fcc_lt.util.errors import FccError


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: each command family adds its own subcommands."""
    from fcc_lt.cli import analyze, completion, configs, data, evaluate, experiments, export, train

    parser = argparse.ArgumentParser(prog="fcc", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fcc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    train.add_parsers(sub)
    evaluate.add_parsers(sub)
    export.add_parsers(sub)
    analyze.add_parsers(sub)
    data.add_parsers(sub)
    experiments.add_sweep_parser(sub)
    configs.add_parsers(sub)
    experiments.add_parsers(sub)
    completion.add_parsers(sub)
    parser.set_defaults(root_parser=parser)  # for `fcc completion`, which describes the whole parser
    return parser


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None,
                  line: Any = None) -> None:
    _console(f"warning: {message}")


def _console(text: str) -> None:
    """A message on stderr, above a progress bar rather than into its line."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stderr)


class _ConsoleHandler(logging.Handler):
    """Log records (``fcc``'s info lines and warnings) on stderr through tqdm, so a bar stays whole."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _console(self.format(record))
        except Exception:  # logging's own policy: a failing handler reports and goes on
            self.handleError(record)


# Commands that never import torch: they start without paying (or guarding) its import.
_WITHOUT_TORCH = {"configs", "report", "plot", "completion"}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may follow options (`fcc train cfg.yaml --overwrite train.epochs=3`)
    stray = [e for e in extra if e.startswith("-") or "=" not in e]
    if stray or (extra and args.command not in ("train", "eval", "config")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        if args.command in ("train", "config"):
            args.items = [*args.items, *extra]
        else:
            args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one command; user errors are one line and an exit status, never a traceback.

    Start-up (parsing, and importing torch for the commands that use it) runs under ``fcc_lt.cli.startup``'s
    guard, so Ctrl-C there exits 130 at once instead of interrupting torch's native initialisation
    (which crashes the process); the command itself runs with Python's usual KeyboardInterrupt.
    """
    previous = startup.guard()
    try:
        args = _parse(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # the command line, for a run's train.log
        warnings.showwarning = _show_warning
        logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[_ConsoleHandler()])
        if args.command not in _WITHOUT_TORCH:
            import torch  # noqa: F401 - imported here, under the guard, rather than inside the command
    finally:
        startup.release(previous)
    try:
        return int(args.func(args))
    except FccError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return startup.EXIT_INTERRUPTED
    except BrokenPipeError:  # `fcc configs | head`: the reader left; nothing is wrong
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the interpreter's final flush quiet
        return 0
    finally:
        # after the handlers above dropped the exception (and with it any trainer its frames held);
        # a command that never imported fcc_lt.util.distributed has nothing to clean up, and importing it here
        # could be the first import of torch, outside the start-up guard
        if "fcc_lt.util.distributed" in sys.modules:
            from fcc_lt.util.distributed import cleanup

            cleanup()
