"""Attention over video tokens: spatial, temporal, joint, parallel/serial, multi-scale temporal and cross
(chapter 11.2.2, 11.2.4).

All use torch's fused `scaled_dot_product_attention`. Output projections start at zero, so a
freshly added attention layer is the identity inside its residual branch. Temporal masks
(causal, bidirectional, local window k; chapter 11.2.3) restrict which frames a frame may see in
temporal and joint attention. Windowed and axial attention live in `kinema.nn.sparse_attention`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from kinema.errors import KinemaError
from kinema.nn.embeddings import RotaryEmbedding1d, RotaryEmbedding3d

SPATIAL_KINDS = ("spatial", "joint", "axial", "windowed")
TEMPORAL_MASKS = ("bidirectional", "causal")


class Attention(nn.Module):
    """Multi-head attention on [N, L, C] tokens; keys/values from `context` when given (cross-attention).

    `rotary` rotates queries and keys by positions: 1D (frame index) or, with `rotary_axes=3`, 3D (t, h, w)."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None, rotary: bool = False,
                 rotary_axes: int = 1):
        super().__init__()
        if dim % heads:
            raise KinemaError(f"attention width {dim} is not divisible by heads={heads}")
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(context_dim or dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)
        rotary_class = RotaryEmbedding3d if rotary_axes == 3 else RotaryEmbedding1d
        self.rotary = rotary_class(dim // heads) if rotary else None

    def project(self, x: Tensor, context: Tensor | None = None,
                positions: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v as [N, heads, L, head_dim], rotated by `positions` when the layer is rotary."""
        q = self.to_q(x)
        k, v = self.to_kv(x if context is None else context).chunk(2, dim=-1)
        q, k, v = (rearrange(a, "n l (h d) -> n h l d", h=self.heads) for a in (q, k, v))
        if self.rotary is not None:
            q, k = self.rotary(q, k, positions)
        return q, k, v

    def merge(self, out: Tensor) -> Tensor:
        """[N, heads, L, head_dim] -> output projection [N, L, C]."""
        return self.to_out(rearrange(out, "n h l d -> n l (h d)"))

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                positions: Tensor | None = None) -> Tensor:
        """x [N, L, C]; context [N, S, Cc]; mask broadcastable to [N, heads, L, S] (True = attend); positions [L]."""
        q, k, v = self.project(x, context, positions)
        return self.merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def temporal_mask(frames: int, kind: str = "bidirectional", window: int | None = None,
                  device: torch.device | None = None) -> Tensor | None:
    """[T, T] bool mask (True = may attend): 'bidirectional', 'causal', optionally limited to |i - j| <= window."""
    if kind not in TEMPORAL_MASKS:
        raise KinemaError(f"unknown temporal mask '{kind}' (choose bidirectional or causal)")
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


def _narrowest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


class MultiScaleTemporalAttention(Attention):
    """Temporal attention at several window sizes (local / medium / global) mixed by learned gates (chapter 11.2.4).

    h = sum_s g_s * Attn_s(x), with g = softmax(gate logits) and Attn_s limited to |i - j| <= window_s
    (0 = the whole clip); queries, keys and values are shared by the scales."""

    def __init__(self, dim: int, heads: int, windows: tuple[int, ...] = (2, 8, 0)):
        super().__init__(dim, heads, rotary=True)
        self.windows = tuple(w or None for w in windows)
        self.gates = nn.Parameter(torch.zeros(len(windows)))

    def forward(self, x: Tensor, mask_kind: str = "bidirectional", window: int | None = None,
                positions: Tensor | None = None) -> Tensor:
        """x [N, T, C]; every scale also obeys `mask_kind` and the outer `window`."""
        q, k, v = self.project(x, positions=positions)
        weights = self.gates.softmax(0)
        out = 0
        for weight, scale in zip(weights, self.windows):
            mask = temporal_mask(x.shape[1], mask_kind, _narrowest(scale, window), device=x.device)
            out = out + weight * F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.merge(out)


class VideoTransformerBlock(nn.Module):
    """Pre-norm block on [B, C, T, H, W]: spatial (per-frame, joint, axial or windowed) self-attention, text
    cross-attention, temporal self-attention with rotary frame positions, then an MLP — each a residual branch.

    `arrangement` 'serial' applies spatial then temporal attention; 'parallel' adds both computed from the same
    input: x + S(x) + T(x). `temporal_scales` switches the temporal layer to multi-scale heads."""

    def __init__(self, channels: int, heads: int, spatial: str | None = "spatial", temporal: bool = True,
                 text_dim: int | None = None, mlp_ratio: int = 2, temporal_mask_kind: str = "bidirectional",
                 temporal_window: int | None = None, arrangement: str = "serial",
                 temporal_scales: tuple[int, ...] | None = None, window: tuple[int, int, int] = (2, 4, 4),
                 window_overlap: tuple[int, int, int] = (0, 0, 0), global_tokens: int = 0):
        super().__init__()
        from kinema.nn.sparse_attention import AxialAttention, WindowedAttention

        if spatial not in (None, *SPATIAL_KINDS):
            raise KinemaError(f"unknown spatial attention '{spatial}' (choose {', '.join(SPATIAL_KINDS)} or none)")
        if arrangement not in ("serial", "parallel"):
            raise KinemaError(f"unknown attention arrangement '{arrangement}' (choose serial or parallel)")
        if arrangement == "parallel" and not (spatial and temporal):
            raise KinemaError("parallel attention needs both a spatial and a temporal layer")
        temporal_mask(1, temporal_mask_kind)  # validates the kind
        self.spatial_kind = spatial
        self.temporal_mask_kind = temporal_mask_kind
        self.temporal_window = temporal_window or None
        self.arrangement = arrangement
        self.norm_spatial = nn.LayerNorm(channels) if spatial else None
        if spatial == "axial":
            self.spatial = AxialAttention(channels, heads)
        elif spatial == "windowed":
            self.spatial = WindowedAttention(channels, heads, window, window_overlap, global_tokens)
        else:
            self.spatial = Attention(channels, heads, rotary=spatial == "joint") if spatial else None
        self.norm_cross = nn.LayerNorm(channels) if text_dim else None
        self.cross = Attention(channels, heads, context_dim=text_dim) if text_dim else None
        self.norm_temporal = nn.LayerNorm(channels) if temporal else None
        if temporal and temporal_scales:
            self.temporal = MultiScaleTemporalAttention(channels, heads, temporal_scales)
        else:
            self.temporal = Attention(channels, heads, rotary=True) if temporal else None
        self.norm_mlp = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, mlp_ratio * channels), nn.GELU(),
                                 nn.Linear(mlp_ratio * channels, channels))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def _spatial(self, tokens: Tensor, grid: tuple[int, int, int]) -> Tensor:
        t, h, w = grid
        normed = self.norm_spatial(tokens)
        if self.spatial_kind == "spatial":
            per_frame = rearrange(normed, "b (t l) c -> (b t) l c", t=t)
            return rearrange(self.spatial(per_frame), "(b t) l c -> b (t l) c", t=t)
        if self.spatial_kind == "joint":
            frame = torch.arange(t, device=tokens.device).repeat_interleave(h * w)
            mask = temporal_mask(t, self.temporal_mask_kind, self.temporal_window, device=tokens.device)
            mask = None if mask is None else mask[frame][:, frame]  # frame-level mask lifted to tokens
            return self.spatial(normed, mask=mask, positions=frame)
        return self.spatial(normed, grid)

    def _temporal(self, tokens: Tensor, frames: int) -> Tensor:
        per_pixel = rearrange(self.norm_temporal(tokens), "b (t l) c -> (b l) t c", t=frames)
        frame_index = torch.arange(frames, device=tokens.device)
        if isinstance(self.temporal, MultiScaleTemporalAttention):
            out = self.temporal(per_pixel, self.temporal_mask_kind, self.temporal_window, positions=frame_index)
        else:
            mask = temporal_mask(frames, self.temporal_mask_kind, self.temporal_window, device=tokens.device)
            out = self.temporal(per_pixel, mask=mask, positions=frame_index)
        return rearrange(out, "(b l) t c -> b (t l) c", b=tokens.shape[0])

    def forward(self, x: Tensor, text: Tensor | None = None, text_mask: Tensor | None = None) -> Tensor:
        _, _, t, h, w = x.shape
        tokens = rearrange(x, "b c t h w -> b (t h w) c")
        if self.arrangement == "parallel":
            tokens = tokens + self._spatial(tokens, (t, h, w)) + self._temporal(tokens, t)
        elif self.spatial is not None:
            tokens = tokens + self._spatial(tokens, (t, h, w))
        if self.cross is not None:
            if text is None:
                raise KinemaError("this block has text cross-attention but no text tokens were given")
            mask = None if text_mask is None else text_mask[:, None, None, :]
            tokens = tokens + self.cross(self.norm_cross(tokens), context=text, mask=mask)
        if self.arrangement == "serial" and self.temporal is not None:
            tokens = tokens + self._temporal(tokens, t)
        tokens = tokens + self.mlp(self.norm_mlp(tokens))
        return rearrange(tokens, "b (t h w) c -> b c t h w", t=t, h=h)
