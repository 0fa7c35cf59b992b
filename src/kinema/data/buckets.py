"""Batches of one output size for aspect-ratio buckets (chapter 11.1.4, "保持宽高比 vs. 强制正方形").

A dataset with buckets gives clips of several sizes; a batch must hold one size. The sampler
shuffles each bucket with a generator seeded by (seed, epoch), cuts it into batches and shuffles
the batches, so every batch is one bucket and the order is reproducible.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices that share `dataset.bucket_of(index)`; pass as `DataLoader(batch_sampler=...)`."""

    def __init__(self, dataset, batch_size: int, seed: int = 0, drop_last: bool = True):
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index in range(len(dataset)):
            groups[dataset.bucket_of(index)].append(index)
        self.groups = [torch.tensor(indices) for _, indices in sorted(groups.items())]

    def set_epoch(self, epoch: int) -> None:
        """Choose the shuffle of the next pass."""
        self.epoch = epoch

    def _batches(self) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        batches = []
        for indices in self.groups:
            for batch in indices[torch.randperm(len(indices), generator=generator)].split(self.batch_size):
                if len(batch) == self.batch_size or not self.drop_last:
                    batches.append(batch)
        order = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[i] for i in order]

    def __len__(self) -> int:
        return sum(len(g) // self.batch_size if self.drop_last else -(-len(g) // self.batch_size)
                   for g in self.groups)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._batches():
            yield batch.tolist()
