"""Differentiable per-object positions in a clean-video estimate, for trajectory and physics guidance (chapter 11.3.3).

Objects are found by colour, as in the physics-balls scenes: discs of a palette colour (BALL_COLORS) drawn over
black, anti-aliased, so that a pixel of object k is a * c_k with a in [0, 1] its coverage. For each palette colour c_k
a pixel p (RGB in [0, 1]) gets
- a coverage a_k = clamp(<p, c_k> / |c_k|^2, 0, 1), its brightness along that colour (the black background: 0);
- a membership m_k = softmax_k(-sin^2(p, c_k) / temperature), a softmax over the negative squared-sine distances of
  its chromaticity to the palette's. The angle between p and c_k does not change when a colour fades into black, so
  the dim rim of a cyan disc is cyan, not blue, which a plain RGB distance would get wrong.
The object's weight at a pixel is m_k a_k; its position in each frame is the weighted centroid in the simulator's
pixel units (pixel (i, j) covers [j, j+1] x [i, i+1]), and its mass the summed weight (about pi r^2 for a disc; near
0 when it is absent). An object of no given colour is the foreground of any colour (the sum over the palette).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import einsum
from torch import Tensor

from kinema.data.physics_balls import BALL_COLORS
from kinema.errors import KinemaError

TEMPERATURE = 0.01  # sin^2 units: the closest palette pair (yellow, orange) is 0.06 apart


def palette_weights(video: Tensor, temperature: float = TEMPERATURE) -> Tensor:
    """Per-pixel weight m_k a_k of every BALL_COLORS colour: video [B, 3, T, H, W] in [-1, 1] -> [B, P, T, H, W]."""
    if video.ndim != 5 or video.shape[1] != 3:
        raise KinemaError(f"object read-out needs RGB videos [B, 3, T, H, W], got shape {list(video.shape)}")
    palette = torch.tensor(list(BALL_COLORS.values()), device=video.device, dtype=video.dtype)  # [P, 3]
    rgb = (video.clamp(-1, 1) + 1) / 2
    dot = einsum(rgb, palette, "b c t h w, p c -> b p t h w")
    norms = palette.square().sum(-1)[None, :, None, None, None]
    brightness = rgb.square().sum(1, keepdim=True)
    sine = 1 - dot.square() / (brightness * norms + 1e-6)
    return torch.softmax(-sine / temperature, dim=1) * (dot / norms).clamp(0, 1)


def object_moments(video: Tensor, colours: Sequence[str | None],
                   temperature: float = TEMPERATURE) -> tuple[Tensor, Tensor, Tensor]:
    """Soft centre (x, y) px [B, K, T, 2], spread [B, K, T] (the weight's mean squared distance from the centre,
    px^2: r^2 / 2 + 1/6 for a disc of radius r) and mass [B, K, T] of each object, named by its BALL_COLORS colour
    (None: the foreground of any colour), in videos [B, 3, T, H, W]; differentiable in the video."""
    unknown = [c for c in colours if c is not None and c not in BALL_COLORS]
    if unknown:
        raise KinemaError(f"object colours must be names from {sorted(BALL_COLORS)}, got {unknown}")
    weights = palette_weights(video, temperature)
    names = list(BALL_COLORS)
    weights = torch.stack([weights.sum(1) if c is None else weights[:, names.index(c)] for c in colours], 1)
    height, width = video.shape[-2:]
    xs = torch.arange(width, device=video.device, dtype=video.dtype) + 0.5
    ys = torch.arange(height, device=video.device, dtype=video.dtype) + 0.5
    mass = weights.sum((-2, -1))
    total = mass.clamp(min=1e-6)
    x = einsum(weights, xs, "b k t h w, w -> b k t") / total
    y = einsum(weights, ys, "b k t h w, h -> b k t") / total
    spread = (einsum(weights, xs.square(), "b k t h w, w -> b k t") + einsum(weights, ys.square(),
                                                                             "b k t h w, h -> b k t")) / total
    return torch.stack([x, y], dim=-1), spread - x.square() - y.square(), mass


def object_positions(video: Tensor, colours: Sequence[str | None],
                     temperature: float = TEMPERATURE) -> tuple[Tensor, Tensor]:
    """Soft centre (x, y) px [B, K, T, 2] and mass [B, K, T] of each object (`object_moments`)."""
    positions, _, mass = object_moments(video, colours, temperature)
    return positions, mass
