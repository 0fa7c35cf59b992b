"""Multi-object paths: crossing objects keep their radii plus a clearance margin apart (at frames and between them)
yet reach their goals, and a flock keeps its separation while alignment lines up its headings and cohesion keeps it
together."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinema.control.multi_object import avoiding_paths, flocking_paths, min_separation
from kinema.errors import KinemaError


def min_gap(spec) -> float:
    """Smallest (distance - sum of radii) over every pair of objects and every frame."""
    return min_separation(spec.positions().numpy(), np.array([o.radius for o in spec.objects]))


def test_separation_is_the_smallest_gap_between_discs_over_all_frames():
    positions = np.array([[[0.0, 0.0], [4.0, 0.0]], [[10.0, 0.0], [10.0, 0.0]], [[0.0, 30.0], [0.0, 30.0]]])
    radii = np.array([2.0, 3.0, 1.0])
    assert min_separation(positions, radii) == pytest.approx(1.0)  # frame 1: 6 apart, radii 2 + 3
    assert min_separation(positions[:, :1], radii) == pytest.approx(5.0)
    assert min_separation(positions[:1], radii[:1]) == np.inf
    positions[0, 1] = np.nan  # object 0 absent in frame 1: only frame 0 counts
    assert min_separation(positions, radii) == pytest.approx(5.0)


def test_separation_between_frames_sees_objects_that_pass_through_each_other():
    swap = np.array([[[0.0, 0.0], [10.0, 1.0]], [[10.0, 0.0], [0.0, 1.0]]])  # they cross mid-step, 0.5 px apart
    radii = np.array([1.0, 1.0])
    assert min_separation(swap, radii) == pytest.approx(np.hypot(10, 0) - 2)  # the frames alone look clear
    assert min_separation(swap, radii, between=True) == pytest.approx(0.0 - 2)
    assert min_separation(swap[:, :1], radii, between=True) == pytest.approx(8.0)


def polarisation(positions: np.ndarray) -> np.ndarray:
    """Length of the mean unit heading per frame step (1 = all move the same way)."""
    steps = np.diff(positions, axis=1)
    return np.linalg.norm((steps / np.linalg.norm(steps, axis=-1, keepdims=True)).mean(0), axis=-1)


def in_frame(spec) -> bool:
    p, radii = spec.positions().numpy(), np.array([o.radius for o in spec.objects])[:, None, None]
    return bool(np.all((p >= radii - 1e-4) & (p <= spec.size - radii + 1e-4)))


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), count=st.integers(2, 4))
def test_crossing_paths_keep_radii_plus_margin_apart_at_every_sub_step_and_reach_their_goals(seed, count):
    spec = avoiding_paths(count, 8, 32, seed=seed)
    assert spec.positions().shape == (count, 8, 2) and (spec.size, spec.num_frames) == (32, 8)
    assert min_gap(spec) >= 2.0  # the default margin at 32x32: size / 16
    fine = spec.resized(32, 7 * 16 + 1)  # 16 sub-steps per frame step, resampled as a pipeline resamples paths
    assert min_gap(fine) >= 2.0 - 1e-4 and in_frame(fine)
    p = spec.positions().numpy()
    np.testing.assert_allclose(p[:, -1], 32 - p[:, 0], atol=1e-4)  # each crosses to its mirror image
    straight = p[:, :1] + (p[:, -1:] - p[:, :1]) * np.linspace(0, 1, 8)[None, :, None]
    radii = np.array([o.radius for o in spec.objects])
    i, j = np.triu_indices(count, 1)
    straight_gap = np.linalg.norm(straight[i] - straight[j], axis=-1) - (radii[i] + radii[j])[:, None]
    assert straight_gap.min() < 0  # straight lines would collide: the avoidance did the work
    assert [o.colour for o in spec.objects] == ["red", "green", "blue", "yellow", "magenta"][:count]


@pytest.mark.parametrize("size, margin, kept", [(32, 0.0, 0.0), (32, 3.5, 3.5), (64, None, 4.0)])
def test_the_margin_is_kept_and_scales_with_the_frame(size, margin, kept):
    for seed in range(3):
        spec = avoiding_paths(3, 8, size, radius=(3.0 * size / 32, 4.5 * size / 32), seed=seed, margin=margin)
        fine = spec.resized(size, 7 * 16 + 1)
        assert kept - 1e-4 <= min_gap(fine) < kept + 1.5 and in_frame(fine)  # kept, and not by a wide detour


def test_paths_that_still_overlap_are_never_returned(monkeypatch):
    from kinema.control import multi_object

    monkeypatch.setattr(multi_object, "PENALTY_WEIGHTS", (0.0,))  # no avoidance: straight crossing lines collide
    with pytest.raises(KinemaError, match="no collision-free paths for 3 objects"):
        avoiding_paths(3, 8, 32, seed=0)


def test_a_lone_object_takes_the_straight_line_at_constant_speed():
    p = avoiding_paths(1, 8, 32, seed=3).positions().numpy()[0]
    np.testing.assert_allclose(np.diff(p, 2, axis=0), 0.0, atol=1e-3)  # least acceleration: no curve, no speed-up


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_a_flock_keeps_its_separation(seed):
    spec = flocking_paths(6, 12, 48, seed=seed)
    assert min_gap(spec) >= 0
    p = spec.positions().numpy()
    assert np.all((p >= 0) & (p <= 48))


def test_boids_steer_clear_of_the_walls():
    def at_wall(spec):  # share of (object, frame) pressed against a wall
        p, radii = spec.positions().numpy(), np.array([o.radius for o in spec.objects])[:, None, None]
        return np.mean((p - radii < 0.01) | (64 - radii - p < 0.01))

    assert np.mean([at_wall(flocking_paths(6, 16, 64, seed=s)) for s in range(6)]) < 0.01


def test_alignment_lines_up_headings_cohesion_gathers_and_separation_spaces_the_flock():
    seeds = range(6)
    aligned = [polarisation(flocking_paths(6, 16, 64, seed=s).positions().numpy()) for s in seeds]
    unaligned = [polarisation(flocking_paths(6, 16, 64, seed=s, alignment=0.0).positions().numpy()) for s in seeds]
    assert np.mean([a[-1] for a in aligned]) > 0.9 > np.mean([a[0] for a in aligned]) + 0.3
    assert np.mean([a[-1] for a in unaligned]) < 0.6

    def spread(spec):
        end = spec.positions().numpy()[:, -1]
        return np.linalg.norm(end - end.mean(0), axis=-1).mean()

    together = np.mean([spread(flocking_paths(6, 16, 64, seed=s)) for s in seeds])
    apart = np.mean([spread(flocking_paths(6, 16, 64, seed=s, cohesion=0.0)) for s in seeds])
    assert together < 0.7 * apart

    def nearest_gap(spec):  # mean gap to the nearest neighbour in the last frame
        end, radii = spec.positions().numpy()[:, -1], np.array([o.radius for o in spec.objects])
        gap = np.linalg.norm(end[:, None] - end[None], axis=-1) - (radii[:, None] + radii[None])
        np.fill_diagonal(gap, np.inf)
        return gap.min(1).mean()

    spaced = np.mean([nearest_gap(flocking_paths(6, 16, 64, seed=s)) for s in seeds])
    packed = np.mean([nearest_gap(flocking_paths(6, 16, 64, seed=s, separation=0.0)) for s in seeds])
    assert spaced > 1.0 and packed < 0.5  # separation keeps personal space; cohesion alone packs them to touching


def test_the_same_seed_gives_the_same_paths():
    a, b = avoiding_paths(3, 8, 32, seed=7), avoiding_paths(3, 8, 32, seed=7)
    assert a.positions().equal(b.positions())
    assert not a.positions().equal(avoiding_paths(3, 8, 32, seed=8).positions())


@pytest.mark.parametrize("make, message", [
    (lambda: avoiding_paths(40, 8, 32), "cannot place 40 objects"),
    (lambda: flocking_paths(3, 8, 32, radius=20.0), "radius must be in"),
    (lambda: avoiding_paths(2, 2, 32), "num_frames must be at least 3"),
    (lambda: flocking_paths(2, 1, 32), "num_frames must be at least 2"),
    (lambda: avoiding_paths(2, 8, 32, margin=-1.0), "margin must be at least 0 px, got -1.0"),
    (lambda: avoiding_paths(4, 8, 32, margin=12.0), "cannot place 4 objects of radius up to 4.0 px 12 px apart"),
])
def test_impossible_requests_are_one_line_errors(make, message):
    with pytest.raises(KinemaError, match=message):
        make()
