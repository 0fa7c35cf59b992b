"""Physics energies and projection (kinema.control.physics_energy, chapter 11.3.6): closed-form gradients, energies
that are near zero on simulated clips (bounces and collisions included) and large on broken ones, and a projection
that puts a displaced ball back on its simulated path."""

import numpy as np
import pytest
import torch

from kinema.control.physics_energy import (SECOND, THIRD, contact_windows, differences, differences_adjoint,
                                           gravity_energy, gravity_energy_gradient, move_objects, physics_energy,
                                           project_to_physics, smoothness_energy, smoothness_energy_gradient,
                                           spacing_energy, spacing_energy_gradient, touching_distance)
from kinema.control.readout import object_positions
from kinema.data.physics_balls import BouncingBallsConfig, render_balls, simulate_balls

CONFIG = BouncingBallsConfig(max_balls=2)


def random(*shape, scale=1.0, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


@pytest.mark.parametrize("coefficients", [SECOND, THIRD])
def test_the_adjoint_is_the_transpose_of_the_differences(coefficients):
    p, h = random(2, 3, 7, 2), random(2, 3, 7 - len(coefficients) + 1, 2, seed=1)
    adjoint = differences_adjoint(h, coefficients)
    torch.testing.assert_close((differences(p, coefficients) * h).sum(), (p * adjoint).sum())


@pytest.mark.parametrize("term", ["gravity", "smoothness", "interpenetration"])
def test_each_term_has_its_closed_form_gradient(term):
    positions = random(2, 3, 7, 2, scale=3.0).requires_grad_(True)  # close together: discs of radius 2 overlap
    radii = torch.full((2, 3), 2.0, dtype=torch.float64)
    energy, gradient, weights = {
        "gravity": (gravity_energy, gravity_energy_gradient, (random(2, 3, 5, seed=1), 0.75)),
        "smoothness": (smoothness_energy, smoothness_energy_gradient, (random(2, 3, 4, seed=1),)),
        "interpenetration": (spacing_energy, spacing_energy_gradient, (random(2, 3, 7, seed=1),
                                                                       touching_distance(radii))),
    }[term]
    (autograd,) = torch.autograd.grad(energy(positions, *weights).sum(), positions)
    assert autograd.abs().max() > 1e-3  # large residuals too: the Huber terms reach their linear part
    torch.testing.assert_close(gradient(positions, *weights), autograd)


def shifted(clip, frames, offset):
    """The clip re-rendered with its balls moved by `offset` px at `frames`."""
    positions = clip.positions.clone()
    positions[frames] += torch.tensor(offset)
    return render_balls(positions.numpy(), clip.radii.numpy(), clip.colors.numpy(), clip.size)[None]


def test_energy_is_near_zero_on_simulated_clips_and_large_on_broken_ones():
    simulated, broken = [], []
    for seed in range(6):  # bounces off walls and each other are physics: they are left out as contacts
        clip = simulate_balls(CONFIG, seed)
        energy = physics_energy(clip.color_names, CONFIG)
        simulated.append(energy(clip.video[None]).item())
        broken.append(energy(shifted(clip, [3, 4], (0.0, -1.5))).item())
    assert max(simulated) < 0.05 and all(b > 10 * s for s, b in zip(simulated, broken)), (simulated, broken)


def test_a_bounce_is_a_contact_and_a_pull_into_the_wall_is_not():
    radii, gravity = torch.tensor([[4.0]]), 0.75
    bounce = torch.tensor([[[[16.0, 20.0], [16.0, 24.0], [16.0, 27.5], [16.0, 24.5], [16.0, 22.0]]]])  # off the floor
    pulled = torch.tensor([[[[6.0, 16.0], [5.5, 16.0], [5.0, 16.0], [4.0, 16.0], [3.0, 16.0]]]])  # into the left wall
    assert contact_windows(bounce, radii, 32, gravity)[0, 0, 1]
    assert not contact_windows(pulled, radii, 32, gravity).any()


def test_gravity_the_wrong_way_costs_energy():
    clip = simulate_balls(CONFIG, 6)
    energy = physics_energy(clip.color_names, CONFIG)
    assert energy(clip.video[None].flip(-2)).item() > 10 * energy(clip.video[None]).item()


def test_interpenetration_pushes_overlapping_balls_apart():
    positions = torch.tensor([[[[10.0, 16.0]] * 8, [[14.0, 16.0]] * 8]], dtype=torch.float64)
    gradient = spacing_energy_gradient(positions, torch.ones(1, 1, 8, dtype=torch.float64),
                                       touching_distance(torch.full((1, 2), 3.0, dtype=torch.float64)))
    assert (gradient[0, 0, :, 0] > 0).all() and (gradient[0, 1, :, 0] < 0).all()  # descent moves them apart


def test_projection_puts_a_displaced_ball_back_on_its_simulated_path():
    clip = simulate_balls(CONFIG, 2)
    broken = shifted(clip, [3, 4], (0.0, -1.5))
    before, _ = object_positions(broken, clip.color_names)
    after, _ = object_positions(project_to_physics(broken, clip.color_names, CONFIG), clip.color_names)
    truth = clip.positions.transpose(0, 1)
    assert (before[0] - truth).norm(dim=-1).max() > 1.4
    assert (after[0] - truth).norm(dim=-1).max() < 0.2
    half, _ = object_positions(project_to_physics(broken, clip.color_names, CONFIG, strength=0.5), clip.color_names)
    torch.testing.assert_close(half, (before + after) / 2, atol=0.1, rtol=0)


def test_an_object_moved_off_the_floor_leaves_black_behind_it():
    video = render_balls(np.array([[[16.0, 28.0]]]), np.array([4.0]), np.array([[1.0, 0.0, 0.0]]), 32)[None]
    target = torch.tensor([[[[16.0, 20.0]]]])  # 8 px up from touching the floor
    moved = move_objects(video, ["red"], target)
    positions, _ = object_positions(moved, ["red"])
    assert (positions[0, 0, 0] - target[0, 0, 0]).norm() < 0.2
    assert moved[..., -4:, :].max() < -0.9  # no streak of the rim drawn in from beyond the frame
