"""Per-frame time grids: every frame follows its own times, exactly as if it were sampled alone with them; one shared
grid gives today's samplers; frames whose time stands still come back untouched (chapter 11.1.2, diffusion forcing)."""

import pytest
import torch

from kinema.diffusion import SAMPLERS, build_schedule, get_sampler, time_grid
from kinema.errors import KinemaError

DETERMINISTIC = ("ddim", "dpmpp_2m", "euler", "heun")
MU, STD = 0.3, 0.4


def _gaussian_denoiser(calls=None):
    """E[x0 | x_t] for data N(MU, STD^2) per pixel, at the time of each frame (t [B] or [B, T])."""
    schedule = build_schedule("cosine")

    def denoise(x, t):
        if calls is not None:
            calls.append(t.clone())
        alpha, sigma = schedule.alpha_sigma_like(t, x)
        return MU + alpha * STD**2 / (alpha**2 * STD**2 + sigma**2) * (x - alpha * MU)

    return denoise, schedule


def _x(seed=0, batch=2, frames=3):
    return torch.randn(batch, 2, frames, 4, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_one_shared_grid_per_frame_gives_the_plain_sampler(sampler):
    denoise, schedule = _gaussian_denoiser()
    x = _x()
    times = time_grid(schedule, 6, "karras")
    plain = get_sampler(sampler)(denoise, x, times, schedule, generator=torch.Generator().manual_seed(1))
    calls = []
    spread = times[:, None, None].expand(7, 2, 3)
    per_frame = get_sampler(sampler)(_gaussian_denoiser(calls)[0], x, spread, schedule,
                                     generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(per_frame, plain, rtol=0, atol=1e-12)
    assert all(t.shape == (2,) for t in calls)  # a shared time reaches the network as t [B]


@pytest.mark.parametrize("sampler", DETERMINISTIC)
def test_each_frame_follows_its_own_grid_as_if_sampled_alone(sampler):
    denoise, schedule = _gaussian_denoiser()
    x = _x(2)
    steps = 8
    karras, uniform = time_grid(schedule, steps, "karras"), time_grid(schedule, steps)
    late = torch.cat([torch.ones(3, dtype=torch.float64), time_grid(schedule, steps - 3)])  # waits 3 steps at t = 1
    grids = torch.stack([karras, uniform, late], dim=1)  # [steps + 1, T]
    together = get_sampler(sampler)(denoise, x, grids, schedule)
    for frame, grid in enumerate([karras, uniform, time_grid(schedule, steps - 3)]):
        alone = get_sampler(sampler)(denoise, x[:, :, frame:frame + 1], grid, schedule)
        torch.testing.assert_close(together[:, :, frame:frame + 1], alone, rtol=0, atol=1e-10)


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_a_frame_held_at_zero_comes_back_bit_exact(sampler):
    denoise, schedule = _gaussian_denoiser()
    x = _x(3)
    grid = time_grid(schedule, 5)[:, None].repeat(1, 3)
    grid[:, 1] = 0  # frame 1 is given: it is clean from the start
    out = get_sampler(sampler)(denoise, x, grid, schedule, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :, 1], x[:, :, 1])
    assert not torch.equal(out[:, :, 0], x[:, :, 0])


def test_per_video_grids_and_the_network_sees_per_frame_times():
    calls = []
    denoise, schedule = _gaussian_denoiser(calls)
    x = _x(4)
    grid = time_grid(schedule, 4)[:, None, None].repeat(1, 2, 3)
    grid[:, 1, 0] = 0
    get_sampler("euler")(denoise, x, grid, schedule)
    assert calls[0].shape == (2, 3) and calls[0][1, 0] == 0 and calls[0][0, 0] == 1


@pytest.mark.parametrize("bad,match", [
    (torch.tensor([[0.5, 1.0], [0.6, 0.5], [0.0, 0.0]]), "never rise"),
    (torch.tensor([[1.0, 1.0], [0.5, 0.5], [0.0, -0.1]]), "exactly 0"),
    (torch.ones(3, 2), "exactly 0"),
    (torch.zeros(3, 2), "never rise"),  # nothing ever moves
    (torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]), r"\[steps \+ 1, 2\]"),
    (torch.zeros(2, 5, 2, 1), "grid of steps"),
])
def test_bad_per_frame_grids_are_named(bad, match):
    denoise, schedule = _gaussian_denoiser()
    with pytest.raises(KinemaError, match=match):
        get_sampler("ddim")(denoise, _x(frames=2), bad.double(), schedule)
