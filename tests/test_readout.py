"""Object read-out (kinema.control.readout): the soft centre of each coloured ball matches the simulator's ground
truth, anti-aliased rims and neighbouring look-alike colours included, and it is differentiable in the video."""

import pytest
import torch

from kinema.control.readout import object_positions
from kinema.data.physics_balls import BouncingBallsConfig, render_balls, simulate_balls
from kinema.errors import KinemaError


@pytest.mark.parametrize("size", [32, 64])
def test_positions_match_the_simulators_centres(size):
    config = BouncingBallsConfig(size=size, max_balls=2, radius_range=(3.0 * size / 32, 4.5 * size / 32))
    errors = []
    for seed in range(12):
        clip = simulate_balls(config, seed)
        positions, mass = object_positions(clip.video[None], clip.color_names)
        truth = clip.positions.transpose(0, 1)  # [N, T, 2]
        apart = torch.ones(truth.shape[1], dtype=torch.bool)
        if len(truth) == 2:  # a disc drawn over another hides part of it: compare where they do not touch
            apart = (truth[0] - truth[1]).norm(dim=-1) > clip.radii.sum() + 1
        errors.append((positions[0] - truth).norm(dim=-1)[:, apart].flatten())
        torch.testing.assert_close(mass[0], (torch.pi * clip.radii.square())[:, None].expand_as(mass[0]),
                                   rtol=0.05, atol=0)
    errors = torch.cat(errors)
    assert errors.numel() > 100 and errors.max() < 0.15, errors.max()


def test_a_dim_rim_keeps_its_colour_next_to_a_look_alike():
    """Blue and cyan discs a pixel apart: plain RGB distances would give cyan's dim rim to blue."""
    positions = torch.tensor([[[10.0, 16.0], [19.5, 16.0]]])  # [T=1, N=2, 2]
    video = render_balls(positions.numpy(), [4.0, 4.0], [[0.2, 0.4, 1.0], [0.1, 0.9, 1.0]], 32)[None]
    found, _ = object_positions(video, ["blue", "cyan"])
    torch.testing.assert_close(found[0, :, 0], positions[0], atol=0.05, rtol=0)


def test_an_object_of_no_colour_is_the_foreground_and_an_absent_one_has_no_mass():
    clip = simulate_balls(BouncingBallsConfig(max_balls=1), 3)
    positions, mass = object_positions(clip.video[None], [None, clip.color_names[0], "white"])
    torch.testing.assert_close(positions[0, 0], positions[0, 1], atol=1e-4, rtol=0)
    assert mass[0, 2].max() < 0.01 * mass[0, 1].min()


def test_the_gradient_predicts_how_the_read_out_moves_with_the_ball():
    """<d x / d video, video(x + h) - video(x)> = h to first order, and frame 2's position reads frame 2 only."""
    centres = torch.tensor([[[12.3, 15.6]]] * 4, dtype=torch.float64)  # [T, N, 2]

    def video(shift: float) -> torch.Tensor:
        moved = centres + torch.tensor([shift, 0.0], dtype=torch.float64)
        return render_balls(moved.numpy(), [3.5], [[0.1, 0.9, 1.0]], 24)[None].double()

    still = video(0.0).requires_grad_(True)
    positions, _ = object_positions(still, ["cyan"])
    (gradient,) = torch.autograd.grad(positions[0, 0, 2, 0], still)
    assert gradient[:, :, [0, 1, 3]].abs().sum() == 0
    step = 0.02
    predicted = (gradient * (video(step) - video(0.0))).sum()
    torch.testing.assert_close(predicted.item(), step, atol=0.1 * step, rtol=0)


def test_bad_colours_and_shapes_are_one_line_errors():
    with pytest.raises(KinemaError, match="purple"):
        object_positions(torch.zeros(1, 3, 2, 8, 8), ["purple"])
    with pytest.raises(KinemaError, match=r"\[1, 1, 2, 8, 8\]"):
        object_positions(torch.zeros(1, 1, 2, 8, 8), ["red"])
