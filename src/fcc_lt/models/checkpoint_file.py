"""The checkpoint file: what fcc writes, and how any checkpoint is read back.

Writing is atomic (fcc_lt.util.files): a crash, a kill or a full disk leaves either the previous good
checkpoint or the new one. Reading uses ``torch.load(weights_only=True)``: a checkpoint from an untrusted
source cannot run code. ``load_model_state`` puts weights into a model with every missing, unexpected or
misshapen key named.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fcc_lt.util.errors import CheckpointError
from fcc_lt.util.files import atomic_write_bytes, open_input

FORMAT = "fcc-checkpoint"


VERSION = 1


def save_checkpoint(state: Mapping[str, Any], path: Path) -> None:
    """Atomically write ``state`` (plain containers and tensors only) to ``path``."""
    payload = {"format": FORMAT, "version": VERSION, **state}
    # Serialise in memory first: torch.save turns a failing write (ENOSPC) into a RuntimeError from its
    # C++ writer, whereas a plain file write raises the OSError that atomic_write_bytes reports.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getbuffer()
    atomic_write_bytes(Path(path), lambda f: f.write(data))


# What torch.save writes: a zip archive (torch >= 1.6), or the legacy format, which starts with the pickled
# magic number 0x1950a86a20f9469cfc6c (pickle protocol 2: PROTO 2, LONG1 of 10 bytes, little-endian)
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def not_a_checkpoint(path: Path) -> str | None:
    """Why ``path`` cannot be a file torch.save wrote, from its first bytes (and a zip's names), or None.

    So that an empty file, a text file, a zip of something else or a plain pickle is called what it is,
    instead of whatever torch.load's parser stumbles on (or "unsafe", which is about pickled code)."""
    import zipfile

    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as err:
        return f"cannot be read: {err.strerror or err}"
    if not head:
        return "an empty file (0 bytes), not a checkpoint"
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError) as err:
            return f"a damaged zip archive ({err}), not a readable checkpoint"
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return None
        names = names[:3]
        return ("a zip archive, but not a PyTorch checkpoint: it holds no data.pkl (it holds "
                f"{', '.join(names) or 'nothing'}{' ...' if len(names) == 3 else ''})")
    if head.startswith(_LEGACY_MAGIC):
        return None
    if head[:1] == b"\x80":
        called = _pickled_call(path)
        if called is not None:
            return (f"refused: it holds Python objects other than tensors and plain containers (a pickle that "
                    f"would call {called}, not written by torch.save); fcc reads checkpoints with "
                    "torch.load(weights_only=True), which never runs code from the file")
        return ("a Python pickle that torch.save did not write (a checkpoint is the zip archive torch.save writes, "
                "or its older format)")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and all(c.isprintable() or c in "\r\n\t" for c in text.rstrip("\x00")):
        first = text.splitlines()[0][:40] if text.splitlines() else text[:40]
        return f"a text file (it starts with {first!r}), not a checkpoint"
    return "not a file torch.save wrote (neither a zip archive nor its older format)"


def _pickled_call(path: Path) -> str | None:
    """The first callable a plain pickle would look up (``module.name``), read from its opcodes without
    unpickling anything; None when it looks up none (or cannot be parsed)."""
    import pickletools
    from collections import deque

    strings: deque[str] = deque(maxlen=2)  # STACK_GLOBAL takes module and name from the last two strings
    try:
        with open(path, "rb") as f:
            for op, arg, _ in pickletools.genops(f):
                if op.name in ("GLOBAL", "INST"):
                    return str(arg).replace(" ", ".")
                if op.name == "STACK_GLOBAL":
                    return ".".join(strings) if len(strings) == 2 else "a global"
                if isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # untrusted bytes: what does not parse holds no call we could name
        return None
    return None


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely; raises CheckpointError naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    problem = not_a_checkpoint(path)
    if problem is not None:
        raise CheckpointError(f"{path}: {problem}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        detail = next((line for line in lines if "GLOBAL" in line), "")
        if not detail:  # not an object the reader refused: data it cannot parse
            first = next((line for line in lines if "nsupported" in line), lines[-1] if lines else "")
            raise CheckpointError(f"{path}: not a readable checkpoint ({first})") from None
        raise CheckpointError(f"{path}: refused: it holds Python objects other than tensors and plain "
                              f"containers ({detail}); fcc reads checkpoints with "
                              "torch.load(weights_only=True), which never runs code from the file") from None
    except Exception as err:  # untrusted bytes: any failure to parse them means "not readable"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({first})") from None
    if isinstance(state, dict) and state.get("format") == FORMAT:
        if not _is_state_dict(state.get("model")):
            raise CheckpointError(f"{path}: its 'model' entry is not a state_dict (names -> tensors)")
        return state
    if _is_state_dict(state):
        return {"format": FORMAT, "version": VERSION, "model": state}  # a bare state_dict
    raise CheckpointError(f"{path}: not an fcc checkpoint or a model state_dict")


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in value.items())


def check_checkpoint_source(source: str | Path, what: str) -> Path:
    """The checkpoint file ``source`` names (a file, or a run directory's last.pt), opened once through the
    bounded reader to show that it is a readable regular file; CheckpointError naming ``what`` (the key,
    e.g. ``model.init_from``) otherwise. What it holds is read when it is used."""
    try:
        path = resolve_checkpoint(source)
    except CheckpointError as err:
        raise CheckpointError(f"{what}: {err}") from None
    except (OSError, ValueError) as err:  # a name the OS cannot take
        raise CheckpointError(f"{what}: {source}: not a usable path ({err})") from None
    with open_input(path, f"{what} checkpoint", CheckpointError, max_bytes=1 << 40):
        pass
    return path


def resolve_checkpoint(path_or_run: str | Path, which: str = "last") -> Path:
    """A checkpoint file, or the ``which`` checkpoint ('last'/'best') of a run directory."""
    p = Path(path_or_run)
    if p.is_dir():
        p = p / "checkpoints" / f"{which}.pt"
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    return p


def load_model_state(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str,
                     exclude: Sequence[str] = (), check_only: bool = False) -> list[str]:
    """Load weights strictly except for keys under ``exclude`` prefixes; returns the keys left at init.

    Every mismatch is reported by name: missing keys, unexpected keys and shape differences. With
    ``check_only`` nothing is loaded (``model`` may live on the meta device).
    """

    def excluded(key: str) -> bool:
        return any(key == p or key.startswith(p + ".") for p in exclude)

    own = model.state_dict()
    incoming = {k: v for k, v in state_dict.items() if not excluded(k)}
    missing = [k for k in own if k not in incoming and not excluded(k)]
    unexpected = [k for k in incoming if k not in own]
    shapes = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
              for k, v in incoming.items() if k in own and v.shape != own[k].shape]
    problems = []
    if shapes:
        problems.append("shape mismatch for " + "; ".join(shapes[:5]) + (" ..." if len(shapes) > 5 else ""))
    if missing:
        problems.append(f"missing {len(missing)} keys ({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''})")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys ({', '.join(unexpected[:5])}"
                        f"{' ...' if len(unexpected) > 5 else ''})")
    if problems:
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(problems) +
                              ". Check model.backbone/model.head and data.dataset (number of classes), "
                              "or list keys to skip in model.init_exclude.")
    if not check_only:
        model.load_state_dict(incoming, strict=False)
    return [k for k in own if excluded(k)]
