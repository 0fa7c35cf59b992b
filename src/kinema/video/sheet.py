"""Contact sheets: a grid of frames with one row per video and one column per frame, saved as PNG.

Used to look at a batch of (often tiny) generated clips at a glance, or to put them in a report.
"""

import os
from pathlib import Path

import numpy as np
from einops import rearrange
from PIL import Image
from torch import Tensor

from kinema.errors import KinemaError
from kinema.video.convert import as_rgb, to_uint8, upscale_nearest
from kinema.atomic import atomic_path

_GAP_LEVEL = 255  # separators are white


def contact_sheet(videos: Tensor, scale: int = 1, gap: int = 2) -> np.ndarray:
    """Tile videos `[B, C, T, H, W]` (or one clip) into uint8 `[H', W', 3]`: row = video, column = frame."""
    if videos.ndim == 4:
        videos = videos.unsqueeze(0)
    if videos.ndim != 5:
        raise KinemaError(f"expected videos [B, C, T, H, W] or [C, T, H, W], got shape {tuple(videos.shape)}")
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 0:
        raise KinemaError(f"gap must be a non-negative integer, got {gap!r}")
    videos = upscale_nearest(as_rgb(videos), scale)
    frames = np.stack([to_uint8(video) for video in videos])  # [B, T, H, W, 3]
    cells = np.pad(frames, ((0, 0), (0, 0), (0, gap), (0, gap), (0, 0)), constant_values=_GAP_LEVEL)
    sheet = rearrange(cells, "b t h w c -> (b h) (t w) c")
    return np.ascontiguousarray(sheet[: sheet.shape[0] - gap, : sheet.shape[1] - gap])


def write_contact_sheet(path: str | os.PathLike, videos: Tensor, scale: int = 1, gap: int = 2) -> Path:
    """Write `contact_sheet(videos, scale, gap)` to a `.png` file (atomically); returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        suffix = path.suffix or "(none)"
        raise KinemaError(f"{path}: a contact sheet is written as .png, got suffix {suffix!r}")
    sheet = contact_sheet(videos, scale=scale, gap=gap)
    with atomic_path(path) as temp:
        Image.fromarray(sheet).save(temp, format="PNG")
    return path
