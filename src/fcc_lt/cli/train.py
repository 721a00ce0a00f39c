"""`fcc train` and `fcc config`: a config file and its overrides -> a run (or its resolved, checked config)."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fcc_lt.util import argtypes
from fcc_lt.util.errors import ConfigError

if TYPE_CHECKING:
    from fcc_lt.config.schema import Config


def _split_config_and_overrides(items: list[str]) -> tuple[str | None, list[str]]:
    if items and "=" not in items[0]:
        return items[0], items[1:]
    return None, items


def cmd_train(args: argparse.Namespace) -> int:
    from fcc_lt.engine.run_dir import holds_smoke_run
    from fcc_lt.engine.trainer import Trainer

    # what loading the config says (schedule rescaling, "too short") is shown now and kept for train.log
    said = _Said()
    logging.getLogger("fcc").addHandler(said)
    try:
        with warnings.catch_warnings(record=True) as caught:
            cfg = _train_config(args)
    finally:
        logging.getLogger("fcc").removeHandler(said)
        for w in caught:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if cfg is None:
        return 2
    # a smoke run replaces only an earlier smoke run (its own throw-away folder); any other run is refused
    # as every start refuses it, unless --overwrite says so
    overwrite = args.overwrite or (args.smoke and holds_smoke_run(Path(cfg.out or "runs/default")))
    notes = [*said.lines, *(f"warning: {w.message}" for w in caught)]
    Trainer(cfg, resume=bool(args.resume), overwrite=overwrite, notes=notes,
            command=["fcc", *getattr(args, "argv", sys.argv[1:])]).fit()
    return 0


class _Said(logging.Handler):
    """The ``fcc`` logger's lines while the config loads (the run's train.log does not exist yet)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(("warning: " if record.levelno >= logging.WARNING else "") + record.getMessage())


def _train_config(args: argparse.Namespace) -> Any:
    """The config `fcc train` runs (None after printing the usage: no config was named)."""
    from fcc_lt.config.load import load_config
    from fcc_lt.evaluation.run_loader import load_run_config

    config_path, overrides = _split_config_and_overrides(args.items)
    if args.resume:
        if config_path is not None:
            raise ConfigError("--resume takes the run directory; its config.yaml is used, so give only "
                              "key=value overrides after it")
        if args.smoke:
            raise ConfigError("--smoke starts a short throw-away run from a config file; it cannot resume one")
        check_resume_overrides(overrides)
        cfg = load_run_config(Path(args.resume), overrides, resuming=True)
    elif config_path is None and not overrides:
        args.parser.print_usage(sys.stderr)
        print("fcc train: name a config file (`fcc configs` lists the shipped ones), e.g.\n"
              "  fcc train cifar10_lt/ce_fcc_if100", file=sys.stderr)
        return None
    elif args.smoke:
        from fcc_lt.config.schedule import ScheduleWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ScheduleWarning)  # a smoke run is short on purpose
            cfg = load_config(config_path, [*overrides, *smoke_overrides(config_path, overrides)])
        print(f"smoke run: {cfg.train.epochs} epochs of at most {cfg.train.max_steps_per_epoch} steps, "
              f"{cfg.eval.max_batches} evaluation batches, in {cfg.out}; it checks that every part of the config "
              "runs, its numbers mean nothing", file=sys.stderr)
    else:
        cfg = load_config(config_path, overrides)
    return cfg


SMOKE_EPOCHS, SMOKE_STEPS, SMOKE_BATCHES = 4, 2, 2


def smoke_overrides(config_path: str | None, overrides: list[str]) -> list[str]:
    """What ``--smoke`` adds: a few epochs (the schedule rescaled onto them, so that every deferred part,
    FCC, DRW, DRS and the LR drops, still acts), a few steps each, a few evaluation batches, its own folder.
    Keys the user gives win."""
    from fcc_lt.config.load import apply_overrides, parse_override, read_yaml
    from fcc_lt.config.recipes import resolve_config

    given = {".".join(parse_override(o)[0]) for o in overrides}
    raw = apply_overrides(read_yaml(resolve_config(config_path)) if config_path else {}, overrides)
    train = raw.get("train") or {}
    epochs = train.get("epochs", 200)
    extra = {"train.epochs": min(epochs, SMOKE_EPOCHS) if isinstance(epochs, int) else SMOKE_EPOCHS,
             "train.max_steps_per_epoch": SMOKE_STEPS, "eval.max_batches": SMOKE_BATCHES, "train.eval_every": 1,
             "out": f"runs/smoke/{Path(config_path).stem if config_path else 'default'}"}
    if train.get("schedule_epochs") is None and isinstance(epochs, int):
        extra["train.schedule_epochs"] = epochs  # rescale the config's epoch keys onto the smoke run
    return [f"{k}={v}" for k, v in extra.items() if k not in given]


RESUME_FIXED = ("data", "model", "seed", "out")


def check_resume_overrides(overrides: list[str]) -> None:
    """Overrides that cannot apply to a run half done: its data and network are in its checkpoint, its
    random streams come from its seed."""
    from fcc_lt.config.load import parse_override

    for text in overrides:
        key = ".".join(parse_override(text)[0])
        if key.split(".")[0] in RESUME_FIXED:
            what = {"data": "its training set", "model": "its network", "seed": "its random streams",
                    "out": "its run directory"}[key.split(".")[0]]
            raise ConfigError(f"override {text!r}: {key} cannot change when resuming (the run's checkpoint "
                              f"holds {what}); start a new run from its config.yaml instead: fcc train "
                              f"RUN/config.yaml {text} out=NEW_RUN")


def cmd_config(args: argparse.Namespace) -> int:
    from fcc_lt.config.explain import explain, render

    config_path, overrides = _split_config_and_overrides(args.items)
    cfg, rows = explain(config_path, overrides)
    unchecked = start_checks(cfg)
    print(f"# fcc config {shlex.join(args.items)}: the resolved config (a config file: `fcc config ... > mine.yaml`, "
          "then `fcc train mine.yaml`), each value's source in its comment")
    sys.stdout.write(render(rows))
    last = Path(cfg.out or "runs/default") / "checkpoints" / "last.pt"
    if last.exists():
        print(f"# note: out {cfg.out} already holds a run: `fcc train` refuses it unless --resume (continue it) or "
              "--overwrite (replace it)")
    print(f"# valid: {config_path or 'the defaults'} with {len(overrides)} override(s) passes every check `fcc train` "
          f"makes before training, and the files it names are there; not checked: {'; '.join(unchecked)}")
    return 0


def start_checks(cfg: Config) -> list[str]:
    """What `fcc train` would find missing when it starts, checked now without reading the data: the
    checkpoints that model.init_from and distill.teacher name are readable files, the dataset is where
    data.* says (or can be fetched), a validation split exists where eval needs one. Raises the error
    training would raise; returns what stays unchecked, for `fcc config` to say so."""
    from fcc_lt.data.build import data_presence
    from fcc_lt.models.checkpoint_file import check_checkpoint_source

    sources = [(key, value) for key, value in (("model.init_from", cfg.model.init_from),
                                               ("distill.teacher", cfg.distill.teacher)) if value]
    for key, source in sources:
        check_checkpoint_source(source, key)
    unchecked = data_presence(cfg)
    if sources:
        unchecked.append(f"what {' and '.join(key for key, _ in sources)} hold (weights, shapes, class count: "
                         "read when training starts)")
    return unchecked


CONFIG_HELP = ("a config: a YAML file, or the name of a shipped one such as cifar10_lt/ce_fcc_if100 (`fcc configs` "
               "lists them; a file of that path wins); then key.sub=value overrides")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train (and finally evaluate) a run",
                       description="fcc train CONFIG [key.sub=value ...] | fcc train --resume RUN_DIR")
    p.add_argument("items", nargs="*", metavar="CONFIG_OR_OVERRIDE",
                   help=CONFIG_HELP)
    p.add_argument("--resume", metavar="RUN_DIR", type=argtypes.path,
                   help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start afresh in an existing run directory")
    p.add_argument("--smoke", action="store_true",
                   help=f"a throw-away check that every part of the config runs: {SMOKE_EPOCHS} epochs (the "
                        f"schedule rescaled onto them) of {SMOKE_STEPS} steps, {SMOKE_BATCHES} evaluation "
                        "batches, in runs/smoke/<config name> (replacing only an earlier smoke run there)")
    p.set_defaults(func=cmd_train, parser=p)

    p = sub.add_parser("config", help="print the resolved config with where each value came from, and check it",
                       description="fcc config CONFIG [key.sub=value ...]: the config a `fcc train` with the same "
                                   "arguments would run, validated, without training")
    p.add_argument("items", nargs="*", metavar="CONFIG_OR_OVERRIDE",
                   help=CONFIG_HELP)
    p.set_defaults(func=cmd_config)
