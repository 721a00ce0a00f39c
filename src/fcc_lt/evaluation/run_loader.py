"""The one run loader: a run directory (or a checkpoint file) -> its config, class statistics, class
names and weights (``read_run``), or a ready model on a device (``load_run``).

Everything that uses a trained network goes through here: `fcc eval`, `fcc predict`, tau sweeps, CAM
generation, ``model.init_from`` and the DiVE teacher. So they all rebuild the network the same way,
apply the run's tau-normalisation the same way, validate a checkpoint's saved config like a config
file, and name the config key or command option the user gave in every error.

A checkpoint is untrusted input: it is read with ``weights_only=True``, its saved config is validated,
and the network it describes is first built on the ``meta`` device (no memory) and compared with the
checkpoint's tensors, so a crafted config cannot make us allocate a model far larger than the file.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fcc_lt.config.load import apply_overrides, from_dict, read_yaml
from fcc_lt.config.schema import Config
from fcc_lt.config.validate import validate
from fcc_lt.data.class_stats import ClassStats
from fcc_lt.models.checkpoint_file import load_checkpoint, load_model_state, resolve_checkpoint
from fcc_lt.models.tau_norm import tau_normalized_network
from fcc_lt.util.errors import CheckpointError, ConfigError, FccError, OutputError
from fcc_lt.util.run_lock import held_here, is_locked

_MAX_LISTED = 10_000  # entries of a folder looked at for a "did you mean"


def _not_a_run(run_dir: Path, resuming: bool) -> str:
    """Why ``run_dir`` is no run directory, with the likely mistake: a name that does not exist (and the
    closest one beside it), a run's config.yaml named instead of its folder, a folder of runs."""
    if not os.path.lexists(run_dir):
        parent = run_dir.parent
        try:
            names = [p.name for _, p in zip(range(_MAX_LISTED), parent.iterdir()) if p.is_dir()]
        except OSError:
            names = []
        near = difflib.get_close_matches(run_dir.name, names, n=1, cutoff=0.6)
        return (f"{run_dir} is not a run directory: it does not exist"
                + (f"; did you mean {parent / near[0]}?" if near else ""))
    if not run_dir.is_dir():
        if run_dir.name == "config.yaml" and (run_dir.parent / "checkpoints").is_dir():
            return f"{run_dir} is a run's config file; name the run directory itself: {run_dir.parent}"
        return f"{run_dir} is not a run directory but a file"
    missing = f"{run_dir} is not a run directory: {run_dir / 'config.yaml'} is missing"
    try:
        runs = sorted(p.name for _, p in zip(range(_MAX_LISTED), run_dir.iterdir()) if (p / "config.yaml").is_file())
    except OSError:
        runs = []
    if runs:
        return f"{missing}; it holds run directories ({', '.join(runs[:3])}{' ...' if len(runs) > 3 else ''})"
    if resuming:
        return (f"{missing} (a run directory is what `fcc train` writes; a run stopped before it wrote its config "
                "has nothing to resume: start it again from its config file)")
    return f"{missing} (a run directory is what `fcc train` writes)"


def load_run_config(run_dir: Path, overrides: Sequence[str] = (), *, resuming: bool = False) -> Config:
    """The resolved config a run directory was started with (its config.yaml), optionally overridden;
    ``resuming``: for `fcc train --resume` (what its error says)."""
    run_dir = Path(run_dir)
    path = run_dir / "config.yaml"
    if not os.path.lexists(path):  # anything else there (a folder, a FIFO) is named by the bounded reader
        raise ConfigError(_not_a_run(run_dir, resuming))
    raw = apply_overrides(read_yaml(path), list(overrides))
    cfg = from_dict(raw, str(path))
    cfg.out = str(run_dir)
    validate(cfg)
    return cfg


@dataclass
class RunArtifacts:
    """What a run's checkpoint holds, checked: the weights and, when known, config, statistics, names."""

    path: Path  # the checkpoint file
    run_dir: Path | None  # the run directory the checkpoint belongs to, if any
    state_dict: dict[str, Tensor]
    config: Config | None
    stats: ClassStats | None
    class_names: list[str] | None
    epoch: int | str | None  # the last finished epoch, or "E (stopped after step S)"
    state: dict[str, Any] = field(repr=False, default_factory=dict)
    config_source: str = ""  # where the config came from, for errors
    original: bool = False  # weights of the original FCC / bag-of-tricks code (its key names)

    def weights_for(self, model: nn.Module, source: str, exclude: Sequence[str] = ()) -> dict[str, Tensor]:
        """The weights under ``model``'s names: an original-code checkpoint's keys are converted."""
        if not self.original:
            return self.state_dict
        from fcc_lt.evaluation.original_checkpoint import convert_original_state

        return convert_original_state(self.state_dict, model, source, exclude=exclude)

    def shown_path(self) -> str:
        """The checkpoint path relative to its run directory when inside it (for eval.json)."""
        if self.run_dir is not None:
            try:
                return str(self.path.resolve().relative_to(self.run_dir.resolve()))
            except ValueError:
                pass
        return str(self.path)

    def require_config(self, what: str) -> Config:
        if self.config is None:
            raise CheckpointError(f"{what}: {self.path} holds no config and is not inside a run directory "
                                  "(<run>/checkpoints/*.pt next to <run>/config.yaml), so the network it holds "
                                  "is unknown; point it at the run directory")
        return self.config


def _run_dir_of(path: Path) -> Path | None:
    """The run directory of ``<run>/checkpoints/<name>.pt`` (when it has a config.yaml)."""
    if path.parent.name == "checkpoints" and (path.parent.parent / "config.yaml").is_file():
        return path.parent.parent
    return None


def refuse_while_training(source: str | Path, what: str, checkpoint: str = "last") -> None:
    """The one rule for the commands that use a trained run (`fcc eval`, `fcc predict`, `fcc data
    cam-generate`): not while another process trains, resumes or overwrites it (its lock is held), since its
    checkpoint is not final and changes under them; a lock this process holds (a Trainer made here) does not
    count. ``source`` is a run directory or a checkpoint file, ``checkpoint`` 'last', 'best' or a checkpoint
    file; a file inside ``<run>/checkpoints/`` names that run."""
    for item in (source, None if checkpoint in ("last", "best") else checkpoint):
        if item is None:
            continue
        path = Path(item)
        run_dir = path if path.is_dir() else _run_dir_of(path)
        if run_dir is not None and is_locked(run_dir) and not held_here(run_dir):
            raise OutputError(f"{what}: {run_dir} is in use by another fcc process (training or resuming): its "
                              "checkpoints are not final and change under you; wait for it to finish (or stop "
                              "it) and run this then")


def _saved_config(state: Mapping[str, Any], path: Path, what: str) -> Config | None:
    saved = state.get("config")
    if saved is None:
        return None
    source = f"{path} (its saved config)"
    try:
        cfg = from_dict(saved, source)
        validate(cfg)
    except ConfigError as err:
        raise CheckpointError(_in_file(what, source, err)) from None
    return cfg


def _in_file(what: str, source: str | Path, err: Exception) -> str:
    """``err`` about a run's config, under the key or option that named the run (``what``) and the file the
    config came from: a teacher's bad backbone parameter is not the student's."""
    text = str(err)
    return f"{what}: {text}" if text.startswith(str(source)) else f"{what}: {source}: {text}"


def _epoch_of(state: Mapping[str, Any]) -> int | str | None:
    next_epoch, next_step = state.get("next_epoch"), state.get("next_step")
    if not isinstance(next_epoch, int) or isinstance(next_epoch, bool):
        return None
    if isinstance(next_step, int) and next_step > 0:
        return f"{next_epoch} (stopped after step {next_step})"
    return next_epoch - 1


def _load_any(path: Path) -> tuple[dict[str, Any], bool]:
    """An fcc checkpoint, or the original code's ``.pth`` (weights only): (state, is_original)."""
    from fcc_lt.evaluation.original_checkpoint import (
        NotOriginalError,
        doubled_names_problem,
        is_original_state,
        load_original_checkpoint,
    )

    try:
        state = load_checkpoint(path)
    except CheckpointError as ours:
        try:
            return {"model": load_original_checkpoint(path)}, True
        except NotOriginalError as theirs:  # it reads (NumPy numbers allowed), but holds no network's weights
            raise CheckpointError(f"{theirs}; nor an fcc checkpoint") from None
        except CheckpointError:
            raise ours from None
    doubled = doubled_names_problem(state["model"])
    if doubled is not None:
        raise CheckpointError(f"{path}: {doubled}")
    return state, is_original_state(state["model"]) and "config" not in state


def read_run(source: str | Path, checkpoint: str = "last", *, what: str = "run",
             overrides: Sequence[str] = (), config: Config | None = None) -> RunArtifacts:
    """Read a run's checkpoint without building anything.

    ``source`` is a run directory (its ``checkpoint``: 'last', 'best' or a checkpoint file) or a
    checkpoint file, ours or the original code's. The config is the run directory's config.yaml (with
    ``overrides``), else the one saved in the checkpoint, else ``config`` (what the caller knows the
    network to be, e.g. for the original's checkpoints, which hold none); ``what`` names the key or
    option the source came from, for errors.
    """
    source = Path(source)
    try:
        if source.is_dir() and checkpoint not in ("last", "best"):
            path = resolve_checkpoint(checkpoint)
        else:
            path = resolve_checkpoint(source, checkpoint)
    except CheckpointError as err:
        raise CheckpointError(f"{what}: {err}") from None
    except (OSError, ValueError) as err:  # a name the OS cannot take (NUL byte, too long a component)
        raise CheckpointError(f"{what}: {source}: not a usable path ({err})") from None
    state, original = _load_any(path)
    run_dir = source if source.is_dir() else _run_dir_of(path)
    try:
        cfg = load_run_config(run_dir, overrides) if run_dir is not None else None
    except ConfigError as err:
        raise ConfigError(_in_file(what, run_dir / "config.yaml", err)) from None
    config_source = str(run_dir / "config.yaml") if run_dir is not None else f"{path} (its saved config)"
    if cfg is None:
        cfg = _saved_config(state, path, what)
        if cfg is None and config is not None:
            cfg, config_source = config, "the config it is used with"
        if cfg is not None and overrides:
            raw = apply_overrides(cfg.to_dict(), list(overrides))
            cfg = from_dict(raw, f"{path} (its saved config, overridden)")
            validate(cfg)
    stats = ClassStats.from_checkpoint(state, str(path))
    names = state.get("class_names")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise CheckpointError(f"{what}: {path}: 'class_names' is not a list of strings")
    if stats is not None and names is not None and len(names) != stats.num_classes:
        raise CheckpointError(f"{what}: {path}: {len(names)} class names for {stats.num_classes} classes")
    return RunArtifacts(path, run_dir, dict(state["model"]), cfg, stats, names, _epoch_of(state), state,
                        config_source, original)


def num_classes_of(art: RunArtifacts) -> int:
    """The number of classes the checkpoint's network was trained for: its statistics, else its classifier."""
    if art.stats is not None:
        return art.stats.num_classes
    keys = ("classifier.weight", "classifier.fc.weight") if art.original else ("head.fc.weight", "head.weight")
    for key in keys:
        if key in art.state_dict and art.state_dict[key].dim() == 2:
            return int(art.state_dict[key].shape[0])
    raise CheckpointError(f"{art.path}: holds no class statistics and no classifier weights; cannot tell its "
                          "number of classes")


def build_checked_network(cfg: Config, num_classes: int, art: RunArtifacts, source: str) -> nn.Module:
    """The network of ``cfg`` with the weights of ``art``, on the CPU.

    It is built on the meta device first (no memory, no init work) and compared with the checkpoint's
    tensors: a config that does not describe these weights is refused before anything is allocated.
    """
    from fcc_lt.models.network import build_network

    try:
        with torch.device("meta"):
            shape_only = build_network(cfg, num_classes)
    except FccError as err:
        raise CheckpointError(f"{source}: the network of {art.config_source} cannot be built: {err}") from None
    state_dict = art.weights_for(shape_only, source)
    load_model_state(shape_only, state_dict, source, check_only=True)
    del shape_only
    network = build_network(cfg, num_classes)
    load_model_state(network, state_dict, source)
    return network


@dataclass
class LoadedRun(RunArtifacts):
    """A run's network, ready on ``device`` in eval mode (tau-normalised where the run's config says)."""

    model: nn.Module = field(default=None, repr=False)  # type: ignore[assignment]
    network: nn.Module = field(default=None, repr=False)  # type: ignore[assignment]  # the bare Network
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    tau_norm: float | None = None


def load_run(source: str | Path, checkpoint: str = "last", *, what: str = "run", overrides: Sequence[str] = (),
             device: torch.device | str | None = None, tau_norm: bool = True,
             config: Config | None = None) -> LoadedRun:
    """A run's network with its weights, on ``device`` (default: the run's ``device``), in eval mode.

    With ``tau_norm`` and ``eval.tau_norm`` set in the run's config, ``model`` evaluates with the
    tau-normalised head (``network`` stays the plain one); that is what eval.json of such a run reports,
    so `fcc predict` and `fcc eval` agree with it.
    """
    from fcc_lt.util.distributed import resolve_device

    art = read_run(source, checkpoint, what=what, overrides=overrides, config=config)
    cfg = art.require_config(what)
    network = build_checked_network(cfg, num_classes_of(art), art, f"{what} {art.path}")
    dev = torch.device(device) if device is not None else resolve_device(cfg.device)
    network.to(dev).eval()
    model: nn.Module = network
    tau = cfg.eval.tau_norm if tau_norm else None
    if tau is not None:
        model = tau_normalized_network(network, tau)
    return LoadedRun(**{k: getattr(art, k) for k in RunArtifacts.__dataclass_fields__}, model=model,
                     network=network, device=dev, tau_norm=tau)
