"""Tests for kinema.diffusion: schedules, parameterisations, loss, samplers, guidance."""

import math

import pytest
import torch
from diffusers import DDPMScheduler

from kinema.diffusion import (
    PREDICTIONS,
    SAMPLERS,
    TIME_GRIDS,
    DiffusionLoss,
    NoiseSchedule,
    batched_classifier_free_guidance,
    broadcast_levels,
    build_schedule,
    classifier_free_guidance,
    get_sampler,
    gradient_guidance,
    time_grid,
    to_x0_eps,
    training_target,
    x0_denoiser,
)
from kinema.errors import KinemaError

SCHEDULE_CASES = [("linear", 1.0), ("cosine", 1.0), ("flow", 1.0), ("linear", 2.0), ("flow", 3.0)]


def _video(seed: int, shape=(2, 3, 4, 2, 2), dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ----------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("name,shift", [("linear", 1.0), ("cosine", 1.0), ("linear", 4.0), ("cosine", 0.5)])
def test_vp_schedules_preserve_variance(name, shift):
    t = torch.rand(64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.cat([t, torch.tensor([0.0, 1.0], dtype=torch.float64)])
    alpha, sigma = build_schedule(name, shift).alpha_sigma(t)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(alpha))
    assert (alpha > 0).all() and (sigma > 0).all()


def test_schedules_closed_forms_at_known_points():
    t = torch.tensor([0.0, 1 / 999, 499 / 999], dtype=torch.float64)
    alpha, _ = build_schedule("linear").alpha_sigma(t)
    beta_1 = 1e-4 + (0.02 - 1e-4) / 999
    torch.testing.assert_close(alpha[:2] ** 2, torch.tensor([1 - 1e-4, (1 - 1e-4) * (1 - beta_1)], dtype=torch.float64))

    def f(u):  # Nichol & Dhariwal eq. 17 before normalisation
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    alpha, _ = build_schedule("cosine").alpha_sigma(t[2:])
    assert alpha.item() ** 2 == pytest.approx(f(500 / 1000) / f(0), rel=1e-9)

    alpha, sigma = build_schedule("flow").alpha_sigma(torch.tensor([0.0, 0.25, 1.0]))
    torch.testing.assert_close(alpha, torch.tensor([1.0, 0.75, 0.0]))
    torch.testing.assert_close(sigma, torch.tensor([0.0, 0.25, 1.0]))


@pytest.mark.parametrize("name,diffusers_name", [("linear", "linear"), ("cosine", "squaredcos_cap_v2")])
def test_alphas_cumprod_match_diffusers(name, diffusers_name):
    reference = DDPMScheduler(num_train_timesteps=1000, beta_schedule=diffusers_name).alphas_cumprod.double()
    alpha, _ = build_schedule(name).alpha_sigma(torch.arange(1000, dtype=torch.float64) / 999)
    torch.testing.assert_close(alpha**2, reference, rtol=1e-4, atol=1e-9)


def test_vp_shift_lowers_log_snr_by_two_log_shift():
    t = torch.rand(32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for name in ("linear", "cosine"):
        base = build_schedule(name).log_snr(t)
        for shift in (0.5, 2.0, 8.0):
            shifted = build_schedule(name, shift).log_snr(t)
            torch.testing.assert_close(shifted - base, torch.full_like(t, -2 * math.log(shift)))


def test_flow_shift_follows_sd3_formula():
    t = torch.rand(32, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    alpha, sigma = build_schedule("flow", shift=3.0).alpha_sigma(t)
    expected = 3.0 * t / (1 + 2.0 * t)
    torch.testing.assert_close(sigma, expected)
    torch.testing.assert_close(alpha, 1 - expected)
    assert (sigma >= t).all()  # shift > 1 means more noise at every t


def test_uniform_grid_runs_from_one_to_zero():
    times = time_grid(build_schedule("cosine"), 5)
    torch.testing.assert_close(times, torch.tensor([1.0, 0.8, 0.6, 0.4, 0.2, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("name,shift", SCHEDULE_CASES)
@pytest.mark.parametrize("spacing", TIME_GRIDS)
def test_every_grid_decreases_strictly_from_one_to_zero(spacing, name, shift):
    for steps in (1, 2, 7, 50):
        times = time_grid(build_schedule(name, shift), steps, spacing)
        assert times.dtype == torch.float64 and times.shape == (steps + 1,)
        assert times[0] == 1 and times[-1] == 0 and (times[1:] < times[:-1]).all()


def test_grids_differ_where_they_should():
    schedule = build_schedule("linear")
    uniform, shifted = time_grid(schedule, 10), time_grid(schedule, 10, "shifted", shift=3.0)
    assert (shifted[1:-1] > uniform[1:-1]).all()  # shift > 1 spends the steps at higher noise
    karras = time_grid(schedule, 10, "karras")
    assert karras[-2] < uniform[-2]  # Karras ends close to clean
    root_levels = schedule.noise_level(karras[:-1]) ** (1 / 7)  # evenly spaced (Karras et al. 2022, eq. 5)
    torch.testing.assert_close(root_levels.diff(), root_levels.diff().mean().expand(9))


@pytest.mark.parametrize("steps", [0, -3, 2.5, True, None])
def test_steps_below_one_or_not_whole_are_an_error_never_a_default(steps):
    for spacing in TIME_GRIDS:
        with pytest.raises(KinemaError, match="steps"):
            time_grid(build_schedule("flow"), steps, spacing)


def test_bad_grid_options_name_the_grid():
    schedule = build_schedule("linear")
    with pytest.raises(KinemaError, match="'log'.*karras"):
        time_grid(schedule, 5, "log")
    with pytest.raises(KinemaError, match="shifted.*shift"):
        time_grid(schedule, 5, "shifted", shift=0.0)
    with pytest.raises(KinemaError, match="karras.*sigma_min"):
        time_grid(schedule, 5, "karras", sigma_min=1e-6)  # below the schedule's level at t = 0
    with pytest.raises(KinemaError, match="trailing.*1000"):
        time_grid(schedule, 1001, "trailing")


def test_unknown_schedule_names_it_and_the_choices():
    with pytest.raises(KinemaError, match="'sigmoid'.*cosine"):
        build_schedule("sigmoid")


def test_broadcast_levels_lines_up_samples_and_frames():
    x = torch.zeros(2, 3, 4, 5, 5)
    per_frame = torch.arange(8.0).reshape(2, 4)
    expanded = broadcast_levels(per_frame, x) + x
    assert expanded[1, 2, 3, 4, 0] == per_frame[1, 3]
    assert (broadcast_levels(torch.tensor([1.0, 2.0]), x) + x)[1].unique().tolist() == [2.0]
    with pytest.raises(KinemaError, match=r"\[2, 4\]"):
        broadcast_levels(torch.zeros(2, 3), x)


# ----------------------------------------------------------------------------- parameterization


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_target_then_inverse_recovers_x0_and_eps(prediction):
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(2, 8, 64, generator=g, dtype=torch.float64).unbind(0)
    alpha, sigma = torch.rand(2, 1, 64, generator=g, dtype=torch.float64).clamp(min=0.01).unbind(0)
    x_t = alpha * x0 + sigma * eps
    output = training_target(prediction, x0, eps, alpha, sigma)
    x0_hat, eps_hat = to_x0_eps(prediction, output, x_t, alpha, sigma)
    torch.testing.assert_close(x0_hat, x0)
    torch.testing.assert_close(eps_hat, eps)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_inverse_stays_finite_at_schedule_ends(prediction):
    output, x_t = torch.randn(2, 16, generator=torch.Generator().manual_seed(4))
    for alpha, sigma in ((0.0, 1.0), (1.0, 0.0)):
        x0, eps = to_x0_eps(prediction, output, x_t, torch.tensor(alpha), torch.tensor(sigma))
        assert torch.isfinite(x0).all() and torch.isfinite(eps).all()


def test_unknown_prediction_is_rejected():
    with pytest.raises(KinemaError, match="'score'"):
        training_target("score", *torch.zeros(4, 1))
    with pytest.raises(KinemaError, match="'score'"):
        DiffusionLoss(build_schedule("flow"), "score")


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_x0_denoiser_converts_network_output_with_per_frame_levels(prediction):
    schedule = build_schedule("cosine")
    x0, eps = _video(5, dtype=torch.float64), _video(6, dtype=torch.float64)
    t = torch.rand(2, 4, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    alpha, sigma = schedule.alpha_sigma_like(t, x0)

    def network(x_t, levels):
        return training_target(prediction, x0, eps, *schedule.alpha_sigma_like(levels, x_t))

    torch.testing.assert_close(x0_denoiser(network, schedule, prediction)(alpha * x0 + sigma * eps, t), x0)


# ----------------------------------------------------------------------------- loss


def _oracle(loss: DiffusionLoss, x0: torch.Tensor, offset: float = 0.0, known_offset: float = 0.0, seen=None):
    """A model that reads the noise back out of x_t and returns the exact target (+ offsets)."""

    def model_fn(x_t, t):
        alpha, sigma = loss.schedule.alpha_sigma_like(t, x_t)
        target = training_target(loss.prediction, x0, (x_t - alpha * x0) / sigma.clamp(min=1e-12), alpha, sigma)
        if seen is not None:
            seen.append((x_t, t))
        shift = torch.full_like(t, offset)
        if t.ndim == 2:
            shift = torch.where(t == 0, known_offset, shift)
        return target + broadcast_levels(shift, x_t)

    return model_fn


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("name", ["linear", "flow"])
def test_loss_is_zero_for_exact_target_and_mean_squared_offset_otherwise(prediction, name):
    loss = DiffusionLoss(build_schedule(name), prediction)
    x0 = _video(8, dtype=torch.float64)
    assert loss(_oracle(loss, x0), x0, torch.Generator().manual_seed(0)).item() == pytest.approx(0.0, abs=1e-12)
    assert loss(_oracle(loss, x0, 0.1), x0, torch.Generator().manual_seed(0)).item() == pytest.approx(0.01)


def test_noise_and_target_apply_each_frames_level():
    loss = DiffusionLoss(build_schedule("flow"), "flow")
    x0, noise = _video(9), _video(10)
    t = torch.tensor([[0.0, 0.25, 0.5, 1.0], [1.0, 0.75, 0.1, 0.0]])
    x_t, target = loss.noise_and_target(x0, t, noise)
    for b in range(2):
        for f in range(4):
            torch.testing.assert_close(x_t[b, :, f], (1 - t[b, f]) * x0[b, :, f] + t[b, f] * noise[b, :, f])
    torch.testing.assert_close(target, noise - x0)


def test_per_frame_noise_draws_one_level_per_frame():
    x0 = _video(11)
    seen = []
    per_frame = DiffusionLoss(build_schedule("cosine"), "v", per_frame_noise=True)
    per_frame(_oracle(per_frame, x0, seen=seen), x0, torch.Generator().manual_seed(1))
    per_sample = DiffusionLoss(build_schedule("cosine"), "v")
    per_sample(_oracle(per_sample, x0, seen=seen), x0, torch.Generator().manual_seed(1))
    (_, t_frames), (_, t_samples) = seen
    assert t_frames.shape == (2, 4) and t_samples.shape == (2,)
    assert t_frames.unique().numel() == 8  # distinct levels across frames


@pytest.mark.parametrize("per_frame_noise", [False, True])
def test_known_frames_are_clean_at_t_zero_and_carry_no_loss(per_frame_noise):
    loss = DiffusionLoss(build_schedule("linear"), "eps", per_frame_noise=per_frame_noise)
    x0 = _video(12)
    frames = torch.tensor([[True, False, False, True], [False, False, False, False]])
    known = frames[:, None, :, None, None].expand(2, 1, 4, 2, 2).clone()
    seen = []
    value = loss(_oracle(loss, x0, 0.1, known_offset=0.0, seen=seen), x0, torch.Generator().manual_seed(2), known)
    moved = loss(_oracle(loss, x0, 0.1, known_offset=50.0), x0, torch.Generator().manual_seed(2), known)
    assert value.item() == pytest.approx(0.01, rel=1e-4)
    assert moved.item() == value.item()
    x_t, t = seen[0]
    assert t.shape == (2, 4) and (t[frames] == 0).all() and (t[~frames] > 0).all()
    torch.testing.assert_close(x_t[0][:, frames[0]], x0[0][:, frames[0]])  # passed exactly clean
    if not per_frame_noise:  # unknown frames share the sample's level
        assert t[1].unique().numel() == 1


def test_known_pixels_carry_no_loss_but_keep_their_frame_noisy():
    loss = DiffusionLoss(build_schedule("cosine"), "v")
    x0 = _video(14)
    known = torch.zeros(2, 1, 4, 2, 2, dtype=torch.bool)
    known[:, :, :, 0] = True  # the top row of every frame is given
    seen = []

    def wrong_on_known_rows(x_t, t):
        exact = _oracle(loss, x0, seen=seen)(x_t, t)
        return exact + 7.0 * known.to(exact.dtype)

    assert loss(wrong_on_known_rows, x0, torch.Generator().manual_seed(3), known).item() == pytest.approx(0, abs=1e-9)
    x_t, t = seen[0]
    assert (t > 0).all() and not torch.allclose(x_t, x0)  # no frame is whole: every frame keeps its level


def test_levels_set_the_noise_of_chosen_frames():
    loss = DiffusionLoss(build_schedule("cosine"), "v")
    x0 = _video(15)
    levels = torch.tensor([[0.1, 0.2, 0.3, 0.4], [float("nan")] * 4])
    seen = []
    loss(_oracle(loss, x0, seen=seen), x0, torch.Generator().manual_seed(4), levels=levels)
    t = seen[0][1]
    torch.testing.assert_close(t[0], levels[0])
    assert t[1].unique().numel() == 1  # NaN: the sample keeps its own drawn level


def test_loss_rejects_bad_known_pixels_and_output_shape():
    loss = DiffusionLoss(build_schedule("flow"), "flow")
    x0 = _video(13)
    with pytest.raises(KinemaError, match="known must be a bool tensor"):
        loss(lambda x, t: x, x0, known=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(KinemaError, match="levels must be"):
        loss(lambda x, t: x, x0, levels=torch.zeros(2, 3))
    with pytest.raises(KinemaError, match="output shape"):
        loss(lambda x, t: x[:, :1], x0)


# ----------------------------------------------------------------------------- samplers


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_sampler_walks_the_grid_it_is_given_and_reports_each_step(sampler):
    schedule = build_schedule("cosine")
    times = torch.tensor([1.0, 0.7, 0.2, 0.05, 0.0], dtype=torch.float64)
    calls, steps_seen = [], []

    def denoise_fn(x_t, t):
        assert torch.isfinite(x_t).all() and t.shape == (2,)
        calls.append(round(t[0].item(), 6))
        return 0.5 * x_t

    get_sampler(sampler)(denoise_fn, _video(15), times, schedule, generator=torch.Generator().manual_seed(0),
                         callback=lambda i, total, x, x0_hat: steps_seen.append((i, total)))
    assert steps_seen == [(i, 4) for i in range(4)]
    assert sorted(set(calls), reverse=True) == [1.0, 0.7, 0.2, 0.05]  # Heun also evaluates at the step's end


@pytest.mark.parametrize("times", [
    torch.tensor([1.0, 0.5]), torch.tensor([1.0, 0.5, 0.5, 0.0]), torch.tensor([1.5, 0.5, 0.0]),
    torch.tensor([1.0]), torch.ones(3, 2), [1.0, 0.0],
])
def test_bad_time_grid_is_a_one_line_error(times):
    with pytest.raises(KinemaError, match="sampling times") as error:
        get_sampler("euler")(lambda x, t: x, _video(15), times, build_schedule("flow"))
    assert "\n" not in str(error.value)


def _gaussian_posterior_mean(schedule: NoiseSchedule, mu: float, s: float):
    """E[x0 | x_t] for data N(mu, s^2 I); samplers pass one time for the whole batch."""

    def denoise_fn(x_t, t):
        alpha, sigma = (v.item() for v in schedule.alpha_sigma(t[:1]))
        return mu + alpha * s**2 / (alpha**2 * s**2 + sigma**2) * (x_t - alpha * mu)

    return denoise_fn


# Ancestral and first-order samplers need more steps to reach the data's spread.
GAUSSIAN_STEPS = {"ddpm": 1000, "ddim": 500, "euler": 250, "dpmpp_2m": 100, "heun": 100}


@pytest.mark.parametrize("name", ["linear", "cosine", "flow"])
@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_sampler_draws_gaussian_data_with_its_mean_and_std(sampler, name):
    schedule, mu, s = build_schedule(name), 0.5, 0.3
    g = torch.Generator().manual_seed(16)
    x = torch.randn(4096, 4, generator=g)  # below torch's intra-op grain size: one thread
    denoise_fn = _gaussian_posterior_mean(schedule, mu, s)
    out = get_sampler(sampler)(denoise_fn, x, time_grid(schedule, GAUSSIAN_STEPS[sampler]), schedule, generator=g)
    assert out.mean().item() == pytest.approx(mu, abs=0.01)
    assert out.std().item() == pytest.approx(s, rel=0.03)


def test_ddim_with_eta_one_is_ddpm_and_eta_zero_ignores_the_generator():
    schedule = build_schedule("cosine")
    denoise_fn = _gaussian_posterior_mean(schedule, 0.2, 0.5)
    x = _video(17).flatten(1)

    def run(sampler, seed, **options):
        generator = torch.Generator().manual_seed(seed)
        return get_sampler(sampler)(denoise_fn, x, time_grid(schedule, 10), schedule, generator=generator, **options)

    torch.testing.assert_close(run("ddim", 0, eta=1.0), run("ddpm", 0))
    torch.testing.assert_close(run("ddim", 0), run("ddim", 1))
    assert not torch.allclose(run("ddim", 0, eta=0.5), run("ddim", 1, eta=0.5))


def test_unknown_sampler_lists_choices():
    with pytest.raises(KinemaError, match="'lms'.*dpmpp_2m"):
        get_sampler("lms")


# ----------------------------------------------------------------------------- guidance


def _cond_uncond(calls):
    def cond_fn(x, t):
        calls.append("cond")
        return x + 1.0

    def uncond_fn(x, t):
        calls.append("uncond")
        return 2.0 * x

    return cond_fn, uncond_fn


def test_cfg_interpolates_between_uncond_and_cond():
    x, t = _video(19), torch.ones(2)
    calls = []
    cond_fn, uncond_fn = _cond_uncond(calls)
    torch.testing.assert_close(classifier_free_guidance(cond_fn, uncond_fn, 0.0)(x, t), 2.0 * x)
    torch.testing.assert_close(classifier_free_guidance(cond_fn, uncond_fn, 1.0)(x, t), x + 1.0)
    assert calls == ["uncond", "cond"]  # scale 0 and 1 each need one pass only
    for scale in (0.5, 3.0):
        expected = 2.0 * x + scale * ((x + 1.0) - 2.0 * x)
        torch.testing.assert_close(classifier_free_guidance(cond_fn, uncond_fn, scale)(x, t), expected)


def test_batched_cfg_matches_two_calls_in_one_pass():
    x, t = _video(20), torch.full((2,), 0.3)
    calls = []
    cond_fn, uncond_fn = _cond_uncond(calls)

    def pair_fn(x2, t2):
        calls.append(x2.shape[0])
        assert torch.equal(t2, torch.cat([t, t]))
        return torch.cat([cond_fn(x2[:2], t2[:2]), uncond_fn(x2[2:], t2[2:])])

    torch.testing.assert_close(
        batched_classifier_free_guidance(pair_fn, 4.0)(x, t), classifier_free_guidance(cond_fn, uncond_fn, 4.0)(x, t)
    )
    assert calls[0] == 4


def test_gradient_guidance_descends_the_energy_even_without_grad():
    target = _video(21)
    x0 = _video(22)
    guided = gradient_guidance(lambda x_t, t: x0, lambda x: 0.5 * (x - target).square().flatten(1).sum(1), 0.25)
    with torch.no_grad():
        out = guided(torch.zeros_like(x0), torch.ones(2))
    torch.testing.assert_close(out, x0 - 0.25 * (x0 - target))
