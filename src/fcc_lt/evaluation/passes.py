"""Evaluation passes: a model over this rank's share of a split -> device-side tallies, summed over ranks.

Nothing here writes files (``evaluation.files`` does) or loads runs (``evaluation.run_loader`` does); the
commands that combine the three are in ``evaluation.evaluate``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import Tensor, nn

from fcc_lt.data.loader import EvalLoader
from fcc_lt.evaluation.metrics import ClassificationTally, FeatureTally
from fcc_lt.models.network import model_memory_format, unwrap_ddp
from fcc_lt.util.distributed import DistContext
from fcc_lt.util.precision import autocast

# On the CPU a forward pass over about 128 images at a time ran faster than over a whole 500-image loader
# batch (592 vs 488 images per CPU-second here: the activations stay in cache; docs/speed.md); a batch
# is cut into equal parts of at most this many (500 -> 4 x 125). GPUs take the loader's batch whole.
CPU_FORWARD_CHUNK: int | None = 128


# Where the trainer attaches a compiled evaluation forward to a model (fcc_lt.engine.speed.eval_forward):
# in the model's __dict__, outside its module tree and state dict, so that it lives and dies with the model.
EVAL_FORWARD_ATTR = "_fcc_eval_forward"


def evaluation_forward(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """What an evaluation pass calls for ``model``: the compiled evaluation forward attached to it, if any,
    else the model itself."""
    return model.__dict__.get(EVAL_FORWARD_ATTR, model)


@torch.no_grad()
def run_eval(model: nn.Module, loader: EvalLoader, num_classes: int, ctx: DistContext,
             amp_dtype: torch.dtype | None = None, max_batches: int | None = None) -> ClassificationTally:
    """Tally predictions over this rank's share of the split (its first ``max_batches`` batches in smoke
    runs), then sum across ranks. Batches are brought into the model's memory format (NHWC weights get
    NHWC batches whatever the loader made), run through the compiled evaluation forward where the run's
    plan has one (fcc_lt.engine.speed.eval_forward), and nothing is read back to the host until the end."""
    was_training = model.training
    model.eval()
    tally = ClassificationTally(num_classes, ctx.device)
    fmt = model_memory_format(model)
    forward = evaluation_forward(model)
    try:
        for batch, batch_labels in itertools.islice(loader, max_batches):
            parts = eval_chunks(len(batch), ctx.device, CPU_FORWARD_CHUNK)
            for images, labels in zip(batch.tensor_split(parts), batch_labels.tensor_split(parts)):
                with autocast(ctx.device, amp_dtype):
                    logits = forward(images.contiguous(memory_format=fmt))
                tally.update(logits.float(), labels)
    finally:
        model.train(was_training)
    tally.all_reduce(ctx).check_finite(nonfinite_hint(amp_dtype))
    return tally


def nonfinite_hint(amp_dtype: torch.dtype | None) -> str:
    """What to check when a network's outputs are not finite."""
    amp = (f"; it ran under {str(amp_dtype).removeprefix('torch.')} autocast (train.amp): if the weights are fine, "
           "the range of that type overflowed: evaluate with train.amp=off") if amp_dtype is not None else ""
    return (": the checkpoint's weights or BatchNorm statistics are probably not finite or huge (fcc refuses to "
            f"save such checkpoints, so an edited or outside file?){amp}")


@torch.no_grad()
def run_feature_stats(model: nn.Module, loader: EvalLoader, num_classes: int, ctx: DistContext,
                      amp_dtype: torch.dtype | None = None, keep: bool = False
                      ) -> tuple[FeatureTally, tuple[Tensor, Tensor] | None]:
    """Tally the pooled, unscaled features (``Network.features``) of this rank's share, summed over ranks.

    With ``keep`` the features and labels themselves are also returned (on the CPU, every rank's share
    gathered on rank 0), for export.
    """
    net = unwrap_ddp(model)
    was_training = net.training
    net.eval()
    tally: FeatureTally | None = None
    kept: list[tuple[Tensor, Tensor]] = []
    fmt = model_memory_format(net)
    try:
        for images, labels in loader:
            with autocast(ctx.device, amp_dtype):
                features = net.features(images.contiguous(memory_format=fmt))
            if tally is None:
                tally = FeatureTally(num_classes, features.shape[1], ctx.device)
            tally.update(features.float(), labels)
            if keep:
                kept.append((features.float().cpu(), labels.cpu()))
    finally:
        net.train(was_training)
    if tally is None:
        raise ValueError("feature statistics of an empty split")
    tally.all_reduce(ctx).check_finite(nonfinite_hint(amp_dtype))
    if not keep:
        return tally, None
    shares = [(torch.cat([f for f, _ in kept]), torch.cat([y for _, y in kept]))]
    if ctx.distributed:
        gathered: list[object] = [None] * ctx.world_size
        torch.distributed.all_gather_object(gathered, shares[0])
        shares = gathered  # type: ignore[assignment]
    return tally, (torch.cat([f for f, _ in shares]), torch.cat([y for _, y in shares]))


def eval_chunks(n: int, device: torch.device, size: int | None) -> int:
    """How many equal parts a loader batch of ``n`` images is cut into for the forward pass on ``device``
    (equal parts: few distinct shapes, so a compiled forward compiles once or twice, not per batch)."""
    if device.type != "cpu" or not size or n <= size:
        return 1
    return -(-n // size)
