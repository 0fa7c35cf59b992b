"""Video convolutions: full 3D, factorized (2+1)D, pseudo-3D A/B/C and depthwise-separable 3D (chapter 11.2.1, 11.2.6).

(2+1)D follows Tran et al. 2018 (R(2+1)D): a k x k spatial convolution applied to every frame,
then a k_t temporal convolution at every pixel. Pseudo-3D follows Qiu et al. 2017 (P3D) in the
chapter's arrangement: A serial, B parallel, C a 1x1x1 bottleneck around S + T(S). Every variant
starts as a per-frame image convolution (identity or zero-initialised temporal part, a full 3D kernel
that is zero off its centre frame), so a network built from them starts as the image network
applied frame by frame. `zero_output_()` zeroes the last layer, for residual branches that start at 0.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kinema.errors import KinemaError

CONV_KINDS = ("factorized", "full3d", "p3d_a", "p3d_b", "p3d_c", "depthwise3d")


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


def _zero_(conv: nn.Conv3d) -> None:
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)


class FactorizedConv3d(nn.Module):
    """(2+1)D convolution: spatial k x k per frame, then identity-initialised temporal k_t (Tran et al. 2018).

    Parameters: C_in C_out k^2 + C_out^2 k_t (+ 2 C_out biases)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, temporal_kernel_size: int = 3):
        super().__init__()
        self.spatial = SpatialConv(in_channels, out_channels, kernel_size)
        self.temporal = TemporalConv(out_channels, temporal_kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.temporal(self.spatial(x))

    def zero_output_(self) -> None:
        """Zero the spatial part: with the identity temporal part, the whole conv outputs 0."""
        _zero_(self.spatial.conv)


class FullConv3d(nn.Module):
    """Full (k_t, k, k) 3D convolution, initialised with weights only on the centre frame (I3D-style inflation).

    Parameters: C_in C_out k_t k^2 (+ C_out biases)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, temporal_kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, (temporal_kernel_size, kernel_size, kernel_size),
                              padding=(temporal_kernel_size // 2, kernel_size // 2, kernel_size // 2))
        with torch.no_grad():  # a 2D conv's default init on the centre frame, zero elsewhere
            centre = nn.Conv2d(in_channels, out_channels, kernel_size).weight
            self.conv.weight.zero_()
            self.conv.weight[:, :, temporal_kernel_size // 2] = centre

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)

    def zero_output_(self) -> None:
        """Zero the kernel and bias."""
        _zero_(self.conv)


class P3DConvA(nn.Module):
    """P3D-A (serial), as the chapter writes P3D: y = S(x) + T(S(x)), temporal branch zero-initialised.

    Parameters: C_in C_out k^2 + C_out^2 k_t (+ 2 C_out biases)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, temporal_kernel_size: int = 3):
        super().__init__()
        self.spatial = SpatialConv(in_channels, out_channels, kernel_size)
        self.temporal = nn.Conv3d(out_channels, out_channels, (temporal_kernel_size, 1, 1),
                                  padding=(temporal_kernel_size // 2, 0, 0))
        _zero_(self.temporal)

    def forward(self, x: Tensor) -> Tensor:
        s = self.spatial(x)
        return s + self.temporal(s)

    def zero_output_(self) -> None:
        """Zero the spatial conv (the temporal branch then sees and adds zeros)."""
        _zero_(self.spatial.conv)


class P3DConvB(nn.Module):
    """P3D-B (parallel): y = S(x) + T(x), spatial and temporal branches on the input; T zero-initialised.

    Parameters: C_in C_out k^2 + C_in C_out k_t (+ 2 C_out biases)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, temporal_kernel_size: int = 3):
        super().__init__()
        self.spatial = SpatialConv(in_channels, out_channels, kernel_size)
        self.temporal = nn.Conv3d(in_channels, out_channels, (temporal_kernel_size, 1, 1),
                                  padding=(temporal_kernel_size // 2, 0, 0))
        _zero_(self.temporal)

    def forward(self, x: Tensor) -> Tensor:
        return self.spatial(x) + self.temporal(x)

    def zero_output_(self) -> None:
        """Zero the spatial branch (the temporal branch already starts at zero)."""
        _zero_(self.spatial.conv)


class P3DConvC(nn.Module):
    """P3D-C (bottleneck): 1x1x1 reduce to M, then S + T(S) at width M, then 1x1x1 expand to C_out.

    Parameters: C_in M + M^2 k^2 + M^2 k_t + M C_out (+ 3 M + C_out biases), M = max(1, C_out // 4)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, temporal_kernel_size: int = 3,
                 bottleneck: int | None = None):
        super().__init__()
        width = bottleneck or max(1, out_channels // 4)
        self.reduce = nn.Conv3d(in_channels, width, 1)
        self.mix = P3DConvA(width, width, kernel_size, temporal_kernel_size)
        self.expand = nn.Conv3d(width, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.expand(self.mix(self.reduce(x)))

    def zero_output_(self) -> None:
        """Zero the expanding 1x1x1 conv."""
        _zero_(self.expand)


class DepthwiseSeparableConv3d(nn.Module):
    """Depthwise (k_t, k, k) conv per channel, then a pointwise 1x1x1 conv (chapter 11.2.6).

    Parameters: k_t k^2 C_in + C_in C_out (+ C_in + C_out biases); the depthwise kernel starts on the centre frame."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, temporal_kernel_size: int = 3):
        super().__init__()
        self.depthwise = nn.Conv3d(in_channels, in_channels, (temporal_kernel_size, kernel_size, kernel_size),
                                   padding=(temporal_kernel_size // 2, kernel_size // 2, kernel_size // 2),
                                   groups=in_channels)
        with torch.no_grad():
            centre = self.depthwise.weight[:, :, temporal_kernel_size // 2].clone()
            self.depthwise.weight.zero_()
            self.depthwise.weight[:, :, temporal_kernel_size // 2] = centre
        self.pointwise = nn.Conv3d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))

    def zero_output_(self) -> None:
        """Zero the pointwise conv."""
        _zero_(self.pointwise)


CONVS: dict[str, type[nn.Module]] = {
    "factorized": FactorizedConv3d,
    "full3d": FullConv3d,
    "p3d_a": P3DConvA,
    "p3d_b": P3DConvB,
    "p3d_c": P3DConvC,
    "depthwise3d": DepthwiseSeparableConv3d,
}


def video_conv(kind: str, in_channels: int, out_channels: int, kernel_size: int = 3,
               temporal_kernel_size: int = 3) -> nn.Module:
    """Build the video convolution `kind` (one of CONV_KINDS)."""
    if kind not in CONVS:
        raise KinemaError(f"unknown convolution '{kind}' (choose from {', '.join(CONV_KINDS)})")
    return CONVS[kind](in_channels, out_channels, kernel_size, temporal_kernel_size)
