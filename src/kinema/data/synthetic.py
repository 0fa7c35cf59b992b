"""Base of the procedural datasets: `length` virtual items, each a pure function of (seed, index)."""

from __future__ import annotations

from torch.utils.data import Dataset

from kinema.errors import KinemaError


class SyntheticDataset(Dataset):
    """Map-style dataset whose item `index` is generated from (seed, index); subclasses set `config_class`."""

    config_class: type

    def __init__(self, config=None, length: int = 100_000, seed: int = 0):
        if length < 1 or seed < 0:
            raise KinemaError(f"{type(self).__name__}: need length >= 1 and seed >= 0, got length={length}, seed={seed}")
        self.config = config or self.config_class()
        self.length = length
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def check_index(self, index: int) -> None:
        """IndexError outside [0, length), so iteration and DataLoaders stop where they should."""
        if not 0 <= index < self.length:
            raise IndexError(f"{type(self).__name__} index {index} out of range [0, {self.length})")
