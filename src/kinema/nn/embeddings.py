"""Noise-level embeddings and position encodings: sin-cos, learned, 1D and 3D rotary (Vaswani et al. 2017;
Su et al. 2021; chapter 11.2.5)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from kinema.errors import KinemaError


def sinusoidal_embedding(values: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sin-cos features of `values` (any shape) -> shape (*values.shape, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=values.device, dtype=torch.float32) / half)
    angles = values.float()[..., None] * freqs
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class NoiseLevelEmbedding(nn.Module):
    """MLP on sin-cos features of the noise level t in [0, 1] (scaled to 0..1000 as in DDPM)."""

    def __init__(self, dim: int, frequency_dim: int = 128):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        """t [B] or [B, T] -> [B, T?, dim]."""
        return self.mlp(sinusoidal_embedding(t * 1000.0, self.frequency_dim))


class DirectionEmbedding(nn.Module):
    """Per-frame embedding of an overall direction d [B, 2] (chapter 11.3 direction control): an MLP on (d, tau_t d),
    tau_t in [-1, 1] the frame's place in the clip, so every frame is told how far along d it should be. The last
    layer starts at zero: adding the embedding to a trained model changes nothing until it learns to use it."""

    def __init__(self, dim: int, directions: int = 2):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * directions, dim), nn.SiLU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, direction: Tensor, frames: int) -> Tensor:
        """direction [B, directions] -> [B, frames, dim]."""
        tau = torch.linspace(-1.0, 1.0, frames, device=direction.device) if frames > 1 else direction.new_zeros(1)
        steady = direction[:, None, :].expand(-1, frames, -1)
        return self.mlp(torch.cat([steady, steady * tau[None, :, None].to(direction.dtype)], dim=-1))


class AttributeEmbedding(nn.Module):
    """Embedding of scalar knobs [B, A] (SVD micro-conditioning, Blattmann et al. 2023): sin-cos features of each
    value times its scale, an MLP, summed over knobs; NaN (not given) takes a learned per-knob vector instead. The
    last layer starts at zero, so a model gaining knobs is unchanged until it learns them."""

    def __init__(self, dim: int, scales: list[float], frequency_dim: int = 64):
        super().__init__()
        self.register_buffer("scales", torch.tensor(scales, dtype=torch.float32), persistent=False)
        self.frequency_dim = frequency_dim
        self.null = nn.Parameter(torch.zeros(len(scales), frequency_dim))
        self.mlp = nn.Sequential(nn.Linear(len(scales) * frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, values: Tensor) -> Tensor:
        """values [B, A] (NaN = not given) -> [B, dim]."""
        missing = values.isnan()
        features = sinusoidal_embedding(torch.where(missing, 0.0, values) * self.scales, self.frequency_dim)
        features = torch.where(missing[..., None], self.null.to(features.dtype), features)
        return self.mlp(features.flatten(1).to(self.mlp[0].weight.dtype))


class RotaryEmbedding1d(nn.Module):
    """Rotary position embedding along one axis (RoFormer, Su et al. 2021) for attention over frames."""

    def __init__(self, head_dim: int, base: float = 10_000.0):
        super().__init__()
        self.register_buffer("inv_freq", base ** (-torch.arange(0, head_dim, 2).float() / head_dim), persistent=False)

    def forward(self, q: Tensor, k: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Rotate q, k [..., N, head_dim] by the angles of `positions` [N]."""
        return self.rotate(q, positions), self.rotate(k, positions)

    def rotate(self, x: Tensor, positions: Tensor) -> Tensor:
        """Rotate x [..., N, head_dim] by the angles of `positions` [N] (or [B, N] for x [B, heads, N, head_dim])."""
        angles = positions.float()[..., None] * self.inv_freq
        if angles.ndim == 3:
            angles = angles[:, None]  # per-sample positions, shared by the heads
        return _rotate(x, angles.cos().to(x.dtype), angles.sin().to(x.dtype))


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


class RotaryEmbedding3d(nn.Module):
    """3D rotary embedding: head dims split into (t, h, w) groups, each rotated by its own axis (Su et al. 2021).

    The h and w groups get 2 * (head_dim // 6) dims each, t the rest, so any even head_dim >= 6 works."""

    def __init__(self, head_dim: int, base: float = 10_000.0):
        super().__init__()
        if head_dim % 2 or head_dim < 6:
            raise KinemaError(f"3D rotary positions need an even head width >= 6, got {head_dim}")
        spatial = 2 * (head_dim // 6)
        self.split = (head_dim - 2 * spatial, spatial, spatial)
        self.axes = nn.ModuleList(RotaryEmbedding1d(d, base) for d in self.split)

    def forward(self, q: Tensor, k: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Rotate q, k [..., N, head_dim] by `positions` [N, 3] or [B, N, 3] (frame, row, column)."""
        return self.rotate(q, positions), self.rotate(k, positions)

    def rotate(self, x: Tensor, positions: Tensor) -> Tensor:
        """x [..., N, head_dim] rotated by `positions` [N, 3] or [B, N, 3]."""
        parts = x.split(self.split, dim=-1)
        return torch.cat([axis.rotate(part, positions[..., i]) for i, (axis, part) in enumerate(zip(self.axes, parts))],
                         dim=-1)


def sincos_position_embedding_3d(frames: int, height: int, width: int, dim: int,
                                 device: torch.device | None = None) -> Tensor:
    """Separable sin-cos positions PE(t) + PE(h, w) for a (t h w)-ordered token grid -> [t*h*w, dim] (chapter 11.2.5).

    PE(h, w) concatenates dim/2 features of the row and dim/2 of the column, as in MAE / DiT."""
    if dim % 4:
        raise KinemaError(f"sin-cos positions need a width divisible by 4, got {dim}")
    t, h, w = torch.meshgrid(*(torch.arange(n, device=device) for n in (frames, height, width)), indexing="ij")
    spatial = torch.cat([sinusoidal_embedding(h.flatten(), dim // 2), sinusoidal_embedding(w.flatten(), dim // 2)], -1)
    return sinusoidal_embedding(t.flatten(), dim) + spatial


class LearnedPositionEmbedding3d(nn.Module):
    """Learned separable positions: a table per axis (frames, rows, columns), summed per token."""

    def __init__(self, dim: int, max_frames: int, max_height: int, max_width: int):
        super().__init__()
        self.frames = nn.Parameter(0.02 * torch.randn(max_frames, dim))
        self.rows = nn.Parameter(0.02 * torch.randn(max_height, dim))
        self.columns = nn.Parameter(0.02 * torch.randn(max_width, dim))

    def forward(self, frames: int, height: int, width: int) -> Tensor:
        """[frames*height*width, dim] for a (t h w)-ordered grid no larger than the tables."""
        limits = (self.frames.shape[0], self.rows.shape[0], self.columns.shape[0])
        if frames > limits[0] or height > limits[1] or width > limits[2]:
            raise KinemaError(f"token grid {frames}x{height}x{width} exceeds the learned position tables "
                              f"{limits[0]}x{limits[1]}x{limits[2]}")
        grid = (self.frames[:frames, None, None] + self.rows[None, :height, None] + self.columns[None, None, :width])
        return grid.flatten(0, 2)
