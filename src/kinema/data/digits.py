"""Moving digits: scikit-learn's 8x8 handwritten digits, upscaled, bouncing in a box (chapter 11.1.4).

A Moving-MNIST-style dataset that needs no download: each digit glides at a constant speed and
reflects off the walls (exact reflection: the path is folded into [0, size - digit_size]), drawn
white on black at whole-pixel positions, overlapping digits combined by maximum. Captions come from
the ground truth (direction of the mean velocity over the clip, a bounce if any velocity flips),
e.g. "the digit 3 moves down and to the left and bounces".
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from kinema.data.synthetic import SyntheticDataset
from kinema.errors import KinemaError


@dataclass
class MovingDigitsConfig:
    """Box, digit and motion settings of the moving-digits dataset (pixels, frames)."""

    num_frames: int = 8  # T
    size: int = 32  # H = W
    digit_size: int = 14  # side of an upscaled digit
    min_digits: int = 1
    max_digits: int = 2
    speed_range: tuple[float, float] = (1.0, 3.0)  # px per frame, uniform; random direction
    fps: float = 8.0

    def __post_init__(self):
        self.speed_range = tuple(float(s) for s in self.speed_range)
        name = type(self).__name__
        if self.num_frames < 1 or self.min_digits < 1 or self.min_digits > self.max_digits:
            raise KinemaError(f"{name}: need num_frames >= 1 and 1 <= min_digits <= max_digits, got "
                              f"{self.num_frames}, {self.min_digits}, {self.max_digits}")
        if not 4 <= self.digit_size < self.size:
            raise KinemaError(f"{name}: need 4 <= digit_size < size, got {self.digit_size}, {self.size}")
        if not 0.0 <= self.speed_range[0] <= self.speed_range[1] or self.fps <= 0:
            raise KinemaError(f"{name}: need 0 <= speed_range[0] <= speed_range[1] and fps > 0, got "
                              f"{self.speed_range}, {self.fps}")


@functools.lru_cache(maxsize=1)
def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1797 handwritten digits: (images [N, 8, 8] float in [0, 1], labels [N])."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


def fold(x: np.ndarray, length: float) -> tuple[np.ndarray, np.ndarray]:
    """Reflect positions on a line into [0, length]: (folded positions, direction sign +1 / -1)."""
    period = np.mod(x, 2.0 * length)
    return np.where(period <= length, period, 2.0 * length - period), np.where(period <= length, 1.0, -1.0)


def _direction(vx: float, vy: float) -> str:
    """'up', 'down and to the left', ... from a velocity (image axes: y down); '' when it is still."""
    speed = math.hypot(vx, vy)
    if speed == 0:
        return ""
    vertical = ("down" if vy > 0 else "up") if abs(vy) > 0.38 * speed else ""
    horizontal = ("to the right" if vx > 0 else "to the left") if abs(vx) > 0.38 * speed else ""
    return " and ".join(w for w in (vertical, horizontal) if w)


class MovingDigits(SyntheticDataset):
    """Map-style moving-digits clips, deterministic in (seed, index); digit axes padded to max_digits."""

    config_class = MovingDigitsConfig

    def __getitem__(self, index: int) -> dict:
        """{"video", "caption", "label" (first digit), "digits", "positions", "velocities", "bounces", "num_digits"}."""
        self.check_index(index)
        config = self.config
        rng = np.random.default_rng([self.seed, index])
        images, labels = digit_images()
        n = int(rng.integers(config.min_digits, config.max_digits + 1))
        chosen = rng.choice(len(images), size=n, replace=False)
        room = config.size - config.digit_size
        start = rng.uniform(0, room, size=(n, 2))
        angle, speed = rng.uniform(0, 2 * math.pi, n), rng.uniform(*config.speed_range, n)
        velocity = speed[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)  # px per frame, (x, y)
        steps = np.arange(config.num_frames, dtype=np.float64)[:, None, None]
        positions, signs = fold(start[None] + steps * velocity[None], room)  # [T, N, 2] top-left corners
        velocities = signs * velocity[None]
        bounces = np.zeros((config.num_frames, n), dtype=bool)
        bounces[1:] = (np.sign(velocities[1:]) != np.sign(velocities[:-1])).any(axis=-1)
        sprites = F.interpolate(torch.from_numpy(images[chosen])[:, None], size=(config.digit_size,) * 2,
                                mode="bilinear", align_corners=False).clamp(0, 1)[:, 0]
        frames = torch.zeros(config.num_frames, config.size, config.size)
        corners = np.rint(positions).astype(np.int64)
        for t in range(config.num_frames):
            for k in range(n):
                x, y = corners[t, k]
                window = frames[t, y : y + config.digit_size, x : x + config.digit_size]
                torch.maximum(window, sprites[k], out=window)
        video = (frames * 2 - 1)[None].expand(3, -1, -1, -1).contiguous()
        digits = labels[chosen]
        phrases = []
        for k in range(n):
            phrase = f"the digit {digits[k]} moves {_direction(*velocities[:, k].mean(axis=0))}".rstrip()
            phrases.append(phrase + (" and bounces" if bounces[:, k].any() else ""))
        pad = config.max_digits - n

        def padded(array: np.ndarray, axis: int, value: float = 0) -> Tensor:
            widths = [(0, 0)] * array.ndim
            widths[axis] = (0, pad)
            return torch.from_numpy(np.pad(array, widths, constant_values=value))

        return {
            "video": video,
            "caption": ", ".join(phrases),
            "label": torch.tensor(int(digits[0])),
            "digits": padded(digits, 0, -1),
            "positions": padded(positions.astype(np.float32), 1),
            "velocities": padded(velocities.astype(np.float32), 1),
            "bounces": padded(bounces, 1),
            "num_digits": torch.tensor(n),
        }
