"""A denoiser's latent space (chapter 11.4; latent diffusion, Rombach et al. 2022): videos <-> normalised latents of
a causal autoencoder, and the shapes and known-pixel masks that go with them.

Pixel frame 0 is latent frame 0; latent frame j >= 1 holds pixel frames k(j-1)+1 .. kj, and latent pixel (y, x) the
s x s block of pixels it was encoded from. A latent element counts as known only when every pixel it holds is known,
so what the denoiser keeps is what the user gave; the given pixels themselves are put back after decoding. What is
said of pixel frames (a phrase's share of each frame) holds for a latent frame as the mean over the frames it holds;
what is measured on pixels (guidance energies) is measured on the decoded video, its gradient taken back through the
decoder.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from kinema.autoencoder.causal_vae import CausalVideoVAE
from kinema.autoencoder.directory import LatentNormalization, load_autoencoder
from kinema.diffusion.loss import draw
from kinema.errors import KinemaError


class LatentSpace:
    """Encode videos to the denoiser's latents `(z - shift) * scale` and decode them back."""

    def __init__(self, vae: CausalVideoVAE, normalization: LatentNormalization | None = None):
        self.vae = vae.eval().requires_grad_(False)
        self.normalization = normalization or LatentNormalization()

    @classmethod
    def load(cls, path: str | Path) -> LatentSpace:
        """The latent space of the autoencoder directory `path` (EMA weights when present)."""
        vae, normalization, _ = load_autoencoder(path)
        return cls(vae, normalization)

    def to(self, device: torch.device | str) -> LatentSpace:
        self.vae.to(device)
        return self

    @property
    def channels(self) -> int:
        return self.vae.latent_channels

    def latent_size(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(frames, height, width) of the latents of videos of this size; a size the autoencoder cannot encode is a
        one-line error naming the rule."""
        k, s = self.vae.temporal_factor, self.vae.spatial_factor
        if frames < 1 or (frames - 1) % k:
            raise KinemaError(f"a latent model makes 1 + {k}*n frames (its autoencoder turns every {k} frames after the "
                              f"first into one latent frame), got {frames}")
        if height % s or width % s:
            raise KinemaError(f"a latent model makes frames whose sides are divisible by {s}, got {height}x{width}")
        return 1 + (frames - 1) // k, height // s, width // s

    def frames_holding(self, frames: int) -> int:
        """The fewest frames 1 + k*n, at least `frames`, that the autoencoder encodes."""
        k = self.vae.temporal_factor
        return 1 + -(-max(frames - 1, 0) // k) * k

    def pixel_size(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(frames, height, width) of the videos that latents of this size decode to."""
        k, s = self.vae.temporal_factor, self.vae.spatial_factor
        return 1 + (frames - 1) * k, height * s, width * s

    def encode(self, video: Tensor, generators: list[torch.Generator] | None = None) -> Tensor:
        """Normalised latents of `video` [B, C, 1 + k*n, H, W]: a posterior sample drawn with one generator per
        video, or without `generators` the posterior mean."""
        with torch.no_grad():
            posterior = self.vae.encode(video.to(next(self.vae.parameters()).dtype))
        z = posterior.mode()
        if generators is not None:
            z = z + posterior.std * draw(torch.randn, z.shape, generators, device=z.device, dtype=z.dtype)
        return self.normalization.normalize(z)

    def decode(self, latents: Tensor) -> Tensor:
        """Videos in [-1, 1] from normalised latents."""
        with torch.no_grad():
            return self.vae.decode(self.normalization.denormalize(latents)).clamp(-1, 1)

    def decode_differentiable(self, latents: Tensor) -> Tensor:
        """The decoded videos, unclamped, with the graph back to `latents` kept: for energies measured on pixels."""
        return self.vae.decode(self.normalization.denormalize(latents))

    def frame_shares(self, shares: Tensor) -> Tensor:
        """Per latent frame [..., t], the mean of per-pixel-frame values [..., 1 + k*n] over the frames each holds."""
        self.latent_size(shares.shape[-1], self.vae.spatial_factor, self.vae.spatial_factor)
        rest = shares[..., 1:].unflatten(-1, (-1, self.vae.temporal_factor)).mean(-1)
        return torch.cat([shares[..., :1], rest], dim=-1)

    def latent_mask(self, mask: Tensor) -> Tensor:
        """[B, 1, t, h, w] bool: the latent elements whose every pixel is True in `mask` [B, 1, 1 + k*n, H, W]."""
        k, s = self.vae.temporal_factor, self.vae.spatial_factor
        self.latent_size(*mask.shape[2:])
        first, rest = mask[:, :, :1], mask[:, :, 1:]
        unknown = (~torch.cat([first.repeat_interleave(k, dim=2), rest], dim=2)).float()
        return F.max_pool3d(unknown, (k, s, s)) == 0
