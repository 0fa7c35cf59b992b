"""Kinema's samplers and time grids against diffusers' schedulers as independent references.

Same grid, same nonlinear denoiser, same start noise (and same step noise for DDPM) -> same samples.
The reference networks read the noise level the way each scheduler exposes it (sigma/alpha for the
VP schedulers, sigma = t' for flow matching); Kinema's read it from `NoiseSchedule.noise_level`.
"""

import math

import pytest
import torch
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler,
                       FlowMatchEulerDiscreteScheduler, FlowMatchHeunDiscreteScheduler)

from kinema.diffusion import build_schedule, get_sampler, time_grid, to_x0_eps
from kinema.diffusion.schedules import TRAINING_STEPS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers' numpy 2 notices

STEPS = 10
LINEAR = {"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}  # DDPM's betas, Kinema's "linear"
SHAPE = (2, 3, 4, 2, 2)


def _start(seed: int = 18) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _network(x: torch.Tensor, level: float) -> torch.Tensor:
    """A smooth nonlinear prediction that depends on the input and on the noise level."""
    return 0.8 * torch.tanh(x) + 0.3 * math.log(level) * torch.sin(3 * x) / (1 + abs(math.log(level)))


def _kinema(sampler: str, schedule, times: torch.Tensor, prediction: str, seed: int | None = None,
            start: torch.Tensor | None = None) -> torch.Tensor:
    """Kinema's sample with `_network` predicting eps (VP) or the flow velocity, at the schedule's level."""

    def denoise_fn(x_t, t):
        alpha, sigma = schedule.alpha_sigma_like(t, x_t)
        level = schedule.noise_level(t[:1].double()).item()
        return to_x0_eps(prediction, _network(x_t, level), x_t, alpha, sigma)[0]

    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return get_sampler(sampler)(denoise_fn, _start() if start is None else start, times, schedule, generator=generator)


def _reference_k(scheduler) -> torch.Tensor:
    """Run a sigma-indexed diffusers scheduler (Euler, Heun, flow matching; timesteps set) on `_network`."""
    sample = _start() * getattr(scheduler, "init_noise_sigma", 1.0)
    for timestep in scheduler.timesteps:
        if hasattr(scheduler, "scale_model_input"):  # VP: the sample is in VE form, the network sees x_t
            model_input = scheduler.scale_model_input(sample, timestep)
            level = scheduler.sigmas[scheduler.step_index].item()
        else:  # flow matching: timestep = sigma N
            model_input, level = sample, timestep.item() / scheduler.config.num_train_timesteps
        sample = scheduler.step(_network(model_input, level), timestep, sample).prev_sample
    return sample


def _vp_times(scheduler) -> torch.Tensor:
    """The scheduler's sigma grid as Kinema times on the linear schedule (t = training step / 999)."""
    return torch.cat([scheduler.timesteps.unique_consecutive().double() / (TRAINING_STEPS - 1),
                      torch.zeros(1, dtype=torch.float64)])


def _linear_karras_sigma_min() -> float:
    """Kinema's default smallest Karras level on the linear schedule, handed to diffusers."""
    return build_schedule("linear").noise_level(torch.tensor([1 / TRAINING_STEPS], dtype=torch.float64)).item()


# ----------------------------------------------------------------------------- grids


def test_trailing_grid_is_diffusers_trailing_spacing():
    for steps in (1, 7, 10, 25, 1000):
        reference = DDIMScheduler(timestep_spacing="trailing")
        reference.set_timesteps(steps)
        expected = torch.cat([reference.timesteps.double() / 999, torch.zeros(1, dtype=torch.float64)])
        torch.testing.assert_close(time_grid(build_schedule("linear"), steps, "trailing"), expected)


@pytest.mark.parametrize("steps", [2, 10, 30])
def test_karras_grid_has_diffusers_karras_sigmas_on_vp(steps):
    schedule = build_schedule("linear")
    reference = EulerDiscreteScheduler(**LINEAR, use_karras_sigmas=True,
                                       sigma_min=_linear_karras_sigma_min())
    reference.set_timesteps(steps)
    times = time_grid(schedule, steps, "karras")
    assert times[0] == 1 and times[-1] == 0
    torch.testing.assert_close(schedule.noise_level(times[:-1]), reference.sigmas[:-1].double(), rtol=1e-5, atol=0)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_karras_grid_has_diffusers_karras_sigmas_on_flow(shift):
    schedule = build_schedule("flow", shift)
    reference = FlowMatchEulerDiscreteScheduler(shift=shift, use_karras_sigmas=True)
    reference.set_timesteps(STEPS)
    # diffusers shifts its smallest sigma twice when shift != 1: compare the spacing from its end point
    sigma_min = None if shift == 1 else reference.sigmas[-2].item()
    times = time_grid(schedule, STEPS, "karras", sigma_min=sigma_min)
    torch.testing.assert_close(schedule.alpha_sigma(times)[1], reference.sigmas.double(), rtol=1e-5, atol=1e-7)


def test_shifted_grid_is_the_flow_match_shift():
    reference = FlowMatchEulerDiscreteScheduler(shift=3.0)
    uniform = time_grid(build_schedule("flow"), STEPS)
    reference.set_timesteps(sigmas=uniform[:-1].tolist())
    shifted = time_grid(build_schedule("flow"), STEPS, "shifted", shift=3.0)
    torch.testing.assert_close(shifted, reference.sigmas.double(), rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- VP samplers


@pytest.mark.parametrize("grid", ["trailing", "karras"])
def test_euler_matches_diffusers_euler_on_each_grid(grid):
    options = ({"use_karras_sigmas": True, "sigma_min": _linear_karras_sigma_min()} if grid == "karras"
               else {"timestep_spacing": "trailing"})
    reference = EulerDiscreteScheduler(**LINEAR, **options)
    reference.set_timesteps(STEPS)
    schedule = build_schedule("linear")
    # diffusers starts from sigma_max eps in VE form (init_noise_sigma): x_t = eps sigma_max / sqrt(1 + sigma_max^2)
    start = _start() * reference.init_noise_sigma / math.sqrt(1 + reference.sigmas[0].item() ** 2)
    ours = _kinema("euler", schedule, time_grid(schedule, STEPS, grid), "eps", start=start)
    torch.testing.assert_close(ours, _reference_k(reference).to(ours.dtype), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("grid", ["trailing", "karras"])
def test_heun_on_vp_is_diffusers_flow_matching_heun_on_the_flow_form(grid):
    """VP x_t in flow form, z = x_t / (alpha + sigma) = (1 - k) x0 + k eps with k = sigma / (alpha + sigma), run by
    diffusers' FlowMatchHeunDiscreteScheduler on the sigmas k(t_i); its network turns (z, k) into x_t and back."""
    schedule = build_schedule("linear")
    times = time_grid(schedule, STEPS, grid)
    alpha, sigma = schedule.alpha_sigma(times[:-1])
    sigmas = torch.cat([sigma / (alpha + sigma), torch.zeros(1, dtype=torch.float64)]).float()
    reference = FlowMatchHeunDiscreteScheduler()
    reference.set_timesteps(STEPS)  # then our grid, laid out as set_timesteps lays out its own
    reference.sigmas = torch.cat([sigmas[:1], sigmas[1:-1].repeat_interleave(2), sigmas[-1:]])
    reference.timesteps = torch.cat([sigmas[:1], sigmas[1:-1].repeat_interleave(2)]) * 1000
    sample = _start() / (alpha[0] + sigma[0]).item()
    for timestep in reference.timesteps:
        k = timestep.item() / 1000
        norm = math.hypot(1 - k, k)  # alpha^2 + sigma^2 = 1 on VP: alpha = (1 - k) / norm, sigma = k / norm
        x_t = sample / norm
        eps = _network(x_t, k / (1 - k))
        x0 = (x_t - k / norm * eps) / ((1 - k) / norm)
        sample = reference.step(eps - x0, timestep, sample).prev_sample
    ours = _kinema("heun", schedule, times, "eps")
    torch.testing.assert_close(ours, sample.to(ours.dtype), atol=1e-4, rtol=1e-4)


def test_ddpm_matches_diffusers_ddpm_scheduler_with_the_same_noise():
    schedule = build_schedule("linear")
    reference = DDPMScheduler(**LINEAR, clip_sample=False, timestep_spacing="trailing")
    reference.set_timesteps(STEPS)
    generator, sample = torch.Generator().manual_seed(5), _start()
    for timestep in reference.timesteps:
        alpha_bar = reference.alphas_cumprod[timestep].item()
        eps = _network(sample, math.sqrt((1 - alpha_bar) / alpha_bar))
        sample = reference.step(eps, timestep, sample, generator=generator).prev_sample
    ours = _kinema("ddpm", schedule, time_grid(schedule, STEPS, "trailing"), "eps", seed=5)
    torch.testing.assert_close(ours, sample.to(ours.dtype), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(ours, _kinema("ddpm", schedule, time_grid(schedule, STEPS, "trailing"), "eps", seed=6))


def _reference_eps_loop(reference) -> torch.Tensor:
    """Run DDIM / DPM-Solver++ (timestep-indexed, x_t throughout) on `_network` at sigma/alpha of each step."""
    sample = _start()
    for timestep in reference.timesteps:
        alpha_bar = reference.alphas_cumprod[timestep].item()
        sample = reference.step(_network(sample, math.sqrt((1 - alpha_bar) / alpha_bar)), timestep, sample).prev_sample
    return sample


def test_ddim_matches_diffusers_ddim_scheduler():
    reference = DDIMScheduler(**LINEAR, clip_sample=False, timestep_spacing="trailing",
                              set_alpha_to_one=True)
    reference.set_timesteps(STEPS)
    schedule = build_schedule("linear")
    ours = _kinema("ddim", schedule, time_grid(schedule, STEPS, "trailing"), "eps")
    torch.testing.assert_close(ours, _reference_eps_loop(reference).to(ours.dtype), atol=1e-4, rtol=1e-4)


def test_dpmpp_2m_matches_diffusers_multistep_solver():
    reference = DPMSolverMultistepScheduler(**LINEAR, algorithm_type="dpmsolver++", solver_order=2)
    reference.set_timesteps(STEPS)
    schedule = build_schedule("linear")
    ours = _kinema("dpmpp_2m", schedule, _vp_times(reference), "eps")
    torch.testing.assert_close(ours, _reference_eps_loop(reference).to(ours.dtype), atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------- flow samplers


def _flow_times(reference, shift: float) -> torch.Tensor:
    """The scheduler's (shifted) sigmas as times of Kinema's flow schedule: t = sigma / (shift - (shift - 1) sigma)."""
    sigmas = reference.sigmas.double().unique_consecutive()
    return sigmas / (shift - (shift - 1) * sigmas)


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("sampler,reference_class", [("euler", FlowMatchEulerDiscreteScheduler),
                                                     ("heun", FlowMatchHeunDiscreteScheduler)])
def test_flow_samplers_match_diffusers_flow_matching(sampler, reference_class, shift):
    reference = reference_class(shift=shift)
    reference.set_timesteps(STEPS)
    ours = _kinema(sampler, build_schedule("flow", shift), _flow_times(reference, shift), "flow")
    expected = _reference_k(reference)
    torch.testing.assert_close(ours, expected.to(ours.dtype), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("grid", ["karras", "shifted"])
def test_flow_euler_matches_diffusers_on_karras_and_shifted_grids(grid):
    if grid == "karras":
        reference = FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True)
        reference.set_timesteps(STEPS)
    else:
        reference = FlowMatchEulerDiscreteScheduler(shift=3.0)
        reference.set_timesteps(sigmas=time_grid(build_schedule("flow"), STEPS)[:-1].tolist())
    schedule = build_schedule("flow")
    ours = _kinema("euler", schedule, time_grid(schedule, STEPS, grid, shift=3.0), "flow")
    torch.testing.assert_close(ours, _reference_k(reference).to(ours.dtype), atol=1e-4, rtol=1e-4)
