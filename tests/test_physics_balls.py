"""Tests for the physics-balls dataset: dynamics, rendering, captions, determinism, DataLoader use."""

import math
import re
import time

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from kinema.data import (
    BALL_COLORS,
    CAPTION_LEVELS,
    BouncingBalls,
    BouncingBallsConfig,
    caption_for,
    clip_from_state,
    render_balls,
    simulate_balls,
    simulate_trajectories,
)
from kinema.data.physics_balls import DIRECTION_MIN_SPEED
from kinema.errors import KinemaError

CROWDED = BouncingBallsConfig(num_frames=16, min_balls=4, max_balls=4, gravity=120.0)
ELASTIC = BouncingBallsConfig(num_frames=24, min_balls=3, max_balls=4, gravity=0.0, restitution=1.0, friction=0.0)
PHRASE = re.compile(r"an? (\w+) ball (falls and bounces|falls|bounces|moves)(?: to the (left|right))?")


def _kinetic_energy(velocities: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Total kinetic energy per frame [T] with mass = r^2."""
    return 0.5 * (radii.double() ** 2 * velocities.double().pow(2).sum(-1)).sum(-1)


def _gaps(positions: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Distance between rims for every pair i < j [T, pairs]."""
    i, j = torch.triu_indices(len(radii), len(radii), offset=1)
    return (positions[:, i] - positions[:, j]).norm(dim=-1) - radii[i] - radii[j]


def test_same_seed_gives_identical_clip_and_other_seeds_differ():
    config = BouncingBallsConfig()
    a, b, c = simulate_balls(config, 7), simulate_balls(config, 7), simulate_balls(config, 8)
    assert torch.equal(a.video, b.video) and torch.equal(a.positions, b.positions) and a.caption == b.caption
    assert a.video.shape != c.video.shape or not torch.equal(a.video, c.video)
    assert a.video.shape == (3, config.num_frames, config.size, config.size) and a.video.dtype == torch.float32
    assert a.video.min() >= -1.0 and a.video.max() <= 1.0


@pytest.mark.parametrize("seed", range(12))
def test_balls_stay_inside_the_box_and_never_interpenetrate(seed):
    clip = simulate_balls(CROWDED, seed)
    r = clip.radii[:, None]
    assert (clip.positions >= r - 1e-4).all() and (clip.positions <= CROWDED.size - r + 1e-4).all()
    assert _gaps(clip.positions, clip.radii).min() > -0.005


def test_balls_in_a_clip_get_distinct_colours():
    config = BouncingBallsConfig(min_balls=4, max_balls=4)
    for seed in range(10):
        clip = simulate_balls(config, seed)
        assert len(set(clip.color_names)) == 4
        expected = torch.tensor([BALL_COLORS[name] for name in clip.color_names])
        assert torch.allclose(clip.colors, expected)


@pytest.mark.parametrize("seed", range(4))
def test_elastic_walls_and_collisions_conserve_kinetic_energy(seed):
    clip = simulate_balls(ELASTIC, seed)
    energy = _kinetic_energy(clip.velocities, clip.radii)
    assert clip.wall_hits.any()  # something happened to conserve energy through
    assert torch.allclose(energy, energy[0].expand_as(energy), rtol=1e-5)


def test_head_on_collision_conserves_momentum_and_matches_elastic_formula():
    config = BouncingBallsConfig(num_frames=6, size=64, gravity=0.0, restitution=1.0, friction=0.0)
    radii = np.array([3.0, 5.0])
    v1, v2 = 40.0, -20.0
    positions, velocities, wall_hits = simulate_trajectories(
        np.array([[20.0, 32.0], [44.0, 32.0]]), np.array([[v1, 0.0], [v2, 0.0]]), radii, config
    )
    mass = radii**2
    momentum = (mass[None, :, None] * velocities).sum(axis=1)  # [T, 2]
    np.testing.assert_allclose(momentum, np.broadcast_to(momentum[0], momentum.shape), atol=1e-9)
    m1, m2 = mass
    expected = [((m1 - m2) * v1 + 2 * m2 * v2) / (m1 + m2), ((m2 - m1) * v2 + 2 * m1 * v1) / (m1 + m2)]
    np.testing.assert_allclose(velocities[-1, :, 0], expected, rtol=1e-9)
    np.testing.assert_allclose(velocities[..., 1], 0.0, atol=1e-12)
    assert not wall_hits.any()


@pytest.mark.parametrize("restitution", [0.5, 0.8])
def test_floor_rebound_speed_is_restitution_times_impact_speed(restitution):
    g, size, radius = 200.0, 32, 3.0
    config = BouncingBallsConfig(num_frames=30, fps=30.0, gravity=g, restitution=restitution, friction=0.0)
    positions, velocities, wall_hits = simulate_trajectories(
        np.array([[16.0, 6.0]]), np.zeros((1, 2)), np.array([radius]), config
    )
    vy, height = velocities[:, 0, 1], size - radius - positions[:, 0, 1]
    k = int(np.flatnonzero((vy[:-1] > 0) & (vy[1:] < 0))[0])  # last frame before the first bounce
    impact = math.sqrt(vy[k] ** 2 + 2 * g * height[k])  # speed at the floor, from energy in free flight
    rebound = math.sqrt(vy[k + 1] ** 2 + 2 * g * height[k + 1])
    assert rebound / impact == pytest.approx(restitution, rel=1e-6)
    assert wall_hits[k + 1, 0] and not wall_hits[: k + 1].any()


def test_free_fall_follows_constant_acceleration_parabola():
    config = BouncingBallsConfig(num_frames=10, size=400, gravity=30.0, fps=8.0, substeps=3)
    x0, y0, vx, vy = 100.0, 50.0, 8.0, -10.0
    positions, velocities, _ = simulate_trajectories(
        np.array([[x0, y0]]), np.array([[vx, vy]]), np.array([4.0]), config
    )
    t = np.arange(config.num_frames) / config.fps
    np.testing.assert_allclose(positions[:, 0, 1], y0 + vy * t + 0.5 * config.gravity * t**2, atol=1e-9)
    np.testing.assert_allclose(positions[:, 0, 0], x0 + vx * t, atol=1e-9)
    np.testing.assert_allclose(velocities[:, 0, 1], vy + config.gravity * t, atol=1e-9)


@pytest.mark.parametrize("friction", [0.0, 0.3])
def test_wall_friction_decelerates_a_ball_sliding_on_the_floor_by_friction_times_gravity(friction):
    g, radius = 48.0, 4.0
    config = BouncingBallsConfig(num_frames=8, size=64, gravity=g, restitution=0.5, friction=friction)
    _, velocities, wall_hits = simulate_trajectories(
        np.array([[10.0, 64.0 - radius]]), np.array([[30.0, 0.0]]), np.array([radius]), config
    )
    t = np.arange(config.num_frames) / config.fps
    np.testing.assert_allclose(velocities[:, 0, 0], 30.0 - friction * g * t, atol=0.05 * g * t.max() * friction + 1e-9)
    assert not wall_hits.any()  # resting contact is not a bounce


def test_rendered_colour_at_each_centre_is_the_ball_colour_and_background_is_black():
    config = BouncingBallsConfig(min_balls=2, max_balls=3)
    for seed in range(5):
        clip = simulate_balls(config, seed)
        frames = torch.arange(config.num_frames)[:, None]
        x, y = clip.positions[..., 0].long(), clip.positions[..., 1].long()  # pixel containing each centre
        centre_rgb = clip.video[:, frames, y, x]  # [3, T, N]
        assert torch.allclose(centre_rgb, clip.colors.T[:, None, :] * 2 - 1, atol=1e-6)
        grid = torch.arange(config.size) + 0.5
        dist = torch.hypot(
            grid[None, None, None, :] - clip.positions[..., 0, None, None],
            grid[None, None, :, None] - clip.positions[..., 1, None, None],
        )  # [T, N, H, W]
        far = (dist > clip.radii[None, :, None, None] + 1.0).all(dim=1)
        assert torch.equal(clip.video[:, far], torch.full_like(clip.video[:, far], -1.0))


def test_antialiased_disc_covers_its_area_around_its_centre():
    for radius, centre in [(3.0, (10.3, 12.7)), (4.5, (16.0, 15.5)), (2.2, (7.9, 20.1))]:
        video = render_balls(np.array([[centre]]), np.array([radius]), np.ones((1, 3)), size=32)
        coverage = ((video[0, 0] + 1) / 2).double()  # [H, W]
        assert coverage.sum().item() == pytest.approx(math.pi * radius**2, rel=0.02)
        grid = torch.arange(32, dtype=torch.float64) + 0.5  # pixel centres
        centroid = ((coverage.sum(0) * grid).sum() / coverage.sum(), (coverage.sum(1) * grid).sum() / coverage.sum())
        assert torch.allclose(torch.stack(centroid), torch.tensor(centre, dtype=torch.float64), atol=0.02)
        assert ((coverage > 0) & (coverage < 1)).any()  # rim pixels are partial, not a hard edge


@pytest.mark.parametrize("seed", range(12))
def test_full_caption_names_every_ball_left_to_right_with_its_motion(seed):
    clip = simulate_balls(BouncingBallsConfig(max_balls=3), seed)
    caption = caption_for(clip, np.random.default_rng(0), level="full")
    phrases = PHRASE.findall(caption)
    assert " and ".join(m.group(0) for m in PHRASE.finditer(caption)) == caption
    order = torch.argsort(clip.positions[0, :, 0]).tolist()
    assert [p[0] for p in phrases] == [clip.color_names[i] for i in order]
    mean_vx = clip.velocities[:, :, 0].mean(dim=0) / clip.fps
    for (_, verb, direction), i in zip(phrases, order):
        assert ("bounces" in verb) == bool(clip.wall_hits[:, i].any())
        if abs(mean_vx[i]) >= DIRECTION_MIN_SPEED:
            assert direction == ("left" if mean_vx[i] < 0 else "right")
        else:
            assert direction == ""


def _scene(config, positions, velocities, radii, names):
    """Clip from a hand-chosen initial state."""
    args = (np.array(positions, dtype=float), np.array(velocities, dtype=float), np.array(radii, dtype=float))
    return clip_from_state(config, *args, names, np.random.default_rng(0))


def test_hand_built_scenes_get_the_expected_captions():
    rng, weightless = np.random.default_rng(0), BouncingBallsConfig(gravity=0.0)
    off_right_wall = _scene(weightless, [[26.0, 20.0]], [[40.0, 0.0]], [3.0], ["red"])
    assert caption_for(off_right_wall, rng, level="full") == "a red ball bounces to the left"
    dropped = _scene(BouncingBallsConfig(), [[20.0, 6.0]], [[-12.0, 30.0]], [3.0], ["orange"])
    assert caption_for(dropped, rng, level="full") == "an orange ball falls and bounces to the left"
    apart = _scene(weightless, [[5.0, 16.0], [27.0, 16.0]], [[-20.0, 0.0], [20.0, 0.0]], [3.0, 3.0], ["blue", "red"])
    assert caption_for(apart, rng, level="colors") == "a blue ball and a red ball bounce"
    assert caption_for(apart, rng, level="motion") == "a blue ball bounces and a red ball bounces"


def test_caption_levels_are_all_drawn_and_unknown_levels_rejected():
    clip = simulate_balls(BouncingBallsConfig(min_balls=2), 3)
    rng = np.random.default_rng(1)
    captions = {caption_for(clip, rng) for _ in range(60)}
    assert captions == {caption_for(clip, rng, level=level) for level in CAPTION_LEVELS} and len(captions) == 3
    with pytest.raises(KinemaError, match="level"):
        caption_for(clip, rng, level="poetic")


@pytest.mark.parametrize(
    "key, value", [("max_balls", 9), ("radius_range", (3.0, 16.0)), ("colors", ("red", "teal")), ("restitution", 1.5)]
)
def test_bad_config_values_raise_an_error_naming_the_key(key, value):
    with pytest.raises(KinemaError, match=key):
        BouncingBallsConfig(**{key: value})


@pytest.mark.parametrize(
    "positions, radii", [([[2.0, 16.0]], [3.0]), ([[10.0, 16.0], [14.0, 16.0]], [3.0, 3.0]), ([[10.0, 16.0]], [[3.0]])]
)
def test_invalid_initial_state_is_rejected(positions, radii):
    positions = np.array(positions)
    with pytest.raises(KinemaError, match="simulate_trajectories"):
        simulate_trajectories(positions, np.zeros_like(positions), np.array(radii), BouncingBallsConfig())


def test_dataloader_with_two_workers_returns_the_same_clips_as_indexing():
    dataset = BouncingBalls(BouncingBallsConfig(min_balls=1, max_balls=3), length=6, seed=5)
    batches = list(DataLoader(dataset, batch_size=3, num_workers=2))
    for index in range(len(dataset)):
        item, batch = dataset[index], batches[index // 3]
        for key, value in item.items():
            got = batch[key][index % 3]
            assert got == value if key == "caption" else torch.equal(got, value), key
        n = int(item["num_balls"])
        assert torch.equal(item["positions"][:, :n], dataset.clip(index).positions)
        assert (item["radii"][n:] == 0).all()
    assert not torch.equal(dataset[0]["video"], BouncingBalls(dataset.config, length=6, seed=6)[0]["video"])
    with pytest.raises(IndexError):
        dataset[6]


def test_default_clips_move_a_few_pixels_per_frame_bounce_often_and_render_fast():
    config = BouncingBallsConfig()
    start = time.perf_counter()
    clips = [simulate_balls(config, seed) for seed in range(100)]
    per_frame = (time.perf_counter() - start) / (100 * config.num_frames)
    step = torch.cat([(c.positions[1:] - c.positions[:-1]).norm(dim=-1).flatten() for c in clips])
    assert 1.0 < step.mean() < 6.0
    assert np.mean([bool(c.wall_hits.any()) for c in clips]) > 0.5
    assert per_frame < 1e-3  # simulation + rendering; about 0.1 ms on one core
