"""Conversions between the library's float clips and the uint8 frames that files hold.

The rest of Kinema sees video as float `[C, T, H, W]` in [-1, 1]; files hold uint8
`[T, H, W, C]`. This file owns that boundary (the affine map u = (x + 1) * 127.5) plus
two small helpers for display: grey-to-RGB and integer nearest-neighbour upscaling.
"""

import numpy as np
import torch
from einops import rearrange, repeat
from torch import Tensor

from kinema.errors import KinemaError


def to_uint8(video: Tensor) -> np.ndarray:
    """Map one clip `[C, T, H, W]` in [-1, 1] to uint8 frames `[T, H, W, C]` (clamped, rounded)."""
    if video.ndim != 4:
        raise KinemaError(f"expected one clip [C, T, H, W], got shape {tuple(video.shape)}")
    if not video.is_floating_point():
        raise KinemaError(f"expected a float clip in [-1, 1], got dtype {video.dtype}")
    video = video.detach().float()
    if not torch.isfinite(video).all():
        raise KinemaError(f"clip of shape {tuple(video.shape)} contains NaN or infinite values")
    levels = ((video.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return np.ascontiguousarray(rearrange(levels, "c t h w -> t h w c").cpu().numpy())


def from_uint8(frames: np.ndarray) -> Tensor:
    """Map uint8 frames `[T, H, W, C]` to a float32 clip `[C, T, H, W]` in [-1, 1]."""
    if frames.ndim != 4 or frames.dtype != np.uint8:
        raise KinemaError(
            f"expected uint8 frames [T, H, W, C], got {frames.dtype} array of shape {frames.shape}"
        )
    levels = torch.from_numpy(np.ascontiguousarray(frames)).float()
    return rearrange(levels / 127.5 - 1.0, "t h w c -> c t h w").contiguous()


def as_rgb(video: Tensor) -> Tensor:
    """Repeat a one-channel video to three channels (channel axis is dim -4); pass RGB through."""
    if video.ndim < 4 or video.shape[-4] not in (1, 3):
        raise KinemaError(
            f"expected a video [..., C, T, H, W] with C = 1 or 3, got shape {tuple(video.shape)}"
        )
    if video.shape[-4] == 3:
        return video
    return repeat(video, "... 1 t h w -> ... c t h w", c=3)


def upscale_nearest(video: Tensor, factor: int) -> Tensor:
    """Enlarge the last two (H, W) axes by an integer factor, copying pixels (for viewing tiny videos)."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise KinemaError(f"scale must be a positive integer, got {factor!r}")
    if video.ndim < 2:
        raise KinemaError(f"expected a tensor [..., H, W], got shape {tuple(video.shape)}")
    if factor == 1:
        return video
    return repeat(video, "... h w -> ... (h a) (w b)", a=factor, b=factor)
