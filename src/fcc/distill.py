"""Teacher networks for distillation (DiVE): rebuilt from the TEACHER run's own config and weights.

The original built the teacher with the student's config, so a teacher of another architecture could
not be loaded (or loaded into the wrong shape). Here the teacher's architecture comes from the config
saved with its checkpoint (or its run directory's config.yaml), so a ResNet-56 can teach a ResNet-32.
The teacher runs in eval mode (batch-norm running statistics, FCC off) without gradients.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from fcc.checkpoint import load_model_state, read_checkpoint
from fcc.config import Config, from_dict, read_yaml
from fcc.data.datasets import DataSplits
from fcc.errors import CheckpointError, ConfigError


def teacher_config(path: Path, state: dict[str, Any]) -> Config:
    """The config the teacher was trained with: saved in the checkpoint, else its run's config.yaml."""
    saved = state.get("config")
    if isinstance(saved, dict):
        try:
            return from_dict(saved, f"{path} (saved config)")
        except ConfigError as err:
            raise CheckpointError(f"distill.teacher: {err}") from None
    run_yaml = path.parent.parent / "config.yaml"
    if path.parent.name == "checkpoints" and run_yaml.is_file():
        return from_dict(read_yaml(run_yaml), str(run_yaml))
    raise CheckpointError(f"distill.teacher: {path} holds no config and is not inside a run directory "
                          "(<run>/checkpoints/*.pt next to <run>/config.yaml), so the teacher's "
                          "architecture is unknown; point distill.teacher at the teacher's run directory")


def load_teacher(source: str | Path, splits: DataSplits, device: torch.device | str) -> nn.Module:
    """A frozen teacher network from a run directory (its last.pt) or a checkpoint file.

    Its number of classes must equal the student's (the DiVE loss compares the two distributions).
    """
    from fcc.models import build_network

    path, state = read_checkpoint(source, "distill.teacher", "expected a finished run directory or a checkpoint file")
    cfg = teacher_config(path, state)
    cfg.fcc.enabled = False  # FCC only acts in training; the teacher is only evaluated
    counts = state.get("class_counts")
    if counts is not None and len(counts) != splits.num_classes:
        raise CheckpointError(f"distill.teacher: {path} was trained for {len(counts)} classes, the student's "
                              f"data ({splits.name}) has {splits.num_classes}")
    teacher = build_network(cfg, list(counts) if counts is not None else splits.class_counts)
    load_model_state(teacher, state["model"], f"distill.teacher {path}")
    teacher.to(device)
    teacher.requires_grad_(False)
    return teacher.eval()
