"""Samplers: stateless functions from noise x_1 to a clean sample over a time grid, all with one signature.

    sampler(denoise_fn, x, times, schedule, *, generator=None, callback=None, **options) -> Tensor

`times` is a 1-D grid of `steps + 1` decreasing times from (at most) 1 to exactly 0, e.g. from
`time_grids.time_grid(schedule, steps, "karras")`: the grid is a choice separate from the sampler
(k-diffusion style). `denoise_fn(x_t, t) -> x0_hat` returns the clean estimate (wrap a network with
`parameterization.x0_denoiser`); t is a `[B]` tensor holding one time for the whole batch.
`x` is the sample at times[0], used as is: for the flow schedule x_1 = eps exactly; for the VP
schedules alpha(1) < 1e-2 and sigma(1) ~ 1, so the missing alpha(1) x0 term is below the
noise, as in DDPM. The step that reaches t = 0 returns x0_hat from the last nonzero time, so the
result is clean. `callback(i, steps, x, x0_hat)` runs after every step.

Euler and Heun integrate the probability-flow ODE in its flow-matching form: z = x / (alpha + sigma)
= (1 - k) x0 + k eps with k = sigma / (alpha + sigma) in [0, 1], a straight line in k for one data
point (rectified flow, Liu et al. 2022). For the flow schedule z = x and k = t', which is how
diffusers' FlowMatchEuler/Heun schedulers step; k stays bounded where sigma / alpha does not
(alpha(1) ~ 0, e.g. cosine), so a first step from pure noise is as accurate as any other.

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


def _flow_form(schedule: NoiseSchedule, t: float) -> tuple[float, float]:
    """(c, k) = (alpha + sigma, sigma / (alpha + sigma)) at time t: x_t / c = (1 - k) x0 + k eps."""
    alpha, sigma, _ = _levels(schedule, t)
    return alpha + sigma, sigma / (alpha + sigma)


def _steps(times: Tensor) -> list[tuple[int, float, float]]:
    """(i, t, s) for each step t -> s of a valid time grid (else a KinemaError naming what is wrong)."""
    if not isinstance(times, Tensor) or times.ndim != 1 or len(times) < 2:
        shape = tuple(times.shape) if isinstance(times, Tensor) else type(times).__name__
        raise KinemaError(f"sampling times must be a 1-D tensor of steps + 1 >= 2 times, got {shape}")
    grid = times.detach().double().cpu()
    if not (torch.isfinite(grid).all() and grid[0] <= 1 and grid[-1] == 0 and (grid[1:] < grid[:-1]).all()):
        shown = ", ".join(f"{v:.4g}" for v in grid[:6].tolist()) + (", ..." if len(grid) > 6 else "")
        raise KinemaError(f"sampling times must decrease strictly from <= 1 to exactly 0, got [{shown}] "
                          f"ending at {grid[-1].item():.4g}")
    values = grid.tolist()
    return [(i, t, s) for i, (t, s) in enumerate(zip(values[:-1], values[1:]))]


def _flow_velocity(x: Tensor, x0: Tensor, scale: float, k: float) -> Tensor:
    """dz/dk = eps_hat - x0_hat = (x / c - x0_hat) / k, the probability-flow ODE's slope in flow form."""
    return (x / scale - x0) / k


def _flow_step(x: Tensor, velocity: Tensor, flow_t: tuple[float, float], flow_s: tuple[float, float]) -> Tensor:
    """x_s = c_s (z_t + (k_s - k_t) velocity): one step of the flow-form ODE from (c_t, k_t) to (c_s, k_s)."""
    (scale_t, k_t), (scale_s, k_s) = flow_t, flow_s
    return scale_s * (x / scale_t + (k_s - k_t) * velocity)


def sample_ddpm(
    denoise_fn: DenoiseFn,
    x: Tensor,
    times: Tensor,
    schedule: NoiseSchedule,
    *,
    generator: torch.Generator | None = None,
    callback: Callback = None,
) -> Tensor:
    """Ancestral sampling from the posterior q(x_s | x_t, x0_hat) (Ho et al. 2020, eqs. 6-7)."""
    for i, t, s in _steps(times):
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
            callback(i, len(times) - 1, x, x0)
    return x


def sample_ddim(
    denoise_fn: DenoiseFn,
    x: Tensor,
    times: Tensor,
    schedule: NoiseSchedule,
    *,
    generator: torch.Generator | None = None,
    callback: Callback = None,
    eta: float = 0.0,
) -> Tensor:
    """DDIM (Song et al. 2021, eq. 12); `eta` = 0 is deterministic, `eta` = 1 matches DDPM's posterior."""
    for i, t, s in _steps(times):
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
            callback(i, len(times) - 1, x, x0)
    return x


def sample_dpmpp_2m(
    denoise_fn: DenoiseFn,
    x: Tensor,
    times: Tensor,
    schedule: NoiseSchedule,
    *,
    generator: torch.Generator | None = None,
    callback: Callback = None,
) -> Tensor:
    """DPM-Solver++(2M): second-order multistep data prediction in lambda (Lu et al. 2022, Alg. 2)."""
    previous_x0, previous_h = None, None
    for i, t, s in _steps(times):
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
            callback(i, len(times) - 1, x, x0)
    return x


def sample_euler(
    denoise_fn: DenoiseFn,
    x: Tensor,
    times: Tensor,
    schedule: NoiseSchedule,
    *,
    generator: torch.Generator | None = None,
    callback: Callback = None,
) -> Tensor:
    """Euler on the probability-flow ODE in flow form (Karras et al. 2022, Alg. 1 minus the correction).

    The flow form is straight for one data point, so this step equals DDIM with eta = 0."""
    for i, t, s in _steps(times):
        x0 = _denoise(denoise_fn, x, t)
        if s == 0:
            x = x0
        else:
            flow_t, flow_s = _flow_form(schedule, t), _flow_form(schedule, s)
            x = _flow_step(x, _flow_velocity(x, x0, *flow_t), flow_t, flow_s)
        if callback is not None:
            callback(i, len(times) - 1, x, x0)
    return x


def sample_heun(
    denoise_fn: DenoiseFn,
    x: Tensor,
    times: Tensor,
    schedule: NoiseSchedule,
    *,
    generator: torch.Generator | None = None,
    callback: Callback = None,
) -> Tensor:
    """Heun's 2nd-order method on the probability-flow ODE in flow form (Karras et al. 2022, Alg. 1).

    Two network calls per step; the last step (to t = 0) is Euler, as in the paper."""
    for i, t, s in _steps(times):
        x0 = _denoise(denoise_fn, x, t)
        if s == 0:
            x = x0
        else:
            flow_t, flow_s = _flow_form(schedule, t), _flow_form(schedule, s)
            velocity = _flow_velocity(x, x0, *flow_t)
            x_euler = _flow_step(x, velocity, flow_t, flow_s)
            velocity_s = _flow_velocity(x_euler, _denoise(denoise_fn, x_euler, s), *flow_s)
            x = _flow_step(x, 0.5 * (velocity + velocity_s), flow_t, flow_s)
        if callback is not None:
            callback(i, len(times) - 1, x, x0)
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
