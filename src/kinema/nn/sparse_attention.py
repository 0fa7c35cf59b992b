"""Attention patterns cheaper than joint space-time attention: blocked/windowed with overlap and global tokens,
and axial (chapter 11.2.2, 11.2.5).

Windowed attention cuts the (t h w) grid into blocks (Tb, Hb, Wb); the queries of a block attend to the
keys of that block grown by the overlap (To, Ho, Wo) on every side (a "halo", as in HaloNet, Vaswani et al.
2021), plus G learned global tokens that first read the whole clip (as in ETC / BigBird). Memory is
O(N_b * Bs * (Bs + halo + G)) instead of O(L^2). Axial attention (Ho et al. 2019) attends along rows,
then along columns; frames are left to the temporal layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from kinema.errors import KinemaError
from kinema.nn.attention import Attention


def _window_keys(x: Tensor, block: tuple[int, ...], halo: tuple[int, ...], pad: tuple[int, ...]) -> Tensor:
    """[B, T, H, W, C] -> [B * windows, keys, C]: each block grown by `halo`, zero padded at the borders."""
    (pt, ph, pw), (ot, oh, ow) = pad, halo
    x = F.pad(x, (0, 0, ow, ow + pw, oh, oh + ph, ot, ot + pt))
    for dim, (size, grow) in enumerate(zip(block, halo), start=1):
        x = x.unfold(dim, size + 2 * grow, size)
    return rearrange(x, "b nt nh nw c kt kh kw -> (b nt nh nw) (kt kh kw) c")


class WindowedAttention(Attention):
    """Self-attention within space-time blocks (Tb, Hb, Wb), keys overlapping by (To, Ho, Wo), plus global tokens.

    Rotary frame positions (relative to the block) tell frames apart; the grid need not divide into blocks."""

    def __init__(self, dim: int, heads: int, block: tuple[int, int, int] = (2, 4, 4),
                 overlap: tuple[int, int, int] = (0, 0, 0), global_tokens: int = 0):
        super().__init__(dim, heads, rotary=True)
        if len(block) != 3 or len(overlap) != 3 or min(block) < 1 or min(overlap) < 0:
            raise KinemaError(f"window block {tuple(block)} / overlap {tuple(overlap)} must be 3 sizes (>= 1 / >= 0)")
        self.block, self.overlap = tuple(block), tuple(overlap)
        self.global_tokens = nn.Parameter(0.02 * torch.randn(global_tokens, dim)) if global_tokens else None

    def forward(self, x: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """x [B, t*h*w, C] in (t h w) order -> [B, t*h*w, C]."""
        b, _, c = x.shape
        t, h, w = grid
        block = tuple(min(size, n) for size, n in zip(self.block, grid))
        halo = tuple(min(o, n) for o, n in zip(self.overlap, grid))
        pad = tuple(-n % size for n, size in zip(grid, block))
        counts = tuple((n + p) // size for n, p, size in zip(grid, pad, block))
        grid_x = rearrange(x, "b (t h w) c -> b t h w c", t=t, h=h)

        q = F.pad(self.to_q(grid_x), (0, 0, 0, pad[2], 0, pad[1], 0, pad[0]))
        q = rearrange(q, "b (nt tb) (nh hb) (nw wb) c -> (b nt nh nw) (tb hb wb) c", tb=block[0], hb=block[1],
                      wb=block[2])
        kv = _window_keys(self.to_kv(grid_x), block, halo, pad)
        valid = _window_keys(x.new_ones(1, t, h, w, 1), block, halo, pad)[..., 0] > 0  # [windows, keys]
        valid = valid.repeat(b, 1)
        k, v = kv.chunk(2, dim=-1)
        q, k, v = (rearrange(a, "n l (h d) -> n h l d", h=self.heads) for a in (q, k, v))
        q_frames = (torch.arange(block[0], device=x.device) + halo[0]).repeat_interleave(block[1] * block[2])
        k_frames = torch.arange(block[0] + 2 * halo[0], device=x.device).repeat_interleave(
            (block[1] + 2 * halo[1]) * (block[2] + 2 * halo[2]))
        q, k = self.rotary.rotate(q, q_frames), self.rotary.rotate(k, k_frames)
        if self.global_tokens is not None:
            g_k, g_v = self._global_keys(x)
            windows = q.shape[0] // b
            k = torch.cat([k, g_k.repeat_interleave(windows, dim=0)], dim=2)
            v = torch.cat([v, g_v.repeat_interleave(windows, dim=0)], dim=2)
            valid = F.pad(valid, (0, g_k.shape[2]), value=True)
        out = self.merge(F.scaled_dot_product_attention(q, k, v, attn_mask=valid[:, None, None, :]))
        out = rearrange(out, "(b nt nh nw) (tb hb wb) c -> b (nt tb) (nh hb) (nw wb) c", b=b, nt=counts[0],
                        nh=counts[1], tb=block[0], hb=block[1])
        return rearrange(out[:, :t, :h, :w], "b t h w c -> b (t h w) c")

    def _global_keys(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Global tokens read the whole clip (g' = g + Attn(g, x)); their keys/values join every window."""
        g = self.global_tokens.expand(x.shape[0], -1, -1)
        q = rearrange(self.to_q(g), "n l (h d) -> n h l d", h=self.heads)
        k, v = (rearrange(a, "n l (h d) -> n h l d", h=self.heads) for a in self.to_kv(x).chunk(2, dim=-1))
        g = g + self.merge(F.scaled_dot_product_attention(q, k, v))
        return (rearrange(a, "n l (h d) -> n h l d", h=self.heads) for a in self.to_kv(g).chunk(2, dim=-1))


class AxialAttention(nn.Module):
    """Axial attention over a frame (Ho et al. 2019): along each column (H), then along each row (W).

    Each axis carries rotary positions along it; output projections start at zero."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.height = Attention(dim, heads, rotary=True)
        self.width = Attention(dim, heads, rotary=True)

    def forward(self, x: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """x [B, t*h*w, C] in (t h w) order -> [B, t*h*w, C]: the sum of the two axial updates."""
        t, h, w = grid
        columns = rearrange(x, "b (t h w) c -> (b t w) h c", t=t, h=h)
        along_h = self.height(columns, positions=torch.arange(h, device=x.device))
        along_h = rearrange(along_h, "(b t w) h c -> b (t h w) c", t=t, w=w)
        rows = rearrange(x + along_h, "b (t h w) c -> (b t h) w c", t=t, h=h)
        along_w = self.width(rows, positions=torch.arange(w, device=x.device))
        return along_h + rearrange(along_w, "(b t h) w c -> b (t h w) c", t=t, h=h)

