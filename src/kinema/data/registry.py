"""Registry of datasets selectable by `data.kind`: each entry has a config dataclass and a builder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch.utils.data import Dataset

from kinema.data.physics_balls import BouncingBalls, BouncingBallsConfig


@dataclass(frozen=True)
class DatasetSpec:
    """How to build one kind of dataset: `build(config, seed) -> Dataset` of {"video", "caption", ...} items."""

    config_class: type
    build: Callable[[Any, int], Dataset]


DATASETS: dict[str, DatasetSpec] = {
    "balls": DatasetSpec(BouncingBallsConfig, lambda config, seed: BouncingBalls(config, length=1_000_000, seed=seed)),
}


def build_dataset(kind: str, config: Any, seed: int) -> Dataset:
    """The dataset registered as `kind`, built from its config."""
    return DATASETS[kind].build(config, seed)
