"""Every random stream of a run derives from its one seed.

A stream is named (``"sampler"``, ``"augment"``, ``"mix"``, ...) and keyed by epoch and step, so its
values depend only on (seed, name, epoch, step): a resumed run, or a run on a different number of
processes, draws exactly the same numbers without saving any generator state.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed from the run seed and stream keys (stable across Python processes)."""
    text = "/".join(str(k) for k in (seed, *keys)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


class StreamGenerators:
    """One reusable torch.Generator per (stream, device), re-seeded for each (epoch, step)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._generators: dict[tuple[str, str], torch.Generator] = {}

    def get(self, stream: str, device: torch.device | str, *keys: int) -> torch.Generator:
        device = torch.device(device)
        slot = (stream, str(device))
        gen = self._generators.get(slot)
        if gen is None:
            gen = self._generators[slot] = torch.Generator(device=device)
        gen.manual_seed(derive_seed(self.seed, stream, *keys))
        return gen
