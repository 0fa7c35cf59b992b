"""Inter-frame propagation by recurrence: ConvGRU / ConvLSTM temporal blocks (forward or bidirectional) and the
gated temporal residual h_t = x_t + a * g(h_{t-1}) (chapter 11.2.3).

ConvLSTM follows Shi et al. 2015 and ConvGRU Ballas et al. 2016: the gates are convolutions, so the hidden
state keeps its H x W layout. Each block is a residual branch whose output projection (or gate a) starts at
zero, so a freshly inserted block is the identity.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from kinema.errors import KinemaError

RECURRENT_KINDS = ("convgru", "convlstm", "gated_residual")


class ConvGRUCell(nn.Module):
    """r, z = sigmoid(W * [x, h]); h~ = tanh(W_h * [x, r . h]); h' = z . h + (1 - z) . h~."""

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        self.gates = nn.Conv2d(2 * channels, 2 * channels, kernel_size, padding=kernel_size // 2)
        self.candidate = nn.Conv2d(2 * channels, channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
        """x [B, C, H, W], state h or None -> (output h', new state h')."""
        h = torch.zeros_like(x) if state is None else state
        r, z = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, dim=1)
        h = z * h + (1 - z) * torch.tanh(self.candidate(torch.cat([x, r * h], 1)))
        return h, h


class ConvLSTMCell(nn.Module):
    """i, f, o, g from one convolution of [x, h]; c' = f . c + i . g; h' = o . tanh(c')."""

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        self.gates = nn.Conv2d(2 * channels, 4 * channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x [B, C, H, W], state (h, c) or None -> (output h', new state (h', c'))."""
        h, c = (torch.zeros_like(x), torch.zeros_like(x)) if state is None else state
        i, f, o, g = self.gates(torch.cat([x, h], 1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


def _scan(cell: nn.Module, x: Tensor, reverse: bool) -> Tensor:
    """Run `cell` over the frames of x [B, C, T, H, W] (last to first when `reverse`) -> hidden states like x."""
    order = range(x.shape[2] - 1, -1, -1) if reverse else range(x.shape[2])
    outputs, state = {}, None
    for t in order:
        outputs[t], state = cell(x[:, :, t], state)
    return torch.stack([outputs[t] for t in range(x.shape[2])], dim=2)


class RecurrentTemporalBlock(nn.Module):
    """x + W_out [h_fwd; h_bwd]: a ConvGRU or ConvLSTM over frames, forward or both ways, fused by a 1x1 conv."""

    def __init__(self, channels: int, cell: str = "convgru", bidirectional: bool = False, kernel_size: int = 3):
        super().__init__()
        cells = {"convgru": ConvGRUCell, "convlstm": ConvLSTMCell}
        if cell not in cells:
            raise KinemaError(f"unknown recurrent cell '{cell}' (choose convgru or convlstm)")
        self.norm = nn.GroupNorm(1, channels)
        self.forward_cell = cells[cell](channels, kernel_size)
        self.backward_cell = cells[cell](channels, kernel_size) if bidirectional else None
        self.out = nn.Conv3d(channels * (2 if bidirectional else 1), channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, C, T, H, W] -> same shape; frame t sees frames <= t (all frames when bidirectional)."""
        normed = rearrange(self.norm(rearrange(x, "b c t h w -> (b t) c h w")), "(b t) c h w -> b c t h w",
                           b=x.shape[0])  # per frame: no information crosses frames here
        h = _scan(self.forward_cell, normed, reverse=False)
        if self.backward_cell is not None:
            h = torch.cat([h, _scan(self.backward_cell, normed, reverse=True)], dim=1)
        return x + self.out(h)


class GatedTemporalResidual(nn.Module):
    """h_t = x_t + a * g(h_{t-1}) with h_0 = x_0, g a 3x3 conv and a learned per-channel gate starting at 0."""

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        self.transform = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.gate = nn.Parameter(torch.zeros(channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """x [B, C, T, H, W] -> h like x (causal: h_t depends on frames <= t)."""
        frames = [x[:, :, 0]]
        for t in range(1, x.shape[2]):
            frames.append(x[:, :, t] + self.gate * torch.tanh(self.transform(frames[-1])))
        return torch.stack(frames, dim=2)


def recurrent_block(kind: str, channels: int, bidirectional: bool = False) -> nn.Module:
    """Build the temporal recurrence `kind` (one of RECURRENT_KINDS)."""
    if kind == "gated_residual":
        if bidirectional:
            raise KinemaError("gated_residual is a forward recurrence; bidirectional applies to convgru/convlstm")
        return GatedTemporalResidual(channels)
    if kind not in RECURRENT_KINDS:
        raise KinemaError(f"unknown recurrent block '{kind}' (choose from {', '.join(RECURRENT_KINDS)})")
    return RecurrentTemporalBlock(channels, kind, bidirectional)
