"""Frame-level quality against reference videos: PSNR, SSIM, LPIPS and LPIPS-T (chapter 11.1.4).

PSNR and SSIM come from torchmetrics on each frame (data range 2 for [-1, 1]) and are averaged over
a clip's frames ("the temporal extension of the image metrics"). A frame's PSNR is capped at
PSNR_CAP_DB = 100 dB (MSE 4e-10; 8-bit rounding alone gives about 59 dB), so identical frames, such
as the given first frame of image-to-video, count as 100 dB instead of an infinity. LPIPS needs
torchvision and the LPIPS network weights (torchmetrics ships the linear heads, torchvision fetches
the backbone once); `load_lpips` returns None with the reason when they are not available, and the
report then says "unavailable" instead of a number. LPIPS-T = 1/(T-1) sum_t LPIPS(x_t, x_(t+1)).
"""

from __future__ import annotations

from typing import Callable

import torch
from einops import rearrange
from torch import Tensor
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from kinema.errors import KinemaError

PSNR_CAP_DB = 100.0
Lpips = Callable[[Tensor, Tensor], Tensor]  # frames [N, 3, H, W] in [-1, 1] twice -> distances [N]


def _pair(fake: Tensor, real: Tensor) -> tuple[Tensor, Tensor]:
    """Check two video batches [B, C, T, H, W] of one shape; return them as frames [(B T), C, H, W]."""
    if fake.ndim != 5 or fake.shape != real.shape:
        raise KinemaError(f"frame metrics need fake and reference videos [B, C, T, H, W] of one shape, got "
                          f"{tuple(fake.shape)} and {tuple(real.shape)}")
    return (rearrange(v.float().clamp(-1, 1), "b c t h w -> (b t) c h w") for v in (fake, real))


def psnr(fake: Tensor, real: Tensor) -> Tensor:
    """Frame-averaged PSNR in dB per clip [B], each frame's capped at PSNR_CAP_DB (identical frames)."""
    x, y = _pair(fake, real)
    per_frame = peak_signal_noise_ratio(x, y, data_range=2.0, reduction="none", dim=(1, 2, 3)).clamp(max=PSNR_CAP_DB)
    return rearrange(per_frame, "(b t) -> b t", b=len(fake)).mean(dim=1).double()


def ssim(fake: Tensor, real: Tensor) -> Tensor:
    """Frame-averaged SSIM per clip [B] (Gaussian window 11, or the largest odd size the frames allow)."""
    x, y = _pair(fake, real)
    kernel = min(11, (min(x.shape[-2:]) - 1) | 1)
    if kernel < 3:
        raise KinemaError(f"SSIM needs frames of at least 4x4 pixels, got {tuple(x.shape[-2:])}")
    per_frame = structural_similarity_index_measure(x, y, data_range=2.0, kernel_size=kernel, reduction="none")
    return rearrange(per_frame, "(b t) -> b t", b=len(fake)).mean(dim=1).double()


def lpips_distance(network: torch.nn.Module, batch_size: int = 64) -> Lpips:
    """LPIPS (Zhang et al. 2018) per frame pair [N] from a torchmetrics LPIPS network, frames in [-1, 1]."""

    @torch.no_grad()
    def distance(x: Tensor, y: Tensor) -> Tensor:
        pairs = zip(x.float().clamp(-1, 1).split(batch_size), y.float().clamp(-1, 1).split(batch_size))
        return torch.cat([network(a, b).flatten() for a, b in pairs])

    return distance


def load_lpips(net: str = "alex") -> tuple[Lpips | None, str]:
    """The LPIPS distance (torchmetrics) if torchvision and its weights are available, else (None, why not)."""
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    try:
        network = LearnedPerceptualImagePatchSimilarity(net_type=net).net
    except (ImportError, OSError) as error:  # no torchvision, or backbone weights not on disk and not downloadable
        return None, str(error).splitlines()[0]
    return lpips_distance(network), ""


def lpips(fake: Tensor, real: Tensor, distance: Lpips) -> Tensor:
    """Frame-averaged LPIPS per clip [B] with a loaded LPIPS `distance`."""
    x, y = _pair(fake, real)
    return rearrange(distance(x, y), "(b t) -> b t", b=len(fake)).mean(dim=1).double()


def lpips_t(videos: Tensor, distance: Lpips) -> Tensor:
    """LPIPS-T per clip [B]: mean LPIPS between consecutive frames."""
    if videos.ndim != 5 or videos.shape[2] < 2:
        raise KinemaError(f"LPIPS-T needs videos [B, C, T >= 2, H, W], got shape {tuple(videos.shape)}")
    x = rearrange(videos[:, :, :-1], "b c t h w -> (b t) c h w")
    y = rearrange(videos[:, :, 1:], "b c t h w -> (b t) c h w")
    return rearrange(distance(x, y), "(b t) -> b t", b=len(videos)).mean(dim=1).double()
