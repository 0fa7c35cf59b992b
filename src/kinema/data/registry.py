"""Registry of datasets selectable by `data.kind`: each entry has a config dataclass and a builder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch.utils.data import Dataset

from kinema.data.camera import CameraMotion, CameraMotionConfig
from kinema.data.digits import MovingDigits, MovingDigitsConfig
from kinema.data.folder import VideoFolder, VideoFolderConfig
from kinema.data.physics_balls import BouncingBalls, BouncingBallsConfig
from kinema.data.shards import ShardsConfig, build_shards


@dataclass(frozen=True)
class DatasetSpec:
    """How to build one kind of dataset: `build(config, seed) -> Dataset` of {"video", "caption", ...} items."""

    config_class: type
    build: Callable[[Any, int], Dataset]


DATASETS: dict[str, DatasetSpec] = {
    "balls": DatasetSpec(BouncingBallsConfig, lambda config, seed: BouncingBalls(config, length=1_000_000, seed=seed)),
    "folder": DatasetSpec(VideoFolderConfig, lambda config, seed: VideoFolder(config, seed=seed)),
    "digits": DatasetSpec(MovingDigitsConfig, lambda config, seed: MovingDigits(config, length=1_000_000, seed=seed)),
    "camera": DatasetSpec(CameraMotionConfig, lambda config, seed: CameraMotion(config, length=1_000_000, seed=seed)),
    "shards": DatasetSpec(ShardsConfig, build_shards),
}


def build_dataset(kind: str, config: Any, seed: int) -> Dataset:
    """The dataset registered as `kind`, built from its config."""
    return DATASETS[kind].build(config, seed)
