"""Weights trained with the original FCC / bag-of-tricks code, renamed to fcc's parameter names.

The original network is ``backbone`` -> ``module`` (pooling, no weights) -> ``classifier``, saved as
``{'state_dict': model.state_dict(), 'epoch': ..., 'best_result': ..., 'optimizer': ..., ...}`` from a
DataParallel or DDP wrapper, so every key usually carries a ``module.`` prefix. Its backbones name the
stem ``conv1``/``bn1``, the stages ``layer1``..``layer4`` and projection shortcuts ``downsample``; fcc's
name them ``stem.0``/``stem.1``, ``stages.0``..``stages.3`` and ``shortcut``. Blocks keep their names
(``conv1``, ``bn1``, ...) on both sides. Classifiers: ``FC``/``cRT`` (``classifier.weight``/``bias``)
become the linear head (``head.fc.*``, also the frozen part of an ``lws`` head), ``FCNorm`` the cosine
head (``head.weight``), ``LWS`` the lws head (``head.fc.*``, ``head.scales``).

This covers the original's res32_cifar, res10 and res50 as fcc's resnet32, resnet10 and resnet50 (their
structures are the same; the original's resnext50 could not be built there). Anything that does not map,
and every weight of the fcc model left without a value, is a CheckpointError naming the keys.
"""

from __future__ import annotations

import contextlib
import pickle
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fcc_lt.util.errors import CheckpointError, short_repr

_STEM = {"conv1": "stem.0", "bn1": "stem.1"}
_LAYER = re.compile(r"layer([1-4])\.(\d+)\.(.+)")
_DOWNSAMPLE = re.compile(r"downsample\.([01])\.(.+)")
_ORIGINAL_NAME = re.compile(r"(backbone\.(conv1|bn1|layer[1-4])\.|classifier\.)")
_FCC_NAME = re.compile(r"(backbone\.(stem|stages)\.|head\.)")
_SHOWN = 8  # keys named in one error message before "... and N more"


def _strip(key: str) -> str:
    """The key without the DataParallel / DDP wrapper's ``module.`` prefix (the original strips it too)."""
    return key[len("module."):] if key.startswith("module.") else key


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in value.items())


def _weights_of(obj: Any) -> Any:
    """What would hold the weights: ``obj['state_dict']`` of the original's checkpoint dict, else ``obj``."""
    if isinstance(obj, Mapping) and "state_dict" in obj and "format" not in obj:
        return obj["state_dict"]
    return obj


def doubled_names(state: Mapping[str, Any]) -> list[str]:
    """The names present both with and without the DataParallel ``module.`` prefix (``module.x`` and ``x``)."""
    return sorted(k for k in state if isinstance(k, str) and k.startswith("module.") and _strip(k) in state)


def doubled_names_problem(state: Mapping[str, Any]) -> str | None:
    """Why a state dict with both ``module.x`` and ``x`` is not one network's weights, or None."""
    doubled = doubled_names(state)
    if not doubled:
        return None
    return (f"its state dict holds {len(doubled)} weight(s) twice, with and without the DataParallel "
            f"'module.' prefix ({_names([f'{k} and {_strip(k)}' for k in doubled])}), so it is not one "
            "network's weights; save the state dict of one model (either the wrapper's or the bare one's)")


def original_state_dict(obj: Any) -> dict[str, Tensor] | None:
    """The model weights of an original-code checkpoint, ``module.`` prefixes removed; None if ``obj`` is
    not one (an fcc checkpoint, a state dict with fcc's names, anything else)."""
    state = _weights_of(obj)
    if not _is_state_dict(state):
        return None
    stripped = {_strip(k): v for k, v in state.items()}
    if len(stripped) != len(state):  # both "module.x" and "x": not one network's weights
        return None
    prefixed = any(k.startswith("module.") for k in state)
    original_names = any(_ORIGINAL_NAME.match(k) for k in stripped)
    if not (original_names or prefixed):
        return None
    return stripped


def is_original_state(obj: Any) -> bool:
    """True for what the original code saved: ``{'state_dict': ...}`` or a bare state dict with its key
    names or DataParallel ``module.`` prefixes."""
    return original_state_dict(obj) is not None


def _fcc_key(key: str, targets: set[str]) -> str | None:
    """fcc's name for one original key (prefix already stripped), or None when it has none."""
    if _FCC_NAME.match(key):  # already fcc's name (an fcc model saved from a DataParallel wrapper)
        return key
    if key.startswith("backbone."):
        rest = key[len("backbone."):]
        part, _, leaf = rest.partition(".")
        if part in _STEM and leaf:
            return f"backbone.{_STEM[part]}.{leaf}"
        m = _LAYER.fullmatch(rest)
        if m is None:
            return None
        stage, block, inner = int(m.group(1)) - 1, m.group(2), m.group(3)
        d = _DOWNSAMPLE.fullmatch(inner)
        if d is not None:
            inner = f"shortcut.{d.group(1)}.{d.group(2)}"
        return f"backbone.stages.{stage}.{block}.{inner}"
    if key in ("classifier.weight", "classifier.bias"):
        leaf = key.rpartition(".")[2]
        # FC / cRT -> the linear layer of a linear or lws head; FCNorm (weight only) -> the cosine head
        if f"head.fc.{leaf}" in targets or "head.weight" not in targets:
            return f"head.fc.{leaf}"
        return f"head.{leaf}"
    if key in ("classifier.fc.weight", "classifier.fc.bias", "classifier.scales"):  # LWS
        return "head." + key[len("classifier."):]
    return None


def _target_shapes(target: nn.Module | Mapping[str, Tensor] | Iterable[str]) -> dict[str, tuple[int, ...] | None]:
    if isinstance(target, nn.Module):
        target = target.state_dict()
    if isinstance(target, Mapping):
        return {k: tuple(v.shape) if isinstance(v, Tensor) else None for k, v in target.items()}
    return {k: None for k in target}


def _names(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (f" ... and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")


def convert_original_state(obj: Any, target: nn.Module | Mapping[str, Tensor] | Iterable[str], source: str,
                           exclude: Sequence[str] = ()) -> dict[str, Tensor]:
    """The weights of an original-code checkpoint ``obj`` under the names of ``target`` (an fcc model, its
    state dict, or its key names; with tensors, shapes are checked too).

    ``exclude`` are prefixes of fcc keys that may stay without a value (``model.init_exclude``, e.g.
    ``head.scales`` when an LWS stage starts from an original FC checkpoint). Raises CheckpointError naming
    ``source`` and every original key that has no place in ``target``, every key of ``target`` left
    without a value, and every shape that differs.
    """
    state = original_state_dict(obj)
    if state is None:
        raise CheckpointError(f"{source}: not a checkpoint of the original FCC / bag-of-tricks code (expected "
                              "{'state_dict': ...} or a state dict with its names: backbone.conv1..., "
                              "backbone.layer1..., classifier...)")
    shapes = _target_shapes(target)
    targets = set(shapes)
    out: dict[str, Tensor] = {}
    unmapped: list[str] = []
    for key, value in state.items():
        ours = _fcc_key(key, targets)
        if ours is None or ours not in targets:
            unmapped.append(key if ours is None else f"{key} (as {ours})")
        elif ours in out:
            unmapped.append(f"{key} (a second value for {ours})")
        else:
            out[ours] = value

    def excluded(key: str) -> bool:
        return any(key == p or key.startswith(p + ".") for p in exclude)

    missing = [k for k in shapes if k not in out and not excluded(k)]
    mismatched = [f"{k}: checkpoint {tuple(v.shape)} vs model {shapes[k]}" for k, v in out.items()
                  if shapes[k] is not None and tuple(v.shape) != shapes[k]]
    problems = []
    if unmapped:
        problems.append(f"{len(unmapped)} original key(s) with no place in this model: {_names(unmapped)}")
    if missing:
        problems.append(f"{len(missing)} weight(s) of the model without a value in the checkpoint: {_names(missing)}")
    if mismatched:
        problems.append(f"shape mismatch for {_names(mismatched)}")
    if problems:
        raise CheckpointError(f"{source}: an original-code checkpoint that does not fit this model: "
                              + "; ".join(problems) + ". Its backbone res32_cifar / res10 / res50 is fcc's "
                              "resnet32 / resnet10 / resnet50, FC or cRT the linear head, FCNorm the cosine "
                              "head, LWS the lws head; check model.backbone, model.head and the number of "
                              "classes.")
    return out


def _numpy_globals() -> list[Any]:
    """What the original's pickles need beyond tensors: its 'best_result' is a NumPy float64, pickled as
    numpy.core.multiarray.scalar (NumPy 1.x, which the original ran) or numpy._core.multiarray.scalar,
    with its dtype. These build plain numbers; nothing else is allowed."""
    try:
        from numpy._core.multiarray import scalar  # NumPy >= 2
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core.multiarray import scalar
    dtypes = {type(np.dtype(code)) for code in "?bBhHiIlLqQefdFD"}
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
            np.dtype, *dtypes]


class NotOriginalError(CheckpointError):
    """A file that was read (it is a checkpoint) whose content is not an original-code checkpoint."""


def load_original_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """Read an original-code ``.pth`` file without running code from it, and return its model weights
    (``module.`` prefixes removed, fcc's names not yet applied: see ``convert_original_state``).

    ``torch.load(weights_only=True)`` alone refuses these files, because the original pickled a NumPy
    scalar next to the weights; the few NumPy globals that build numbers are allowed for this read only.
    A file that reads but holds something else is a ``NotOriginalError`` saying what is wrong with it.
    """
    from fcc_lt.models.checkpoint_file import not_a_checkpoint

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    problem = not_a_checkpoint(path)
    if problem is not None:
        raise CheckpointError(f"{path}: {problem}")
    try:
        allow = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
        with allow(_numpy_globals()) if allow is not None else contextlib.nullcontext():
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = next((line.strip() for line in str(err).splitlines() if "GLOBAL" in line), "")
        if detail:
            raise CheckpointError(f"{path}: refused: it holds Python objects other than tensors, numbers and "
                                  f"plain containers ({detail}); fcc never runs code from a checkpoint") from None
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{path}: not a readable checkpoint ({first})") from None
    except Exception as err:  # untrusted bytes: any failure to parse them means "not readable"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({first})") from None
    state = original_state_dict(obj)
    if state is None:
        weights = _weights_of(obj)
        why = doubled_names_problem(weights) if isinstance(weights, Mapping) else None
        if why is None:
            held = f"keys {short_repr(list(obj)[:6])}" if isinstance(obj, Mapping) else f"a {type(obj).__name__}"
            why = f"it holds {held}, not a state dict of tensors (or {{'state_dict': ...}})"
        raise NotOriginalError(f"{path}: not a checkpoint of the original FCC / bag-of-tricks code: {why}")
    return state
