"""Direction energy (chapter 11.3): the foreground centroid's velocity, an energy that is zero once the video moves
the asked way, and reconstruction guidance that moves a video along it through the denoiser."""

import torch

from kinema.control.direction import centroid_velocity, direction_energy, foreground_centroids
from kinema.diffusion import gradient_guidance, reconstruction_guidance


def moving_disc(start: tuple[float, float], velocity: tuple[float, float], frames: int = 6, size: int = 24,
                background: float = -1.0) -> torch.Tensor:
    """A white disc of radius 3 moving at `velocity` px per frame: [1, 3, T, H, W]."""
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    frames_ = []
    for t in range(frames):
        cx, cy = start[0] + velocity[0] * t, start[1] + velocity[1] * t
        inside = ((xs - cx) ** 2 + (ys - cy) ** 2 <= 9).float()
        frames_.append(background + (1 - background) * inside)
    return torch.stack(frames_)[None, None].expand(1, 3, -1, -1, -1).clone()


def test_centroids_and_velocity_follow_a_moving_disc_on_any_plain_background():
    for background in (-1.0, 0.6):
        video = moving_disc((6.0, 10.0), (2.0, -1.0), background=background)
        torch.testing.assert_close(foreground_centroids(video)[0, 0], torch.tensor([6.0, 10.0]), atol=1e-4, rtol=0)
        torch.testing.assert_close(centroid_velocity(video)[0], torch.tensor([2.0, -1.0]), atol=1e-4, rtol=0)


def test_energy_is_zero_when_moving_the_asked_way_and_grows_with_the_shortfall():
    right = moving_disc((4.0, 12.0), (2.0, 0.0))
    still = moving_disc((12.0, 12.0), (0.0, 0.0))
    left = moving_disc((20.0, 12.0), (-2.0, 0.0))
    video = torch.cat([right, still, left, left])
    energy = direction_energy(torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]), min_speed=1.0)(video)
    area = 24 * 24
    torch.testing.assert_close(energy, torch.tensor([0.0, area * 1.0, area * 9.0, 0.0]), atol=1e-2, rtol=1e-4)


def test_energy_reads_the_direction_as_a_unit_vector():
    down = moving_disc((12.0, 4.0), (0.0, 2.0))
    assert direction_energy(torch.tensor([[0.0, 5.0]]), min_speed=1.5)(down).item() == 0.0
    assert direction_energy(torch.tensor([[0.0, -1.0]]), min_speed=1.5)(down).item() > 0.0


def test_reconstruction_guidance_differentiates_through_the_denoiser():
    weight = torch.tensor(0.5)
    denoise = lambda x, t: torch.tanh(weight * x)  # a toy denoiser with a known Jacobian
    energy = lambda x0: x0.square().sum(dim=(1, 2, 3, 4))
    x_t, t = torch.randn(2, 1, 2, 3, 3), torch.rand(2)
    x0 = denoise(x_t, t)
    expected = x0 - 0.1 * 2 * x0 * weight * (1 - x0.square())  # chain rule: dE/dx0 * dx0/dx_t
    torch.testing.assert_close(reconstruction_guidance(denoise, energy, 0.1)(x_t, t), expected)
    assert not torch.allclose(gradient_guidance(denoise, energy, 0.1)(x_t, t), expected)
