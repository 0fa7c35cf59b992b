"""DDIM inversion (kinema.diffusion.inversion) and inversion-based edits in the pipeline."""

from __future__ import annotations

import pytest
import torch
from denoisers import tiny_denoiser, tiny_run_config

from kinema.diffusion import build_schedule, get_sampler, time_grid
from kinema.diffusion.inversion import ddim_invert
from kinema.errors import KinemaError
from kinema.pipelines.text_to_video import TextToVideoPipeline


def gaussian_denoiser(schedule, mu: float, s: float):
    """E[x0 | x_t] for data N(mu, s^2): the exact denoiser whose probability-flow ODE keeps
    (x_t - alpha mu) / sqrt(alpha^2 s^2 + sigma^2) constant."""

    def denoise(x, t):
        alpha, sigma = (v.item() for v in schedule.alpha_sigma(t[:1].double()))
        return mu + alpha * s**2 / (alpha**2 * s**2 + sigma**2) * (x - alpha * mu)

    return denoise


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_inversion_follows_the_probability_flow_of_gaussian_data(name):
    schedule, mu, s, top = build_schedule(name), 0.3, 0.4, 0.7
    denoise = gaussian_denoiser(schedule, mu, s)
    x0 = mu + s * torch.randn(2, 1, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    alpha, sigma = (v.item() for v in schedule.alpha_sigma(torch.tensor(top, dtype=torch.float64)))
    exact = alpha * mu + (alpha**2 * s**2 + sigma**2) ** 0.5 * (x0 - mu) / s
    errors = []
    for steps in (100, 400):
        grid = time_grid(schedule, steps).double() * top
        inverted = ddim_invert(denoise, x0, grid.flip(0), schedule)
        back = get_sampler("ddim")(denoise, inverted, grid, schedule)  # sampling walks the same path down
        errors.append(((inverted - exact).abs().max().item(), (back - x0).abs().max().item()))
    assert max(errors[1]) < 0.02
    assert all(fine < 0.35 * coarse for fine, coarse in zip(errors[1], errors[0]))  # first order: error ~ 1 / steps


def test_inversion_refuses_a_grid_that_does_not_rise_from_zero():
    schedule = build_schedule("cosine")
    with pytest.raises(KinemaError, match="rising from 0"):
        ddim_invert(lambda x, t: x, torch.zeros(1, 1, 1, 2, 2), time_grid(schedule, 4), schedule)


def test_edit_from_the_inversion_returns_the_video_where_fresh_noise_does_not():
    model = tiny_denoiser(text_dim=0, perturb=0.2).eval()
    pipe = TextToVideoPipeline(model, tiny_run_config(model, "video_unet"))
    clip = torch.rand(1, 3, 4, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1
    options = dict(num_frames=4, height=8, width=8, init_video=clip, strength=0.5, steps=100, sampler="ddim",
                   guidance=1.0, progress=False)
    inverted, noised = pipe("", source_prompt="", **options), pipe("", **options)
    error_inverted, error_noised = ((video - clip).abs().mean().item() for video in (inverted, noised))
    assert error_inverted < 0.02 and error_noised > 10 * error_inverted


def test_an_edit_keeps_the_videos_motion_without_direction_guidance_unless_asked(monkeypatch):
    import kinema.pipelines.text_to_video as t2v

    model = tiny_denoiser(text_dim=0, perturb=0.2).eval()
    config = tiny_run_config(model, "video_unet")
    config.sample.direction_guidance = 1.0
    pipe = TextToVideoPipeline(model, config)
    energies = []
    monkeypatch.setattr(t2v, "direction_energy", lambda d: energies.append(d) or (lambda x0: x0.sum() * 0))
    clip = torch.zeros(1, 3, 4, 8, 8)
    options = dict(num_frames=4, height=8, width=8, steps=2, guidance=1.0, progress=False)
    pipe("a ball moves to the left", **options)
    assert len(energies) == 1  # the model's default steers a fresh sample
    pipe("a ball moves to the left", init_video=clip, strength=0.5, **options)
    assert len(energies) == 1  # but not an edit
    pipe("a ball moves to the left", init_video=clip, strength=0.5, direction_guidance=1.0, **options)
    assert len(energies) == 2
