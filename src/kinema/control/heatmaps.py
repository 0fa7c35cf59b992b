"""Object paths rendered as dense per-frame maps for trained trajectory conditioning (chapter 11.3.3).

Two renderings of K objects' positions [B, K, T, 2] (pixels, x right, y down; pixel (i, j) covers [j, j+1] x
[i, i+1], so its centre is (j + 0.5, i + 0.5)); an object is absent where its position is NaN or its radius 0:

- `trajectory_heatmaps`: a Gaussian blob per object and frame, sigma = radius / 2, the maximum over objects
  (the point heatmaps of DragNUWA / Tora-style trajectory control);
- `sparse_flow`: each object's displacement to the next frame painted on its disc, zero elsewhere (the sparse
  motion field of DragNUWA / MotionCtrl); the last frame repeats the previous step.
"""

from __future__ import annotations

import torch
from torch import Tensor

SIGMA_PER_RADIUS = 0.5  # Gaussian sigma = radius / 2: the blob falls to exp(-2) ~ 0.14 at the object's rim


def _offsets(positions: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Pixel centre minus object position: dx [B, K, T, 1, W], dy [B, K, T, H, 1] (NaN for absent objects)."""
    xs = torch.arange(width, device=positions.device, dtype=positions.dtype) + 0.5
    ys = torch.arange(height, device=positions.device, dtype=positions.dtype) + 0.5
    dx = xs.view(1, 1, 1, 1, width) - positions[..., 0, None, None]
    dy = ys.view(1, 1, 1, height, 1) - positions[..., 1, None, None]
    return dx, dy


def _present(positions: Tensor, radii: Tensor) -> Tensor:
    """[B, K, T]: the object is in this frame (finite position, radius > 0)."""
    return torch.isfinite(positions).all(-1) & (radii[..., None] > 0)


def trajectory_heatmaps(positions: Tensor, radii: Tensor, height: int, width: int) -> Tensor:
    """Gaussian heatmaps of object positions [B, K, T, 2] px with radii [B, K] -> [B, 1, T, H, W] in [0, 1]."""
    batch, objects, frames = positions.shape[:3]
    if objects == 0:
        return positions.new_zeros(batch, 1, frames, height, width)
    dx, dy = _offsets(positions, height, width)
    sigma = (radii * SIGMA_PER_RADIUS).clamp(min=1e-6)[..., None, None, None]  # [B, K, 1, 1, 1]
    blobs = torch.exp(-(dx.square() + dy.square()) / (2 * sigma.square()))  # [B, K, T, H, W]
    blobs = torch.where(_present(positions, radii)[..., None, None], blobs, torch.zeros_like(blobs))
    return blobs.amax(dim=1, keepdim=True)


def sparse_flow(positions: Tensor, radii: Tensor, height: int, width: int) -> Tensor:
    """Each object's step to the next frame (dx, dy px) on its disc, 0 elsewhere: [B, K, T, 2] -> [B, 2, T, H, W].

    The last frame repeats the previous step; where discs overlap the nearest centre's step wins; a step to or
    from an absent position is 0."""
    batch, objects, frames = positions.shape[:3]
    flow = positions.new_zeros(batch, 2, frames, height, width)
    if objects == 0 or frames < 2:
        return flow
    step = positions[:, :, 1:] - positions[:, :, :-1]
    step = torch.cat([step, step[:, :, -1:]], dim=2).nan_to_num(0.0)  # [B, K, T, 2]
    dx, dy = _offsets(positions, height, width)
    distance = dx.square() + dy.square()  # [B, K, T, H, W]
    inside = (distance <= radii[..., None, None, None].square()) & _present(positions, radii)[..., None, None]
    nearest = torch.where(inside, distance, torch.full_like(distance, float("inf"))).argmin(dim=1, keepdim=True)
    owner = (torch.arange(objects, device=positions.device).view(1, -1, 1, 1, 1) == nearest) & inside
    return torch.einsum("bkthw,bktc->bcthw", owner.to(positions.dtype), step)
