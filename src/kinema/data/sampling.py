"""Temporal clip sampling: where a clip starts and which frames it takes (chapter 11.1.4, "时间采样策略").

Three strategies, all pure functions of their inputs and a numpy Generator:
- fixed rate: frames at a target fps (resampled by timestamp) or every `stride`-th source frame;
  the start is random, evenly spread over the video (`uniform`, for several clips per video) or centred;
- motion-adaptive: inside a window, frames are placed at equal steps of cumulative frame change,
  so they are denser where the picture changes more;
- keyframes: the window's first frame plus the frames that change most from their predecessor
  (cuts, sudden moves), in time order.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from kinema.errors import KinemaError

SAMPLING_MODES = ("fixed", "motion", "keyframe")
START_MODES = ("random", "uniform", "center")


def clip_span(num_frames: int, source_fps: float, fps: float = 0.0, stride: int = 1) -> float:
    """Seconds of video that a fixed-rate clip covers, from its first frame's start to its last frame's end."""
    if fps > 0:
        return (num_frames - 1) / fps + 1.0 / source_fps
    return ((num_frames - 1) * stride + 1) / source_fps


def clip_start(
    first: float,
    end: float,
    span: float,
    mode: str,
    rng: np.random.Generator,
    clip_index: int = 0,
    clips_per_video: int = 1,
    source_fps: float | None = None,
) -> float:
    """Start time (s) of a clip covering `span` seconds inside [first, end); on the source frame grid if `source_fps`.

    `random` draws uniformly; `uniform` spreads `clips_per_video` starts evenly from the first to the
    last possible start (clip `clip_index` of them); `center` centres the clip.
    """
    if mode not in START_MODES:
        raise KinemaError(f"unknown clip start mode '{mode}' (choose from {', '.join(START_MODES)})")
    room = end - first - span
    if room < -1e-9:
        raise KinemaError(f"too short: {end - first:.3f} s, a clip needs {span:.3f} s")
    room = max(room, 0.0)
    if mode == "random":
        offset = float(rng.uniform(0.0, room)) if room > 0 else 0.0
    elif mode == "center" or clips_per_video == 1:
        offset = room / 2
    else:
        offset = room * clip_index / (clips_per_video - 1)
    if source_fps is not None:  # snap down to a frame time so a stride clip starts on a frame
        offset = np.floor(offset * source_fps + 1e-6) / source_fps
    return first + offset


def frame_changes(video: Tensor, size: int = 32) -> Tensor:
    """Mean absolute change of each frame from the previous one, on a small grey copy: `[C, T, H, W]` -> `[T]`."""
    grey = rearrange(video.float().mean(dim=0), "t h w -> t 1 h w")
    scale = min(1.0, size / max(grey.shape[-2:]))
    if scale < 1.0:
        grey = F.interpolate(grey, scale_factor=scale, mode="area")
    change = (grey[1:] - grey[:-1]).abs().mean(dim=(1, 2, 3))
    return torch.cat([change.new_zeros(1), change])


def _strictly_increasing(indices: np.ndarray, count: int) -> np.ndarray:
    """Push repeated indices apart so that they strictly increase and stay within [0, count)."""
    indices = indices.copy()
    for k in range(1, len(indices)):
        indices[k] = max(indices[k], indices[k - 1] + 1)
    for k in range(len(indices) - 1, -1, -1):
        indices[k] = min(indices[k], count - len(indices) + k)
    return indices


def motion_adaptive_indices(changes: Tensor, num_frames: int, floor: float = 0.1) -> Tensor:
    """Indices of `num_frames` frames at equal steps of cumulative change (denser where frames change more).

    Each frame's weight is its change plus `floor` times the mean change, so static stretches still advance.
    """
    count = len(changes)
    if num_frames > count:
        raise KinemaError(f"motion-adaptive sampling needs {num_frames} frames but the window has {count}")
    weight = changes.double().clamp(min=0)
    weight = weight + floor * (weight[1:].mean() if count > 1 else 1.0) + 1e-12
    weight[0] = 0.0
    cumulative = torch.cumsum(weight, 0).numpy()
    targets = np.linspace(0.0, cumulative[-1], num_frames)
    indices = np.searchsorted(cumulative, targets - 1e-9 * cumulative[-1], side="left")
    return torch.from_numpy(_strictly_increasing(indices, count))


def keyframe_indices(changes: Tensor, num_frames: int) -> Tensor:
    """The first frame and the `num_frames - 1` frames that change most from their predecessor, in time order."""
    count = len(changes)
    if num_frames > count:
        raise KinemaError(f"keyframe sampling needs {num_frames} frames but the window has {count}")
    order = torch.argsort(changes[1:].double(), descending=True, stable=True)[: num_frames - 1] + 1
    return torch.cat([torch.zeros(1, dtype=torch.long), order.sort().values])
