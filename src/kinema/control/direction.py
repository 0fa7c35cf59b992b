"""Direction of motion as a differentiable energy on a clean-video estimate, for gradient guidance (chapter 11.3).

The moving content of each frame is located by its foreground mass: how far each pixel is from the frame's
median colour (the background, for objects on a plain backdrop). Its centroid's least-squares velocity over
the frames, projected on the asked direction, must reach `min_speed` pixels per frame; the energy is the
squared shortfall times the frame area (so a guidance weight near 1 is a moderate push at any resolution), zero
once the video moves that way, so guidance only pushes videos that do not.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor


def foreground_centroids(video: Tensor) -> Tensor:
    """Centroid (x, y) in pixels of each frame's foreground mass: video [B, C, T, H, W] -> [B, T, 2]."""
    flat = rearrange(video, "b c t h w -> b c t (h w)")
    mass = (flat - flat.median(dim=-1, keepdim=True).values).abs().mean(1)  # [B, T, HW]
    mass = rearrange(mass, "b t (h w) -> b t h w", h=video.shape[-2])
    total = mass.sum((-2, -1)).clamp(min=1e-6)
    xs = torch.arange(video.shape[-1], device=video.device, dtype=video.dtype)
    ys = torch.arange(video.shape[-2], device=video.device, dtype=video.dtype)
    return torch.stack([(mass.sum(-2) * xs).sum(-1) / total, (mass.sum(-1) * ys).sum(-1) / total], dim=-1)


def centroid_velocity(video: Tensor) -> Tensor:
    """Least-squares velocity (px per frame) of the foreground centroid: [B, C, T, H, W] -> [B, 2]."""
    centroids = foreground_centroids(video)
    tau = torch.arange(video.shape[2], device=video.device, dtype=video.dtype)
    tau = tau - tau.mean()
    return torch.einsum("btk,t->bk", centroids, tau) / tau.square().sum().clamp(min=1e-6)


def direction_energy(direction: Tensor, min_speed: float = 1.0) -> Callable[[Tensor], Tensor]:
    """Energy `E(video) -> [B]` that is zero when the video moves along `direction` [B, 2] (x right, y down) by at
    least `min_speed` px per frame; rows with no direction (0, 0) carry no energy."""
    norm = direction.norm(dim=-1, keepdim=True)
    unit = torch.where(norm > 0, direction / norm.clamp(min=1e-6), torch.zeros_like(direction))

    def energy(video: Tensor) -> Tensor:
        along = (centroid_velocity(video) * unit.to(video)).sum(-1)
        area = video.shape[-2] * video.shape[-1]
        return area * F.relu(min_speed - along).square() * (norm[:, 0] > 0).to(video.dtype)

    return energy
