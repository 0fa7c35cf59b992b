"""Tests for ball detection, tracking, and the identity / physics scores of ball videos."""

import math

import numpy as np
import pytest
import torch

from kinema.data.camera import CameraMotion, CameraMotionConfig
from kinema.data.digits import MovingDigits, MovingDigitsConfig
from kinema.data.physics_balls import BALL_COLORS, BouncingBallsConfig, clip_from_state, render_balls, simulate_balls
from kinema.errors import KinemaError
from kinema.metrics import ball_scores, detect_balls, track_balls

CONFIG = BouncingBallsConfig(num_frames=12, min_balls=1, max_balls=3)
SEEDS = range(16)


@pytest.fixture(scope="module")
def clips():
    return [simulate_balls(CONFIG, seed) for seed in SEEDS]


@pytest.fixture(scope="module")
def videos(clips):
    return torch.stack([clip.video for clip in clips])


def _time_shuffled(videos: torch.Tensor, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.stack([video[:, torch.randperm(video.shape[1], generator=generator)] for video in videos])


def test_detection_recovers_simulated_centres_radii_and_colours(clips):
    for clip in clips[:6]:
        for t in (0, CONFIG.num_frames - 1):
            found = detect_balls(clip.video[:, t])
            names = [list(BALL_COLORS)[k] for k in found.labels]
            assert sorted(names) == sorted(clip.color_names)
            for centre, radius, name in zip(found.centres, found.radii, names):
                j = clip.color_names.index(name)
                assert np.abs(centre - clip.positions[t, j].numpy()).max() < 0.25
                assert abs(radius - clip.radii[j].item()) < 0.3


def test_touching_balls_of_two_colours_are_two_but_a_blotchy_ball_is_one():
    touching = render_balls(np.array([[[10.0, 16.0], [17.0, 16.0]]]), np.array([3.5, 3.5]),
                            np.array([BALL_COLORS["red"], BALL_COLORS["blue"]]), 32)[:, 0]
    assert sorted(detect_balls(touching).labels.tolist()) == sorted(list(BALL_COLORS).index(c) for c in ("red", "blue"))
    blotchy = render_balls(np.array([[[16.0, 16.0]]]), np.array([5.0]), np.array([BALL_COLORS["blue"]]), 32)[:, 0]
    blotchy[:, 14:18, 14:18] = 1.0  # a white core, as generated balls often have
    found = detect_balls(blotchy)
    assert len(found.labels) == 1 and np.abs(found.centres[0] - 16.0).max() < 0.3


def test_simulated_clips_keep_count_and_colour_identity(videos, clips):
    scores = ball_scores(videos).scores
    assert torch.equal(scores["ball_count"], torch.tensor([float(len(c.radii)) for c in clips], dtype=torch.float64))
    for name in ("count_constancy", "color_constancy", "color_persistence", "identity_persistence"):
        assert (scores[name] == 1.0).all(), name
    assert (scores["color_drift"] < 0.1).all()


def test_a_ball_that_vanishes_for_some_frames_lowers_count_and_identity_scores():
    clip = clip_from_state(CONFIG, np.array([[8.0, 8.0], [24.0, 20.0]]), np.array([[10.0, 0.0], [-10.0, 0.0]]),
                           np.array([3.5, 3.5]), ["red", "blue"], np.random.default_rng(0))
    video = clip.video.clone()
    blue_in_late_frames = (video[2] > 0.0) & (video[0] < 0.0)
    blue_in_late_frames[:8] = False
    video[:, blue_in_late_frames] = -1.0
    scores = ball_scores(torch.stack([clip.video, video])).scores
    assert scores["count_constancy"][0] == 1.0 and scores["count_constancy"][1] == pytest.approx(8 / 12)
    assert scores["identity_persistence"][1] == pytest.approx(0.5)
    assert scores["physics_plausibility"][1] < scores["physics_plausibility"][0]  # a ball may not vanish


def test_a_ball_that_changes_colour_lowers_colour_scores():
    clip = clip_from_state(CONFIG, np.array([[8.0, 8.0], [24.0, 20.0]]), np.array([[10.0, 0.0], [-10.0, 0.0]]),
                           np.array([3.5, 3.5]), ["red", "blue"], np.random.default_rng(0))
    video = clip.video.clone()
    red_from_frame_6 = video[0] > 0.0
    red_from_frame_6[:6] = False
    video[:, red_from_frame_6] = torch.tensor([-1.0, 1.0, -1.0])[:, None]  # red turns green
    scores = ball_scores(torch.stack([clip.video, video])).scores
    assert scores["color_persistence"][0] == 1.0 and scores["color_persistence"][1] < 1.0
    assert scores["color_constancy"][1] == pytest.approx(6 / 12)
    assert scores["color_drift"][1] > 0.5 > scores["color_drift"][0]
    assert scores["count_constancy"][1] == 1.0  # still two balls in every frame
    assert scores["identity_persistence"][1] == pytest.approx(0.5)


def test_physics_checker_accepts_simulator_clips_and_rejects_time_shuffled_ones(videos):
    real, shuffled = ball_scores(videos).scores, ball_scores(_time_shuffled(videos)).scores
    assert real["physics_plausibility"].mean() > 0.9
    assert shuffled["physics_plausibility"].mean() < 0.6
    assert (real["physics_plausibility"] > shuffled["physics_plausibility"]).float().mean() >= 0.8
    assert real["roughness"].mean() < 0.5 * shuffled["roughness"].mean()
    g = CONFIG.gravity / CONFIG.fps**2  # px / frame^2
    assert real["gravity"].median().item() == pytest.approx(g, abs=0.1)
    assert real["gravity_residual"].nanmean() < 0.3 < shuffled["gravity_residual"].nanmean()


def test_target_error_is_small_on_the_true_trajectory_and_measures_an_offset(videos, clips):
    positions = torch.full((len(clips), CONFIG.num_frames, CONFIG.max_balls, 2), float("nan"))
    for b, clip in enumerate(clips):
        positions[b, :, : len(clip.radii)] = clip.positions
    exact = ball_scores(videos, target_positions=positions).scores
    assert (exact["target_error"] < 0.2).all() and (exact["target_coverage"] == 1.0).all()
    shifted = ball_scores(videos, target_positions=positions + torch.tensor([2.0, 0.0])).scores
    assert shifted["target_error"].mean().item() == pytest.approx(2.0, abs=0.2)
    counts = [len(clip.radii) for clip in clips]
    padded = ball_scores(videos, target_positions=positions.nan_to_num(0.0), target_counts=counts).scores
    assert torch.allclose(padded["target_error"], exact["target_error"])


def test_empty_video_gives_nan_not_zero():
    scores = ball_scores(-torch.ones(1, 3, 6, 16, 16)).scores
    assert scores["ball_count"][0] == 0.0
    for name in ("identity_persistence", "color_persistence", "physics_plausibility", "roughness"):
        assert math.isnan(scores[name][0]), name


def test_simulated_balls_are_round_and_digit_strokes_are_not(clips):
    assert all(detect_balls(clip.video[:, t]).round.all() for clip in clips[:6] for t in (0, 5, 11))
    digits = MovingDigits(MovingDigitsConfig(num_frames=2), 2, seed=0)[0]["video"]
    assert not detect_balls(digits[:, 0]).round.any()


def test_ball_scores_do_not_apply_to_photographs_textures_or_digits(videos):
    photos = [CameraMotion(CameraMotionConfig(num_frames=12, texture=kind), 2, seed=0)[i]["video"]
              for kind in ("photo", "noise") for i in range(2)]
    digits = MovingDigits(MovingDigitsConfig(num_frames=12, size=32), 2, seed=0)[0]["video"]
    result = ball_scores(torch.stack([videos[0], *photos, digits]))
    assert result.not_applicable[0] == ""
    assert all("background" in reason for reason in result.not_applicable[1:5]), result.not_applicable
    assert "not discs" in result.not_applicable[5]
    for name, values in result.scores.items():
        assert torch.isfinite(values[0]) or name.startswith("target"), name
        assert values[1:].isnan().all(), name  # no ball count, no perfect constancy for what is not balls


def test_ball_scores_do_not_apply_to_a_frozen_clip(videos):
    frozen = videos[:2, :, :1].expand(-1, -1, CONFIG.num_frames, -1, -1)
    result = ball_scores(torch.cat([frozen, videos[:1]]))
    assert result.not_applicable == ["no ball moves", "no ball moves", ""]
    assert result.scores["count_constancy"][:2].isnan().all() and result.scores["count_constancy"][2] == 1.0
    assert result.scores["physics_plausibility"][:2].isnan().all()


def test_wrong_shapes_raise_kinema_error():
    with pytest.raises(KinemaError, match="B, 3, T, H, W"):
        ball_scores(torch.zeros(3, 4, 8, 8))
    with pytest.raises(KinemaError, match="3, T, H, W"):
        track_balls(torch.zeros(1, 4, 8, 8))


def test_two_balls_that_meet_between_frames_are_a_contact_not_a_gravity_misfit():
    """A fast ball stops a third of the way into a frame against a resting one, which leaves at its speed: at the
    next frame they are 4 px apart, beyond the stopped ball's own step plus a pixel but within the other's step."""
    config = BouncingBallsConfig(num_frames=6, size=48, max_balls=2)
    clip = clip_from_state(config, np.array([[6.0, 24.0], [20.0, 24.0]]), np.array([[48.0, 0.0], [0.0, 0.0]]),
                           np.array([3.0, 3.0]), ["red", "blue"], np.random.default_rng(0))
    gap = np.linalg.norm(clip.positions[2, 0] - clip.positions[2, 1]).item() - 6
    assert 3 < gap < 5  # the setting: met between frames 1 and 2
    scores = ball_scores(clip.video[None]).scores
    assert scores["gravity_residual"].item() < 0.3 and scores["physics_plausibility"].item() > 0.9, scores
