"""Noise-level embeddings and rotary position encodings (Vaswani et al. 2017; Su et al. 2021)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


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


class RotaryEmbedding1d(nn.Module):
    """Rotary position embedding along one axis (RoFormer, Su et al. 2021) for attention over frames."""

    def __init__(self, head_dim: int, base: float = 10_000.0):
        super().__init__()
        self.register_buffer("inv_freq", base ** (-torch.arange(0, head_dim, 2).float() / head_dim), persistent=False)

    def forward(self, q: Tensor, k: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """Rotate q, k [..., N, head_dim] by the angles of `positions` [N]."""
        angles = positions.float()[:, None] * self.inv_freq
        cos, sin = angles.cos().to(q.dtype), angles.sin().to(q.dtype)
        return _rotate(q, cos, sin), _rotate(k, cos, sin)


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
