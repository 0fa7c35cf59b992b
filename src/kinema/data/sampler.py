"""Endless, seeded, resumable samplers: the data position of step s is a pure function of s."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableRandomSampler(Sampler[int]):
    """Shuffles each epoch with generator seed (seed, epoch) and starts at sample `start` of that endless stream."""

    def __init__(self, length: int, seed: int = 0, start: int = 0):
        self.length = length
        self.seed = seed
        self.start = start

    def __iter__(self) -> Iterator[int]:
        epoch, offset = divmod(self.start, self.length)
        while True:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.length, generator=generator)
            for chunk in order[offset:].split(4096):
                yield from chunk.tolist()
            epoch, offset = epoch + 1, 0


class ResumableBatchSampler(Sampler[list[int]]):
    """Endless passes of an epoch-seeded batch sampler (e.g. aspect buckets), starting at batch `start`."""

    def __init__(self, batches, start: int = 0):
        self.batches = batches
        self.start = start

    def __iter__(self) -> Iterator[list[int]]:
        epoch, offset = divmod(self.start, len(self.batches))
        while True:
            self.batches.set_epoch(epoch)
            for i, batch in enumerate(self.batches):
                if i >= offset:
                    yield batch
            epoch, offset = epoch + 1, 0
