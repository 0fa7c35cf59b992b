"""Noise schedules in continuous time: x_t = alpha(t) x0 + sigma(t) eps, t in [0, 1].

t = 1 is (near) pure noise, t = 0 is clean. Implements the variance-preserving DDPM
schedules "linear" (Ho et al. 2020) and "cosine" (Nichol & Dhariwal 2021), the
rectified-flow schedule "flow" (Liu et al. 2022; Lipman et al. 2022), and the
resolution shift of simple diffusion (Hoogeboom et al. 2023) / SD3 (Esser et al. 2024).

Noise levels t are `[B]` (one per sample) or `[B, T]` (one per frame, as in diffusion
forcing); `broadcast_levels` lines them up against a video `[B, C, T, H, W]`.
"""

import math

import torch
from einops import rearrange
from torch import Tensor

from kinema.errors import KinemaError

TRAINING_STEPS = 1000  # discrete DDPM steps the VP schedules are defined on


def broadcast_levels(values: Tensor, x: Tensor) -> Tensor:
    """Reshape per-sample `[B]` or per-frame `[B, T]` values to broadcast against `x` `[B, C, T, H, W]`."""
    if x.ndim != 5:
        raise KinemaError(f"expected a video batch [B, C, T, H, W], got shape {tuple(x.shape)}")
    batch, _, frames = x.shape[:3]
    if values.ndim == 1 and values.shape[0] == batch:
        return rearrange(values, "b -> b 1 1 1 1")
    if values.ndim == 2 and tuple(values.shape) == (batch, frames):
        return rearrange(values, "b t -> b 1 t 1 1")
    raise KinemaError(
        f"noise levels of shape {tuple(values.shape)} do not fit video {tuple(x.shape)}: "
        f"expected [B]=[{batch}] or [B, T]=[{batch}, {frames}]"
    )


def _working_dtype(t: Tensor) -> torch.dtype:
    """At least float32, float64 when t is float64."""
    return torch.promote_types(t.dtype, torch.float32)


class NoiseSchedule:
    """A continuous-time noise schedule: alpha(t), sigma(t) and log-SNR for t in [0, 1]."""

    name: str = "base"

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Signal and noise scales (alpha, sigma) at times t (any shape)."""
        raise NotImplementedError

    def log_snr(self, t: Tensor) -> Tensor:
        """log(alpha^2 / sigma^2) at times t; +inf where sigma = 0, -inf where alpha = 0."""
        alpha, sigma = self.alpha_sigma(t)
        return 2.0 * (torch.log(alpha) - torch.log(sigma))

    def alpha_sigma_like(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """(alpha, sigma) of t `[B]` or `[B, T]`, broadcast against `x` `[B, C, T, H, W]` in x's dtype."""
        alpha, sigma = self.alpha_sigma(t)
        return broadcast_levels(alpha, x).to(x.dtype), broadcast_levels(sigma, x).to(x.dtype)

    def noise_level(self, t: Tensor) -> Tensor:
        """sigma / alpha, the noise level of Karras et al. 2022 (sec. 2) that the "karras" time grid spaces."""
        alpha, sigma = self.alpha_sigma(t)
        return sigma / alpha

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _linear_betas(steps: int) -> Tensor:
    """DDPM linear betas 1e-4 .. 0.02 (Ho et al. 2020, sec. 4)."""
    return torch.linspace(1e-4, 0.02, steps, dtype=torch.float64)


def _cosine_betas(steps: int, max_beta: float = 0.999, offset: float = 0.008) -> Tensor:
    """Improved-DDPM cosine betas (Nichol & Dhariwal 2021, eq. 17), clipped at max_beta."""
    edges = torch.arange(steps + 1, dtype=torch.float64) / steps
    alpha_bar = torch.cos((edges + offset) / (1 + offset) * math.pi / 2) ** 2
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


class VPSchedule(NoiseSchedule):
    """Variance-preserving schedule from discrete DDPM betas; t interpolates log alpha_bar over the steps."""

    def __init__(self, name: str, betas: Tensor, shift: float = 1.0):
        self.name = name
        self.shift = shift
        self.alphas_cumprod = torch.cumprod(1 - betas, dim=0)  # float64, [steps]
        self._log_alphas_cumprod = torch.log(self.alphas_cumprod)

    def _log_alpha_bar(self, t: Tensor) -> Tensor:
        """Piecewise-linear log alpha_bar: t = 0 -> step 0, t = 1 -> last step."""
        table = self._log_alphas_cumprod.to(device=t.device, dtype=_working_dtype(t))
        position = t.to(table.dtype).clamp(0, 1) * (len(table) - 1)
        low = position.floor().clamp(max=len(table) - 2)
        frac = position - low
        low = low.long()
        return torch.lerp(table[low], table[low + 1], frac)

    def log_snr(self, t: Tensor) -> Tensor:
        """log(alpha_bar / (1 - alpha_bar)) - 2 log(shift)  (simple diffusion, Hoogeboom et al. 2023, sec. 3.1)."""
        log_alpha_bar = self._log_alpha_bar(t)
        return log_alpha_bar - torch.log(-torch.expm1(log_alpha_bar)) - 2 * math.log(self.shift)

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """alpha = sqrt(sigmoid(log_snr)), sigma = sqrt(sigmoid(-log_snr)); alpha^2 + sigma^2 = 1."""
        log_snr = self.log_snr(t)
        return torch.sigmoid(log_snr).sqrt(), torch.sigmoid(-log_snr).sqrt()


class FlowSchedule(NoiseSchedule):
    """Rectified flow / flow matching: alpha = 1 - t', sigma = t', t' = shift t / (1 + (shift - 1) t) (SD3)."""

    name = "flow"

    def __init__(self, shift: float = 1.0):
        self.shift = shift

    def shifted_time(self, t: Tensor) -> Tensor:
        """Resolution-shifted time t' (Esser et al. 2024, sec. 5.3.2); identity for shift = 1."""
        t = t.to(_working_dtype(t))
        return self.shift * t / (1 + (self.shift - 1) * t)

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(1 - t', t')."""
        shifted = self.shifted_time(t)
        return 1 - shifted, shifted

    def log_snr(self, t: Tensor) -> Tensor:
        """2 log((1 - t') / t')."""
        shifted = self.shifted_time(t)
        return 2 * (torch.log1p(-shifted) - torch.log(shifted))

    def noise_level(self, t: Tensor) -> Tensor:
        """t' = sigma: bounded at t = 1, where sigma / alpha is not (as diffusers' flow-matching Karras sigmas)."""
        return self.shifted_time(t)


SCHEDULES = ("linear", "cosine", "flow")


def build_schedule(name: str, shift: float = 1.0) -> NoiseSchedule:
    """Build a schedule by name ("linear", "cosine", "flow"); `shift` > 1 moves mass to higher noise."""
    if not shift > 0:
        raise KinemaError(f"schedule shift must be > 0, got {shift}")
    if name == "linear":
        return VPSchedule("linear", _linear_betas(TRAINING_STEPS), shift)
    if name == "cosine":
        return VPSchedule("cosine", _cosine_betas(TRAINING_STEPS), shift)
    if name == "flow":
        return FlowSchedule(shift)
    raise KinemaError(f"unknown noise schedule {name!r}; choose one of {', '.join(SCHEDULES)}")
