"""Samplers: stateless functions from noise x_1 to a clean sample, all with one signature (k-diffusion style).

    sampler(denoise_fn, x, schedule, steps, *, generator=None, callback=None, **options) -> Tensor

`denoise_fn(x_t, t) -> x0_hat` returns the clean estimate (wrap a network with
`parameterization.x0_denoiser`); t is a `[B]` tensor holding one time for the whole batch.
`x` is x_1 ~ N(0, I), used as is: for the flow schedule x_1 = eps exactly; for the VP
schedules alpha(1) < 1e-2 and sigma(1) ~ 1, so the missing alpha(1) x0 term is below the
noise, as in DDPM. Times are `schedule.sampling_times(steps)` (1 -> 0); the step that
reaches t = 0 returns x0_hat from the last nonzero time, so the result is clean.
`callback(i, steps, x, x0_hat)` runs after every step.

Step formulas use lambda = log(alpha / sigma) and h = lambda_s - lambda_t for a step
t -> s; alpha(1) = 0 ("flow") gives lambda_t = -inf, h = inf, which every formula takes.
"""

import math
from collections.abc import Callable

import torch
from torch import Tensor

from kinema.diffusion.schedules import NoiseSchedule
from kinema.errors import KinemaError

DenoiseFn = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[int, int, Tensor, Tensor], None] | None


def _denoise(denoise_fn: DenoiseFn, x: Tensor, t: float) -> Tensor:
    """x0_hat at one time t for the whole batch (t at least float32, whatever x's precision)."""
    return denoise_fn(x, torch.full(x.shape[:1], t, dtype=torch.promote_types(x.dtype, torch.float32), device=x.device))


def _levels(schedule: NoiseSchedule, t: float) -> tuple[float, float, float]:
    """(alpha, sigma, lambda) at time t, as float64 Python numbers."""
    time = torch.tensor([t], dtype=torch.float64)
    alpha, sigma = schedule.alpha_sigma(time)
    return alpha.item(), sigma.item(), 0.5 * schedule.log_snr(time).item()


def _velocity(schedule: NoiseSchedule, x: Tensor, x0: Tensor, t: float) -> Tensor:
    """Probability-flow ODE drift dx/dt = alpha'(t) x0_hat + sigma'(t) eps_hat (Karras et al. 2022, eq. 4 recast)."""
    alpha, sigma, _ = _levels(schedule, t)
    d_alpha, d_sigma = (rate.item() for rate in schedule.alpha_sigma_rates(torch.tensor([t], dtype=torch.float64)))
    return d_alpha * x0 + d_sigma * (x - alpha * x0) / sigma


def _steps(schedule: NoiseSchedule, steps: int) -> list[tuple[int, float, float]]:
    """(i, t, s) for each step t -> s."""
    times = schedule.sampling_times(steps).tolist()
    return [(i, t, s) for i, (t, s) in enumerate(zip(times[:-1], times[1:]))]


def sample_ddpm(
    denoise_fn: DenoiseFn,
    x: Tensor,
    schedule: NoiseSchedule,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback: Callback = None,
) -> Tensor:
    """Ancestral sampling from the posterior q(x_s | x_t, x0_hat) (Ho et al. 2020, eqs. 6-7)."""
    for i, t, s in _steps(schedule, steps):
        x0 = _denoise(denoise_fn, x, t)
        if s == 0:
            x = x0
        else:
            _, sigma_t, lambda_t = _levels(schedule, t)
            alpha_s, sigma_s, lambda_s = _levels(schedule, s)
            keep = math.exp(-(lambda_s - lambda_t))      # alpha_t sigma_s / (alpha_s sigma_t)
            fresh = -math.expm1(-2 * (lambda_s - lambda_t))  # 1 - keep^2
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            # posterior mean  (sigma_s / sigma_t) keep x_t + alpha_s fresh x0,  variance  sigma_s^2 fresh
            x = (sigma_s / sigma_t * keep) * x + (alpha_s * fresh) * x0 + (sigma_s * math.sqrt(fresh)) * noise
        if callback is not None:
            callback(i, steps, x, x0)
    return x


def sample_ddim(
    denoise_fn: DenoiseFn,
    x: Tensor,
    schedule: NoiseSchedule,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback: Callback = None,
    eta: float = 0.0,
) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12); `eta` = 0 is deterministic, `eta` = 1 matches DDPM's posterior."""
    for i, t, s in _steps(schedule, steps):
        x0 = _denoise(denoise_fn, x, t)
        if s == 0:
            x = x0
        else:
            alpha_t, sigma_t, lambda_t = _levels(schedule, t)
            alpha_s, sigma_s, lambda_s = _levels(schedule, s)
            eps = (x - alpha_t * x0) / sigma_t
            spread = eta * sigma_s * math.sqrt(-math.expm1(-2 * (lambda_s - lambda_t)))
            x = alpha_s * x0 + math.sqrt(max(sigma_s**2 - spread**2, 0.0)) * eps
            if spread > 0:
                x = x + spread * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if callback is not None:
            callback(i, steps, x, x0)
    return x


def sample_dpmpp_2m(
    denoise_fn: DenoiseFn,
    x: Tensor,
    schedule: NoiseSchedule,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback: Callback = None,
) -> Tensor:
    """DPM-Solver++(2M): second-order multistep data prediction in lambda (Lu et al. 2022, Alg. 2)."""
    previous_x0, previous_h = None, None
    for i, t, s in _steps(schedule, steps):
        x0 = _denoise(denoise_fn, x, t)
        if s == 0:
            x = x0
        else:
            _, sigma_t, lambda_t = _levels(schedule, t)
            alpha_s, sigma_s, lambda_s = _levels(schedule, s)
            h = lambda_s - lambda_t
            data = x0
            if previous_x0 is not None:  # extrapolate x0 with r = h_prev / h; h_prev = inf (alpha = 0): first order
                half_inverse_r = 0.5 * h / previous_h
                data = (1 + half_inverse_r) * x0 - half_inverse_r * previous_x0
            x = (sigma_s / sigma_t) * x - (alpha_s * math.expm1(-h)) * data
            previous_x0, previous_h = x0, h
        if callback is not None:
            callback(i, steps, x, x0)
    return x


def sample_euler(
    denoise_fn: DenoiseFn,
    x: Tensor,
    schedule: NoiseSchedule,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback: Callback = None,
) -> Tensor:
    """Euler on the probability-flow ODE in t (Karras et al. 2022, Alg. 1 minus the correction; rectified flow)."""
    for i, t, s in _steps(schedule, steps):
        x0 = _denoise(denoise_fn, x, t)
        x = x0 if s == 0 else x + (s - t) * _velocity(schedule, x, x0, t)
        if callback is not None:
            callback(i, steps, x, x0)
    return x


def sample_heun(
    denoise_fn: DenoiseFn,
    x: Tensor,
    schedule: NoiseSchedule,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback: Callback = None,
) -> Tensor:
    """Heun's 2nd-order method on the probability-flow ODE in t (Karras et al. 2022, Alg. 1)."""
    for i, t, s in _steps(schedule, steps):
        x0 = _denoise(denoise_fn, x, t)
        if s == 0:
            x = x0
        else:
            # Euler step
            velocity = _velocity(schedule, x, x0, t)
            x_euler = x + (s - t) * velocity
            # 2nd order correction
            velocity_s = _velocity(schedule, x_euler, _denoise(denoise_fn, x_euler, s), s)
            x = x + (s - t) * 0.5 * (velocity + velocity_s)
        if callback is not None:
            callback(i, steps, x, x0)
    return x


SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "dpmpp_2m": sample_dpmpp_2m,
    "euler": sample_euler,
    "heun": sample_heun,
}


def get_sampler(name: str) -> Callable[..., Tensor]:
    """The sampler function called `name`."""
    if name not in SAMPLERS:
        raise KinemaError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]
