"""Teacher networks for distillation (DiVE): the TEACHER run's own network and weights, via the run loader.

The original built the teacher with the student's config, so a teacher of another architecture could
not be loaded (or loaded into the wrong shape). Here the teacher's architecture comes from its run
directory's config.yaml or the config saved in its checkpoint, validated like any config and checked
against the checkpoint's tensors before anything is allocated (``evaluation.run_loader``), so a ResNet-56 can teach
a ResNet-32 and a crafted checkpoint cannot ask for a huge model. The teacher runs in eval mode
(batch-norm running statistics, no FCC: FCC acts in the student's objective only) without gradients.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fcc_lt.config.schema import Config
from fcc_lt.evaluation.run_loader import load_run, num_classes_of
from fcc_lt.util.errors import CheckpointError


def load_teacher(source: str | Path, num_classes: int, device: torch.device | str,
                 fallback: Config | None = None) -> nn.Module:
    """A frozen teacher network from a run directory (its last.pt) or a checkpoint file.

    Its number of classes must equal the student's (the DiVE loss compares the two distributions). A
    checkpoint that holds no config (the original code's) is taken to have the ``fallback`` (the
    student's) architecture, as the original built its teacher.
    """
    run = load_run(source, "last", what="distill.teacher", device=device, tau_norm=False, config=fallback)
    teacher = run.network
    classes = num_classes_of(run)
    if classes != num_classes:
        raise CheckpointError(f"distill.teacher: {run.path} was trained for {classes} classes, the student's "
                              f"data has {num_classes}")
    teacher.requires_grad_(False)
    return teacher.eval()
