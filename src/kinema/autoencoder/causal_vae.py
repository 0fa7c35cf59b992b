"""Kinema's causal video autoencoder (chapter 11.4, video compression and latent space).

Video `[B, 3, 1 + k*n, H, W]` in [-1, 1] <-> latents `[B, z, 1 + n, H/s, W/s]`: the first frame is encoded on its
own, then every k frames become one latent frame (the CogVideoX / Wan layout), k in {1, 2, 4}, s in {4, 8}.
A compact design for CPUs at 32-64 px: a space-to-depth stem (`patch_size`, as LTX-Video) so that no
convolution runs at full resolution, then per level one causal residual block and one strided causal conv that
halves H, W and/or T; the decoder mirrors it (time: a causal conv makes two frames of each, frame 0 keeps one;
space: nearest) and ends in a depth-to-space head. Each residual block starts as its skip path. Every layer is
causal in time (see `layers.py`), so chunked encoding and decoding (`streaming.py`) equal the one-shot results.
The encoder gives a diagonal Gaussian posterior (Kingma & Welling 2014; the KL-regularised autoencoder of Rombach
et al. 2022).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from kinema.autoencoder.layers import CausalConv3d, CausalDownsample, CausalResBlock, CausalUpsample, \
    FrameGroupNorm, StreamState
from kinema.config import at_least
from kinema.errors import KinemaError

LOGVAR_RANGE = (-30.0, 20.0)  # the encoder's log-variance is clamped here (as in LDM) so exp() stays finite


@dataclass
class CausalVAEConfig:
    """Sizes of a `CausalVideoVAE`; widths per level are `channels * channel_mult[i]` (the last entry repeats)."""

    in_channels: int = at_least(1, 3)                       # channels of the video (3 for RGB)
    latent_channels: int = at_least(1, 4)                   # z: channels of the latent video
    channels: int = at_least(1, 16)                         # width of the first level
    channel_mult: tuple[int, ...] = at_least(1, (1, 2, 4))  # width multiplier per level (the last one repeats)
    spatial_downsample: int = 4                             # s: H and W shrink by s (4 or 8)
    temporal_downsample: int = 4                            # k: 1 + k*n frames -> 1 + n latent frames (1, 2 or 4)
    patch_size: int = 2                                     # space-to-depth stem (1, 2 or 4; divides s)
    norm_groups: int = at_least(1, 8)                       # GroupNorm groups (per frame)

    def __post_init__(self):
        for key, choices in (("spatial_downsample", (4, 8)), ("temporal_downsample", (1, 2, 4)),
                             ("patch_size", (1, 2, 4))):
            if getattr(self, key) not in choices:
                raise KinemaError(f"CausalVAEConfig.{key} must be one of {', '.join(map(str, choices))}, got "
                                  f"{getattr(self, key)!r}")
        if self.spatial_downsample % self.patch_size:
            raise KinemaError(f"CausalVAEConfig.patch_size ({self.patch_size}) must divide spatial_downsample "
                              f"({self.spatial_downsample})")
        if min(self.in_channels, self.latent_channels, self.channels, self.norm_groups, *self.channel_mult) < 1:
            raise KinemaError(f"CausalVAEConfig: channels, channel_mult and norm_groups must be at least 1, got "
                              f"{self.to_dict()}")
        if any(width % self.norm_groups for width in self.widths):
            raise KinemaError(f"CausalVAEConfig.norm_groups ({self.norm_groups}) must divide every level width "
                              f"(channels x channel_mult: {self.widths})")

    @property
    def levels(self) -> int:
        """Down (and up) steps: enough for the spatial factor beyond the stem and for the temporal factor."""
        return max(self.spatial_steps, self.temporal_steps, 1)

    @property
    def spatial_steps(self) -> int:
        return int(math.log2(self.spatial_downsample // self.patch_size))

    @property
    def temporal_steps(self) -> int:
        return int(math.log2(self.temporal_downsample))

    @property
    def widths(self) -> list[int]:
        """Width of each level 0..levels (the last is the bottleneck's)."""
        mult = list(self.channel_mult)
        return [self.channels * mult[min(i, len(mult) - 1)] for i in range(self.levels + 1)]

    def to_dict(self) -> dict:
        """Plain JSON values."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class DiagonalGaussian:
    """The posterior N(mean, diag(exp(logvar))) over latents `[B, z, t, h, w]` (Kingma & Welling 2014)."""

    def __init__(self, mean: Tensor, logvar: Tensor):
        self.mean, self.logvar = mean, logvar.clamp(*LOGVAR_RANGE)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """z = mean + std * eps, eps ~ N(0, I) from `generator` (the reparameterisation trick)."""
        device = generator.device if generator is not None else self.mean.device  # a CPU generator may drive CUDA
        noise = torch.randn(self.mean.shape, generator=generator, device=device, dtype=self.mean.dtype)
        return self.mean + self.std * noise.to(self.mean.device)

    def mode(self) -> Tensor:
        """The most likely latent: the mean."""
        return self.mean

    def kl(self) -> Tensor:
        """KL(q || N(0, I)) per sample `[B]`: 0.5 * sum(mean^2 + var - 1 - logvar) summed over all latent elements,
        not divided by anything (divide by the pixel count for a per-pixel weight)."""
        terms = self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar
        return 0.5 * terms.flatten(1).sum(dim=1)


class CausalEncoder(nn.Module):
    """Video `[B, C, 1 + k*n, H, W]` -> mean and log-variance `[B, 2z, 1 + n, H/s, W/s]`."""

    def __init__(self, config: CausalVAEConfig):
        super().__init__()
        p, widths = config.patch_size, config.widths
        self.patch_size = p
        self.conv_in = CausalConv3d(config.in_channels * p * p, widths[0])
        self.blocks = nn.ModuleList(CausalResBlock(widths[i], widths[i], config.norm_groups)
                                    for i in range(config.levels))
        self.downs = nn.ModuleList(CausalDownsample(widths[i], widths[i + 1], temporal=i < config.temporal_steps,
                                                    spatial=i < config.spatial_steps) for i in range(config.levels))
        self.mid = CausalResBlock(widths[-1], widths[-1], config.norm_groups)
        self.norm_out = FrameGroupNorm(config.norm_groups, widths[-1])
        self.conv_out = CausalConv3d(widths[-1], 2 * config.latent_channels)

    def forward(self, x: Tensor, state: StreamState | None = None) -> Tensor:
        p = self.patch_size
        h = self.conv_in(rearrange(x, "b c t (h p) (w q) -> b (c p q) t h w", p=p, q=p), state)
        for block, down in zip(self.blocks, self.downs):
            h = down(block(h, state), state)
        return self.conv_out(nn.functional.silu(self.norm_out(self.mid(h, state))), state)


class CausalDecoder(nn.Module):
    """Latents `[B, z, 1 + n, h, w]` -> video `[B, C, 1 + k*n, h*s, w*s]`, the encoder's mirror."""

    def __init__(self, config: CausalVAEConfig):
        super().__init__()
        p, widths = config.patch_size, config.widths
        self.patch_size = p
        self.conv_in = CausalConv3d(config.latent_channels, widths[-1])
        self.mid = CausalResBlock(widths[-1], widths[-1], config.norm_groups)
        levels = reversed(range(config.levels))
        self.ups = nn.ModuleList(CausalUpsample(widths[i + 1], widths[i], temporal=i < config.temporal_steps,
                                                spatial=i < config.spatial_steps) for i in levels)
        self.blocks = nn.ModuleList(CausalResBlock(widths[i], widths[i], config.norm_groups)
                                    for i in reversed(range(config.levels)))
        self.norm_out = FrameGroupNorm(config.norm_groups, widths[0])
        self.conv_out = CausalConv3d(widths[0], config.in_channels * p * p)

    def forward(self, z: Tensor, state: StreamState | None = None) -> Tensor:
        h = self.mid(self.conv_in(z, state), state)
        for up, block in zip(self.ups, self.blocks):
            h = block(up(h, state), state)
        h = self.conv_out(nn.functional.silu(self.norm_out(h)), state)
        p = self.patch_size
        return rearrange(h, "b (c p q) t h w -> b c t (h p) (w q)", p=p, q=p)


class CausalVideoVAE(nn.Module):
    """Causal video autoencoder: `encode` -> `DiagonalGaussian`, `decode` latents -> video, forward = both."""

    def __init__(self, config: CausalVAEConfig | None = None):
        super().__init__()
        self.config = config or CausalVAEConfig()
        self.encoder = CausalEncoder(self.config)
        self.decoder = CausalDecoder(self.config)

    @property
    def spatial_factor(self) -> int:
        return self.config.spatial_downsample

    @property
    def temporal_factor(self) -> int:
        return self.config.temporal_downsample

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    @property
    def last_layer_weight(self) -> Tensor:
        """The decoder's output conv weight (for the adaptive GAN loss weight of VQGAN, Esser et al. 2021)."""
        return self.decoder.conv_out.conv.weight

    def check_video(self, video: Tensor, chunk: bool = False) -> None:
        """One-line KinemaError unless `video` is `[B, C, 1 + k*n, H, W]` with H, W multiples of s (`chunk`: a
        later chunk of a stream, k*n frames)."""
        c, k, s = self.config.in_channels, self.temporal_factor, self.spatial_factor
        if video.ndim != 5 or video.shape[1] != c:
            raise KinemaError(f"the autoencoder needs videos [B, {c}, T, H, W], got shape {tuple(video.shape)}")
        frames = video.shape[2] - (0 if chunk else 1)
        if frames < 0 or frames % k:
            raise KinemaError(f"the autoencoder needs {'k*n' if chunk else '1 + k*n'} frames with k={k}, got "
                              f"{video.shape[2]} frames")
        if video.shape[3] % s or video.shape[4] % s:
            raise KinemaError(f"the autoencoder needs a height and width divisible by {s}, got "
                              f"{video.shape[3]}x{video.shape[4]}")

    def check_latents(self, z: Tensor) -> None:
        """One-line KinemaError unless `z` is `[B, latent_channels, t, h, w]`."""
        if z.ndim != 5 or z.shape[1] != self.latent_channels or z.shape[2] < 1:
            raise KinemaError(f"the autoencoder decodes latents [B, {self.latent_channels}, t, h, w], got shape "
                              f"{tuple(z.shape)}")

    def encode(self, video: Tensor, state: StreamState | None = None) -> DiagonalGaussian:
        """Posterior over the latents of `video` `[B, C, 1 + k*n, H, W]` (with `state`: the next chunk of a stream,
        1 + k*n frames first, then k*n)."""
        self.check_video(video, chunk=state is not None and state.get(self) is not None)
        if state is not None:
            state.put(self, True)
        mean, logvar = self.encoder(video, state).chunk(2, dim=1)
        return DiagonalGaussian(mean, logvar)

    def decode(self, z: Tensor, state: StreamState | None = None) -> Tensor:
        """Video `[B, C, 1 + k*n, H, W]` from latents `[B, z, 1 + n, h, w]` (with `state`: the next chunk; a
        later chunk of n latent frames gives k*n frames)."""
        self.check_latents(z)
        return self.decoder(z, state)

    def forward(self, video: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, DiagonalGaussian]:
        """(reconstruction, posterior): encode, sample with `generator`, decode."""
        posterior = self.encode(video)
        return self.decode(posterior.sample(generator)), posterior
