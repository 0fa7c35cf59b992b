"""Spatial clip transforms: resize the shorter side, centre / random crop, aspect-ratio buckets, flip (chapter 11.1.4).

Clips are float `[C, T, H, W]`; resizing is bilinear with antialiasing (area-like when shrinking).
A bucket is an output size (H, W); each video goes to the bucket whose aspect ratio is nearest
in log scale, so wide and tall videos are cropped as little as possible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from kinema.errors import KinemaError

CROP_MODES = ("center", "random")


def resize(video: Tensor, height: int, width: int) -> Tensor:
    """Resize `[C, T, H, W]` to (height, width), bilinear with antialiasing; no-op if the size already matches."""
    if video.shape[-2:] == (height, width):
        return video
    frames = video.transpose(0, 1)  # [T, C, H, W]: frames are the batch
    resized = F.interpolate(frames, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return resized.transpose(0, 1)


def resize_shorter_side(video: Tensor, size: int) -> Tensor:
    """Scale so that the shorter side is `size`, keeping the aspect ratio."""
    height, width = video.shape[-2:]
    scale = size / min(height, width)
    return resize(video, max(size, round(height * scale)), max(size, round(width * scale)))


def resize_to_cover(video: Tensor, height: int, width: int) -> Tensor:
    """Smallest aspect-preserving resize that covers (height, width), ready for a crop."""
    h, w = video.shape[-2:]
    scale = max(height / h, width / w)
    return resize(video, max(height, math.ceil(h * scale - 1e-6)), max(width, math.ceil(w * scale - 1e-6)))


def crop(video: Tensor, height: int, width: int, mode: str = "center",
         rng: np.random.Generator | None = None) -> Tensor:
    """Crop (height, width) from the centre or, with `mode='random'`, from a place drawn from `rng`."""
    h, w = video.shape[-2:]
    if height > h or width > w:
        raise KinemaError(f"cannot crop {height}x{width} from a {h}x{w} clip")
    if mode == "center":
        top, left = (h - height) // 2, (w - width) // 2
    elif mode == "random":
        if rng is None:
            raise KinemaError("a random crop needs a numpy Generator")
        top, left = int(rng.integers(0, h - height + 1)), int(rng.integers(0, w - width + 1))
    else:
        raise KinemaError(f"unknown crop mode '{mode}' (choose from {', '.join(CROP_MODES)})")
    return video[..., top : top + height, left : left + width]


def nearest_bucket(height: int, width: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket (H, W) whose aspect ratio is nearest, in log scale, to a height x width video's."""
    aspect = math.log(width / height)
    return min(buckets, key=lambda bucket: abs(math.log(bucket[1] / bucket[0]) - aspect))


@dataclass
class SpatialTransform:
    """Resize (shorter side to `resize`, or just enough to cover), crop to (height, width), flip with probability."""

    height: int
    width: int
    resize: int = 0  # shorter side before cropping; 0 = the smallest size that covers the crop
    crop: str = "center"  # center | random
    flip: float = 0.0  # probability of a horizontal flip

    def __call__(self, video: Tensor, rng: np.random.Generator) -> Tensor:
        """Apply to one clip `[C, T, H, W]`, drawing crop place and flip from `rng`."""
        if self.resize:
            video = resize_shorter_side(video, self.resize)
        if video.shape[-2] < self.height or video.shape[-1] < self.width or not self.resize:
            video = resize_to_cover(video, self.height, self.width)
        video = crop(video, self.height, self.width, self.crop, rng)
        if self.flip > 0 and rng.random() < self.flip:
            video = video.flip(-1)
        return video.contiguous()
