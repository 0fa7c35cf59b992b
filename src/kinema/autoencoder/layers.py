"""Causal building blocks of the video autoencoder, each able to run a video in chunks (chapter 11.4).

Time is causal everywhere: a layer's output at frame t reads inputs at frames <= t only. A temporal
convolution with kernel k_t pads k_t - 1 copies of the first frame in front (replicate-first-frame, as in
CogVideoX and LTX-Video: the first frame is seen as a still image held before the clip); nothing is padded
behind. Normalisation is per frame (GroupNorm over channels x H x W of one frame), so that no statistic
mixes frames. For chunked runs every layer that looks back keeps, in a `StreamState`, what the next chunk
needs: a convolution its last input frames not yet fully used (k_t - stride of them), a temporal
upsampler whether it has seen the first frame. Chunked output then equals the one-shot output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class StreamState:
    """Boundary features of one chunked stream, kept per layer between chunks (empty at the stream's start)."""

    def __init__(self) -> None:
        self._values: dict[int, object] = {}

    def get(self, layer: nn.Module) -> object | None:
        """What `layer` stored after the previous chunk, or None on the first chunk."""
        return self._values.get(id(layer))

    def put(self, layer: nn.Module, value: object) -> None:
        """Store what `layer` needs for the next chunk."""
        self._values[id(layer)] = value


class CausalConv3d(nn.Module):
    """A 3D convolution that pads time only at the front (replicate-first-frame) and space symmetrically (zeros);
    with a `StreamState` it continues from the previous chunk's last input frames."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int] = (3, 3),
                 stride: tuple[int, int] = (1, 1)):
        super().__init__()
        (self.time_kernel, space), self.time_stride = kernel_size, stride[0]  # (time, space) kernel and stride
        self.conv = nn.Conv3d(in_channels, out_channels, (self.time_kernel, space, space),
                              stride=(stride[0], stride[1], stride[1]), padding=(0, space // 2, space // 2))

    def forward(self, x: Tensor, state: StreamState | None = None) -> Tensor:
        past = state.get(self) if state is not None else None
        if past is None:  # the stream's first frame, held for k_t - 1 frames before it
            past = x[:, :, :1].expand(-1, -1, self.time_kernel - 1, -1, -1)
        x = torch.cat([past, x], dim=2)
        windows = max(0, (x.shape[2] - self.time_kernel) // self.time_stride + 1)
        if state is not None:  # frames from the next window's start on: the next chunk's past
            state.put(self, x[:, :, windows * self.time_stride:])
        return self.conv(x[:, :, : (windows - 1) * self.time_stride + self.time_kernel])


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over each frame on its own (no statistic crosses frames, so it stays causal)."""

    def forward(self, x: Tensor) -> Tensor:
        frames = rearrange(x, "b c t h w -> (b t) c h w")
        return rearrange(super().forward(frames), "(b t) c h w -> b c t h w", b=x.shape[0])


class CausalResBlock(nn.Module):
    """Pre-activation residual block (GroupNorm, SiLU, causal 3x3x3 conv, twice) with a 1x1x1 skip when the width
    changes (He et al. 2016; the LDM autoencoder's ResnetBlock, made causal)."""

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = FrameGroupNorm(groups, in_channels)
        self.conv1 = CausalConv3d(in_channels, out_channels)
        self.norm2 = FrameGroupNorm(groups, out_channels)
        self.conv2 = CausalConv3d(out_channels, out_channels)
        nn.init.zeros_(self.conv2.conv.weight)  # each block starts as its skip path (Goyal et al. 2017)
        nn.init.zeros_(self.conv2.conv.bias)
        self.skip = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, state: StreamState | None = None) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)), state)
        h = self.conv2(F.silu(self.norm2(h)), state)
        return self.skip(x) + h


class CausalDownsample(nn.Module):
    """Halve H and W (`spatial`) and/or time (`temporal`) with a strided causal conv: frame 0 stays alone and
    frames (2j - 1, 2j) become output frame j, so 1 + 2n frames -> 1 + n."""

    def __init__(self, in_channels: int, out_channels: int, temporal: bool, spatial: bool):
        super().__init__()
        self.conv = CausalConv3d(in_channels, out_channels, stride=(1 + temporal, 1 + spatial))

    def forward(self, x: Tensor, state: StreamState | None = None) -> Tensor:
        return self.conv(x, state)


class CausalUpsample(nn.Module):
    """Double time (`temporal`: a causal conv makes two frames from each, depth-to-time as in Wan's `Resample`;
    frame 0 keeps only its second, so 1 + n frames -> 1 + 2n) and/or H and W (`spatial`, nearest), then a causal
    conv: the mirror of `CausalDownsample`."""

    def __init__(self, in_channels: int, out_channels: int, temporal: bool, spatial: bool):
        super().__init__()
        self.spatial = spatial
        self.time_conv = CausalConv3d(in_channels, 2 * in_channels, (3, 1)) if temporal else None
        self.conv = CausalConv3d(in_channels, out_channels)

    def forward(self, x: Tensor, state: StreamState | None = None) -> Tensor:
        if self.time_conv is not None:
            first = state is None or state.get(self) is None
            x = rearrange(self.time_conv(x, state), "b (c two) t h w -> b c (t two) h w", two=2)
            x = x[:, :, 1:] if first else x
            if state is not None:
                state.put(self, True)
        if self.spatial:
            x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        return self.conv(x, state)
