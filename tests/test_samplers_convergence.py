"""Deterministic samplers converge to the exact probability-flow ODE solution at their order.

For Gaussian data x0 ~ N(mu, diag(s^2)) the posterior mean E[x0 | x_t] is closed-form and the
probability-flow ODE maps x_1 to x_t = alpha_t mu + std_t z, std_t^2 = alpha_t^2 s^2 + sigma_t^2,
with z = (x_1 - alpha_1 mu) / std_1 fixed (each coordinate keeps its quantile). A sampler whose
update is wrong does not converge to this path; one of order p shrinks its error by ~2^p when the
steps double.
"""

import math

import pytest
import torch

from kinema.diffusion import build_schedule, get_sampler, time_grid

MU = torch.tensor([0.5, -0.3, 0.0, 1.0], dtype=torch.float64)
STD = torch.tensor([0.3, 0.1, 1.0, 0.05], dtype=torch.float64)
CHECK_TIME = 0.25  # on every uniform grid below; the ODE is integrated over [0.25, 1]
ORDER = {"ddim": 1, "euler": 1, "heun": 2, "dpmpp_2m": 2}


def _posterior_mean(schedule):
    """E[x0 | x_t] for data N(MU, diag(STD^2))."""

    def denoise_fn(x_t, t):
        alpha, sigma = (v.to(x_t.dtype)[:, None] for v in schedule.alpha_sigma(t))
        return MU + alpha * STD**2 / (alpha**2 * STD**2 + sigma**2) * (x_t - alpha * MU)

    return denoise_fn


def _exact(schedule, x1: torch.Tensor, t: float) -> torch.Tensor:
    """The probability-flow ODE solution at time t from x1 at time 1."""
    alpha, sigma = schedule.alpha_sigma(torch.tensor([1.0, t], dtype=torch.float64))
    std = torch.sqrt(alpha[:, None] ** 2 * STD**2 + sigma[:, None] ** 2)
    return alpha[1] * MU + std[1] * (x1 - alpha[0] * MU) / std[0]


def _error(sampler: str, schedule, x1: torch.Tensor, steps: int) -> float:
    """Largest deviation from the exact solution at CHECK_TIME after `steps` uniform steps."""
    times, seen = time_grid(schedule, steps), {}

    def keep(i, total, x, x0_hat):
        if math.isclose(times[i + 1].item(), CHECK_TIME):
            seen["x"] = x.clone()

    get_sampler(sampler)(_posterior_mean(schedule), x1, times, schedule, callback=keep)
    return (seen["x"] - _exact(schedule, x1, CHECK_TIME)).abs().max().item()


@pytest.mark.parametrize("name,shift", [("linear", 1.0), ("cosine", 1.0), ("flow", 1.0), ("flow", 3.0)])
@pytest.mark.parametrize("sampler", list(ORDER))
def test_deterministic_sampler_converges_to_the_exact_ode_solution_at_its_order(sampler, name, shift):
    schedule = build_schedule(name, shift)
    x1 = torch.randn(64, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errors = [_error(sampler, schedule, x1, steps) for steps in (16, 32, 64)]
    orders = [math.log2(coarse / fine) for coarse, fine in zip(errors, errors[1:])]
    assert min(orders) > ORDER[sampler] - 0.35, f"errors {errors}, observed orders {orders}"


def test_euler_is_ddim_with_eta_zero():
    """Euler in flow form and DDIM (eta = 0) are the same update, derived two ways."""
    for name in ("cosine", "flow"):
        schedule = build_schedule(name)
        x1 = torch.randn(8, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        times = time_grid(schedule, 7, "karras")
        euler = get_sampler("euler")(_posterior_mean(schedule), x1, times, schedule)
        torch.testing.assert_close(euler, get_sampler("ddim")(_posterior_mean(schedule), x1, times, schedule))


def test_heun_stays_accurate_from_pure_noise_on_the_cosine_schedule():
    """sigma / alpha is ~2e4 at t = 1 on cosine: a Heun step in that level would miss by far more than this."""
    schedule = build_schedule("cosine")
    x1 = torch.randn(64, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert _error("heun", schedule, x1, 8) < 0.02
