"""Attention over video tokens: spatial, temporal (with rotary frame positions), joint and cross (chapter 11.2.2).

All use torch's fused `scaled_dot_product_attention`. Output projections start at zero, so a
freshly added attention layer is the identity inside its residual branch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from kinema.nn.embeddings import RotaryEmbedding1d


class Attention(nn.Module):
    """Multi-head attention on [N, L, C] tokens; keys/values from `context` when given (cross-attention)."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None, rotary: bool = False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by heads={heads}")
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(context_dim or dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)
        self.rotary = RotaryEmbedding1d(dim // heads) if rotary else None

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                positions: Tensor | None = None) -> Tensor:
        """x [N, L, C]; context [N, S, Cc]; mask broadcastable to [N, heads, L, S] (True = attend); positions [L]."""
        q = self.to_q(x)
        k, v = self.to_kv(x if context is None else context).chunk(2, dim=-1)
        q, k, v = (rearrange(a, "n l (h d) -> n h l d", h=self.heads) for a in (q, k, v))
        if self.rotary is not None:
            q, k = self.rotary(q, k, positions)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out(rearrange(out, "n h l d -> n l (h d)"))


def temporal_mask(frames: int, kind: str = "bidirectional", window: int | None = None,
                  device: torch.device | None = None) -> Tensor | None:
    """[T, T] bool mask (True = may attend): 'bidirectional', 'causal', optionally limited to |i - j| <= window."""
    if kind not in ("bidirectional", "causal"):
        raise ValueError(f"unknown temporal mask '{kind}' (choose bidirectional or causal)")
    if kind == "bidirectional" and window is None:
        return None
    i = torch.arange(frames, device=device)
    offset = i[:, None] - i[None, :]
    allowed = torch.ones(frames, frames, dtype=torch.bool, device=device)
    if kind == "causal":
        allowed &= offset >= 0
    if window is not None:
        allowed &= offset.abs() <= window
    return allowed


class VideoTransformerBlock(nn.Module):
    """Pre-norm block on [B, C, T, H, W]: spatial or joint self-attention, text cross-attention,
    temporal self-attention with rotary frame positions, then an MLP — each a residual branch."""

    def __init__(self, channels: int, heads: int, spatial: str | None = "spatial", temporal: bool = True,
                 text_dim: int | None = None, mlp_ratio: int = 2, temporal_mask_kind: str = "bidirectional"):
        super().__init__()
        if spatial not in (None, "spatial", "joint"):
            raise ValueError(f"unknown spatial attention '{spatial}' (choose spatial, joint or none)")
        self.spatial_kind = spatial
        self.temporal_mask_kind = temporal_mask_kind
        self.norm_spatial = nn.LayerNorm(channels) if spatial else None
        self.spatial = Attention(channels, heads, rotary=spatial == "joint") if spatial else None
        self.norm_cross = nn.LayerNorm(channels) if text_dim else None
        self.cross = Attention(channels, heads, context_dim=text_dim) if text_dim else None
        self.norm_temporal = nn.LayerNorm(channels) if temporal else None
        self.temporal = Attention(channels, heads, rotary=True) if temporal else None
        self.norm_mlp = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, mlp_ratio * channels), nn.GELU(),
                                 nn.Linear(mlp_ratio * channels, channels))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, x: Tensor, text: Tensor | None = None, text_mask: Tensor | None = None) -> Tensor:
        b, _, t, h, w = x.shape
        frame_index = torch.arange(t, device=x.device)
        tokens = rearrange(x, "b c t h w -> b (t h w) c")
        if self.spatial_kind == "joint":
            tokens = tokens + self.spatial(self.norm_spatial(tokens), positions=frame_index.repeat_interleave(h * w))
        elif self.spatial_kind == "spatial":
            per_frame = rearrange(tokens, "b (t l) c -> (b t) l c", t=t)
            per_frame = per_frame + self.spatial(self.norm_spatial(per_frame))
            tokens = rearrange(per_frame, "(b t) l c -> b (t l) c", b=b)
        if self.cross is not None:
            if text is None:
                raise ValueError("this block has text cross-attention but no text tokens were given")
            mask = None if text_mask is None else text_mask[:, None, None, :]
            tokens = tokens + self.cross(self.norm_cross(tokens), context=text, mask=mask)
        if self.temporal is not None:
            per_pixel = rearrange(tokens, "b (t l) c -> (b l) t c", t=t)
            mask = temporal_mask(t, self.temporal_mask_kind, device=x.device)
            per_pixel = per_pixel + self.temporal(self.norm_temporal(per_pixel), mask=mask, positions=frame_index)
            tokens = rearrange(per_pixel, "(b l) t c -> b (t l) c", b=b)
        tokens = tokens + self.mlp(self.norm_mlp(tokens))
        return rearrange(tokens, "b (t h w) c -> b c t h w", t=t, h=h)
