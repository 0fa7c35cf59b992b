"""Time grids for sampling: `steps + 1` float64 times from 1 (noise) down to 0 (clean).

The grid is a choice separate from the sampler (k-diffusion style):
  "uniform"  t evenly spaced in [0, 1]
  "trailing" the training steps spaced from the noisy end, as diffusers' `timestep_spacing="trailing"`
             (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed", Table 2)
  "karras"   noise levels rho-spaced (Karras et al. 2022, eq. 5); the level is
             `NoiseSchedule.noise_level`: sigma / alpha, or t' for flow
  "shifted"  uniform t moved toward noise by t -> shift t / (1 + (shift - 1) t) (Esser et al. 2024, sec. 5.3.2)
"""

import torch
from torch import Tensor

from kinema.diffusion.schedules import TRAINING_STEPS, NoiseSchedule
from kinema.errors import KinemaError

TIME_GRIDS = ("uniform", "trailing", "karras", "shifted")
BISECTION_ROUNDS = 64  # halvings of [0, 1]: below float64 resolution


def _time_of_level(schedule: NoiseSchedule, levels: Tensor) -> Tensor:
    """Times t with noise_level(t) = levels, by bisection (it increases in t; the upper bracket is returned)."""
    low, high = torch.zeros_like(levels), torch.ones_like(levels)
    for _ in range(BISECTION_ROUNDS):
        middle = (low + high) / 2
        below = schedule.noise_level(middle) < levels
        low, high = torch.where(below, middle, low), torch.where(below, high, middle)
    return high


def karras_times(schedule: NoiseSchedule, steps: int, rho: float = 7.0, sigma_min: float | None = None,
                 sigma_max: float | None = None) -> Tensor:
    """`steps` times whose noise levels are rho-spaced from sigma_max to sigma_min (Karras et al. 2022, eq. 5), then 0.

    Defaults: sigma_max = l(1), sigma_min = l(1 / TRAINING_STEPS), the smallest noise of a training grid."""
    ends = schedule.noise_level(torch.tensor([1.0, 1.0 / TRAINING_STEPS], dtype=torch.float64))
    sigma_max = ends[0].item() if sigma_max is None else sigma_max
    sigma_min = ends[1].item() if sigma_min is None else sigma_min
    lowest = schedule.noise_level(torch.zeros(1, dtype=torch.float64)).item()
    if not rho > 0:
        raise KinemaError(f"karras time grid: rho must be > 0, got {rho}")
    if not lowest < sigma_min < sigma_max <= ends[0].item():
        raise KinemaError(f"karras time grid: need {lowest:.4g} < sigma_min < sigma_max <= {ends[0].item():.4g} "
                          f"(the schedule's levels at t = 0 and 1), got sigma_min={sigma_min}, sigma_max={sigma_max}")
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    levels = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    levels[0] = sigma_max  # exactly: the grid starts where the schedule ends, t = 1 by default
    return torch.cat([_time_of_level(schedule, levels), torch.zeros(1, dtype=torch.float64)])


def trailing_times(steps: int) -> Tensor:
    """Training steps round(N - i N / steps) - 1 over N = TRAINING_STEPS, as times step / (N - 1), then 0."""
    if steps > TRAINING_STEPS:
        raise KinemaError(f"trailing time grid: at most {TRAINING_STEPS} steps (the training grid), got {steps}")
    training_steps = torch.round(torch.arange(TRAINING_STEPS, 0, -TRAINING_STEPS / steps, dtype=torch.float64)) - 1
    return torch.cat([training_steps / (TRAINING_STEPS - 1), torch.zeros(1, dtype=torch.float64)])


def shifted_times(steps: int, shift: float = 3.0) -> Tensor:
    """Uniform times u mapped to shift u / (1 + (shift - 1) u) (SD3 timestep shift, Esser et al. 2024)."""
    if not shift > 0:
        raise KinemaError(f"shifted time grid: shift must be > 0, got {shift}")
    uniform = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return shift * uniform / (1 + (shift - 1) * uniform)


def time_grid(schedule: NoiseSchedule, steps: int, spacing: str = "uniform", *, shift: float = 3.0,
              rho: float = 7.0, sigma_min: float | None = None, sigma_max: float | None = None) -> Tensor:
    """`steps + 1` decreasing float64 times from 1 to 0 spaced by `spacing` (one of TIME_GRIDS; see module doc)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise KinemaError(f"sampling steps must be a whole number >= 1, got {steps!r}")
    if spacing == "uniform":
        return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    if spacing == "trailing":
        return trailing_times(steps)
    if spacing == "karras":
        return karras_times(schedule, steps, rho, sigma_min, sigma_max)
    if spacing == "shifted":
        return shifted_times(steps, shift)
    raise KinemaError(f"unknown time grid {spacing!r}; choose one of {', '.join(TIME_GRIDS)}")
