"""Video convolutions: factorized (2+1)D convolution with an identity-initialised temporal part (chapter 11.2.1).

(2+1)D follows Tran et al. 2018 (R(2+1)D): a k x k spatial convolution applied to every frame,
then a k_t temporal convolution at every pixel. The temporal part starts as the identity, so a
network built from these blocks starts out as the image network applied frame by frame.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TemporalConv(nn.Module):
    """1D convolution over frames at every pixel, initialised to the identity map."""

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, (kernel_size, 1, 1), padding=(kernel_size // 2, 0, 0))
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            self.conv.weight[:, :, kernel_size // 2, 0, 0] = torch.eye(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class SpatialConv(nn.Module):
    """2D convolution applied to each frame of [B, C, T, H, W] (a (1, k, k) Conv3d: no reshape copies)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, (1, kernel_size, kernel_size), stride=(1, stride, stride),
                              padding=(0, kernel_size // 2, kernel_size // 2))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class FactorizedConv3d(nn.Module):
    """(2+1)D convolution: spatial k x k per frame, then identity-initialised temporal k_t (Tran et al. 2018)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, temporal_kernel_size: int = 3):
        super().__init__()
        self.spatial = SpatialConv(in_channels, out_channels, kernel_size)
        self.temporal = TemporalConv(out_channels, temporal_kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.temporal(self.spatial(x))
