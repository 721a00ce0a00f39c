"""DataLoader-based loaders for image files: decoding in worker processes, the rest on the device.

``WorkerLoader`` follows the DeviceLoader's conventions exactly: ``batch_size`` is the global batch, the
epoch's order comes from the sampler with the "sampler" stream of the run seed, and rank r keeps the
positions r::world_size of every global batch. Each sample's crop and flip come from a seed drawn for
its position in the global batch (stream "decode", keyed by epoch and step), so the batches do not
depend on the number of workers or processes, and ``epoch(e, start_step)`` starts at a step without
decoding the skipped ones. Workers return uint8 HWC batches in shared, pinned memory; the device then
applies the batched augmentations (crop-and-flip for ``crop_flip``, colour jitter) and normalisation.

A file that cannot be decoded stops the run with a DataError naming it, or (``skip_bad``) is left out
of its batch, counted, and reported at the end of the epoch.
"""

from __future__ import annotations

import signal
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, get_worker_info

from fcc_lt.data.augment import Normalize
from fcc_lt.data.images import DataWarning, DecodeError, ImageFiles, Transform
from fcc_lt.data.loader import Batch, GlobalBatchLoader, Sampler
from fcc_lt.util.errors import DataError
from fcc_lt.util.rng import derive_seed

SEED_HIGH = 1 << 62
SHOWN = 5


class _Decode(Dataset):
    """Item (index, seed) -> (uint8 HWC array or None, label, error text)."""

    def __init__(self, files: ImageFiles, transform: Transform) -> None:
        self.files = files
        self.transform = transform
        self.size = transform.size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, item: tuple[int, int]) -> tuple[np.ndarray | None, int, str]:
        index, seed = item
        label = int(self.files.labels[index])
        path = self.files.path(index)
        try:
            array = self.transform(path, seed)
        except DecodeError as err:
            return None, label, f"{path}: {err}"
        if array.shape != (self.size, self.size, 3):
            return None, label, f"{path}: decoded to shape {array.shape}, expected ({self.size}, {self.size}, 3)"
        return array, label, ""


class _Collate:
    """Stack a batch into one uint8 (B, S, S, 3) tensor, allocated in shared memory inside workers."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, samples: list[tuple[np.ndarray | None, int, str]]) -> tuple[Tensor, Tensor, list[str]]:
        out = torch.empty((len(samples), self.size, self.size, 3), dtype=torch.uint8)
        if get_worker_info() is not None:
            out.share_memory_()  # handed to the main process without another copy
        view = out.numpy()
        for i, (array, _, _) in enumerate(samples):
            if array is None:
                view[i] = 0
            else:
                view[i] = array
        labels = torch.tensor([s[1] for s in samples], dtype=torch.long)
        return out, labels, [s[2] for s in samples]


class _EpochPlan:
    """The DataLoader's batch sampler: this rank's (index, seed) items of each step of one epoch."""

    def __init__(self, batch_size: int, rank: int, world_size: int, seed: int) -> None:
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.order = torch.zeros(0, dtype=torch.long)
        self.epoch = 0
        self.start = 0
        self.stop = 0

    def set(self, order: Tensor, epoch: int, start: int, stop: int) -> None:
        self.order, self.epoch, self.start, self.stop = order, epoch, start, stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        gen = torch.Generator()
        for step in range(self.start, self.stop):
            index = self.order[step * self.batch_size:(step + 1) * self.batch_size]
            gen.manual_seed(derive_seed(self.seed, "decode", self.epoch, step))
            seeds = torch.randint(0, SEED_HIGH, (index.numel(),), generator=gen)
            r, w = self.rank, self.world_size
            yield list(zip(index[r::w].tolist(), seeds[r::w].tolist()))


class _Sequential:
    """Batch sampler of an evaluation pass: fixed batches of the given indices, seed 0."""

    def __init__(self, indices: Sequence[int], batch_size: int) -> None:
        self.indices = list(indices)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for start in range(0, len(self.indices), self.batch_size):
            yield [(i, 0) for i in self.indices[start:start + self.batch_size]]


@contextmanager
def _sigint_deferred() -> Iterator[list[int]]:
    """Ctrl-C held back while inside: SIGINT only records itself (in the list yielded) and takes effect on
    leaving, with the handler that was there before (Python's raises KeyboardInterrupt). Processes forked
    inside keep the recording handler, so a Ctrl-C never raises anything in them.

    A Python-level handler rather than a blocked signal mask: a process-directed signal that the main thread
    blocks is taken by another thread (torch's), whose C handler still makes the main thread raise."""
    pressed: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pressed
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)
        if pressed:
            if callable(previous):
                previous(signal.SIGINT, None)
            elif previous == signal.SIG_DFL:
                signal.raise_signal(signal.SIGINT)


class _WorkerDataLoader(DataLoader):
    """A DataLoader whose workers leave Ctrl-C to the main process.

    A terminal's Ctrl-C goes to every process of its group, worker processes included: a worker then raised
    KeyboardInterrupt in whatever it was doing (a traceback on the terminal), and one arriving while the
    iterator was being built left it half-made (another traceback from its ``__del__``). The iterator (and
    with it the workers) is made with Ctrl-C held back; if one came meanwhile, the workers are stopped and
    then it takes effect in the main process, as on any other exit."""

    def _get_iterator(self) -> Any:
        # a Ctrl-C that will raise KeyboardInterrupt ends the loop, so its workers are stopped first; one that a
        # handler of ours takes (training's stop-after-the-step) needs the batches still to come
        raises = signal.getsignal(signal.SIGINT) in (signal.default_int_handler, signal.SIG_DFL)
        with _sigint_deferred() as pressed:
            iterator = super()._get_iterator()
            if pressed and raises:
                stop_workers(iterator)
        return iterator


def stop_workers(iterator: Any) -> None:
    """Stop a DataLoader iterator's workers now, with Ctrl-C held back until they are stopped (a second Ctrl-C
    during the shutdown interrupted it with a traceback); what follows then sees the Ctrl-C as usual."""
    shutdown = getattr(iterator, "_shutdown_workers", None)  # only the multi-process iterator has workers
    if shutdown is not None:
        with _sigint_deferred():
            shutdown()


def _data_loader(files: ImageFiles, transform: Transform, batch_sampler: Any, *, workers: int, prefetch: int,
                 pin: bool, persistent: bool) -> DataLoader:
    return _WorkerDataLoader(
        _Decode(files, transform), batch_sampler=batch_sampler, num_workers=workers,
        collate_fn=_Collate(transform.size), pin_memory=pin,
        persistent_workers=persistent and workers > 0, prefetch_factor=prefetch if workers > 0 else None,
    )


def _next(it: Iterator) -> tuple[Tensor, Tensor, list[str]]:
    try:
        return next(it)
    except RuntimeError as err:  # a worker died (killed for memory, ...): not a bug in the data
        if "DataLoader worker" in str(err):
            raise DataError(f"an image decoding worker failed ({err}); if it ran out of memory, lower "
                            "data.workers or data.prefetch") from None
        raise


class _BadImages:
    """Raises on the first undecodable image, or (skip) leaves them out and counts them."""

    def __init__(self, skip: bool) -> None:
        self.skip = skip
        self.skipped: list[str] = []

    def keep(self, errors: list[str]) -> Tensor | None:
        """CPU positions of the decoded images, or None when all were decoded."""
        if not any(errors):
            return None
        bad = [e for e in errors if e]
        if not self.skip:
            raise DataError(f"cannot decode image {bad[0]}; replace or remove the file, or set "
                            "data.skip_bad_images=true to leave unreadable images out (counted and reported)")
        self.skipped += bad
        keep = torch.tensor([i for i, e in enumerate(errors) if not e], dtype=torch.long)
        if not keep.numel():
            raise DataError(f"no image of a batch could be decoded, for example {bad[0]}")
        return keep

    def report(self, what: str) -> None:
        if self.skipped:
            shown = "; ".join(self.skipped[:SHOWN])
            warnings.warn(f"{what}: left out {len(self.skipped)} images that could not be decoded "
                          f"(data.skip_bad_images): {shown}", DataWarning, stacklevel=3)


class WorkerLoader(GlobalBatchLoader):
    """Training batches of image files decoded by DataLoader workers (see the module docstring).

    ``augment`` is a batched device augmentation (draw/apply, like PadCropFlip) applied after the
    transfer; its parameters are drawn for the whole global batch from the "augment" stream and sliced
    per rank, as in the DeviceLoader. ``skipped_images`` counts this epoch's undecodable images.
    """

    def __init__(self, files: ImageFiles, batch_size: int, device: torch.device, *, sampler: Sampler,
                 transform: Transform, normalize: Normalize, augment: Any = None, seed: int = 0,
                 drop_last: bool = True, rank: int = 0, world_size: int = 1, workers: int = 2,
                 prefetch: int = 2, channels_last: bool = False, skip_bad: bool = False) -> None:
        super().__init__(batch_size, device, sampler=sampler, normalize=normalize, augment=augment, seed=seed,
                         drop_last=drop_last, rank=rank, world_size=world_size, channels_last=channels_last)
        self.files = files
        self.labels = files.labels
        self.skip_bad = skip_bad
        self.skipped_images = 0
        self.plan = _EpochPlan(batch_size, rank, world_size, seed)
        self.loader = _data_loader(files, transform, self.plan, workers=workers, prefetch=prefetch,
                                   pin=self.device.type == "cuda", persistent=True)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        order = self.epoch_order(epoch).cpu()
        steps = self.steps_per_epoch(epoch)
        if start_step >= steps:
            return
        self.plan.set(order, epoch, start_step, steps)
        bad = _BadImages(self.skip_bad)
        self.skipped_images = 0
        it = iter(self.loader)
        for step in range(start_step, steps):
            images, labels, errors = _next(it)
            keep = bad.keep(errors)
            if keep is not None:
                images, labels = images[keep], labels[keep]
                self.skipped_images = len(bad.skipped)
            x = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
            y = labels.to(self.device, non_blocking=True)
            if self.augment is not None:
                n_global = min(self.batch_size, order.numel() - step * self.batch_size)
                params = self.augment_params(n_global, self.generators.get("augment", self.device, epoch, step))
                if keep is not None:
                    params = params[keep.to(self.device)]
                x = self.augment(x, params)
            yield self.finish(x), y
        bad.report(f"epoch {epoch}")


class WorkerEvalLoader:
    """Un-augmented batches of this rank's share (r::world_size) of an image split, decoded by workers.

    Workers start for each pass unless ``persistent`` (evaluation is occasional; idle processes for every
    split of every rank would add up).
    """

    def __init__(self, files: ImageFiles, batch_size: int, device: torch.device, *, transform: Transform,
                 normalize: Normalize, rank: int = 0, world_size: int = 1, workers: int = 2, prefetch: int = 2,
                 channels_last: bool = False, skip_bad: bool = False, persistent: bool = False) -> None:
        self.device = torch.device(device)
        self.normalize = normalize.to(self.device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.skip_bad = skip_bad
        self.source = files.source
        self.plan = _Sequential(range(rank, len(files), world_size), batch_size)
        self.loader = _data_loader(files, transform, self.plan, workers=workers, prefetch=prefetch,
                                   pin=self.device.type == "cuda", persistent=persistent)

    def __len__(self) -> int:
        return len(self.plan)

    def __iter__(self) -> Iterator[Batch]:
        bad = _BadImages(self.skip_bad)
        it = iter(self.loader)
        for _ in range(len(self.plan)):
            images, labels, errors = _next(it)
            keep = bad.keep(errors)
            if keep is not None:
                images, labels = images[keep], labels[keep]
            x = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
            yield (self.normalize(x).contiguous(memory_format=self.memory_format),
                   labels.to(self.device, non_blocking=True))
        bad.report(f"evaluating {self.source}")


@dataclass
class Decoded:
    images: Tensor  # uint8 (N, 3, S, S)
    valid: Tensor  # bool (N,): False where the file could not be decoded (left as zeros)


def decode_all(files: ImageFiles, transform: Transform, *, workers: int, skip_bad: bool = False,
               batch_size: int = 256) -> Decoded:
    """Every image of ``files`` decoded once (for the DeviceLoader), by ``workers`` processes.

    Undecodable files are all collected and reported in one DataError (first few named), or left
    invalid when ``skip_bad``.
    """
    size = transform.size
    images = torch.empty((len(files), 3, size, size), dtype=torch.uint8)
    valid = torch.ones(len(files), dtype=torch.bool)
    plan = _Sequential(range(len(files)), batch_size)
    loader = _data_loader(files, transform, plan, workers=workers, prefetch=2, pin=False, persistent=False)
    errors: list[str] = []
    start = 0
    it = iter(loader)
    for _ in range(len(plan)):
        batch, _, batch_errors = _next(it)
        n = batch.shape[0]
        images[start:start + n] = batch.permute(0, 3, 1, 2)
        for i, e in enumerate(batch_errors):
            if e:
                errors.append(e)
                valid[start + i] = False
        start += n
    if errors and not skip_bad:
        shown = "\n  ".join(errors[:SHOWN])
        raise DataError(f"{files.source}: {len(errors)} of {len(files)} images could not be decoded; the first:"
                        f"\n  {shown}\nReplace or remove them, or set data.skip_bad_images=true to leave them out.")
    if errors:
        warnings.warn(f"{files.source}: left out {len(errors)} images that could not be decoded "
                      f"(data.skip_bad_images): {'; '.join(errors[:SHOWN])}", DataWarning, stacklevel=2)
    return Decoded(images, valid)
