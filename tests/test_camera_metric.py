"""Camera motion estimated from videos and scored against the asked camera (kinema.metrics.camera)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kinema.control.camera import camera_steps
from kinema.data.camera import MOTIONS, CameraMotion, CameraMotionConfig, noise_texture, render_camera
from kinema.data.physics_balls import BALL_COLORS, render_balls
from kinema.errors import KinemaError
from kinema.metrics.camera import camera_errors, camera_scores, dominant_motion, estimate_camera

FRAMES = 6


@pytest.fixture(scope="module")
def clips() -> tuple[torch.Tensor, torch.Tensor]:
    """One camera-motion dataset clip (photographs, 32x32) per motion: videos [4, 3, T, H, W], steps [4, T-1, 4]."""
    data = CameraMotion(CameraMotionConfig(num_frames=FRAMES, size=32), length=64, seed=5)
    first = {}
    for index in range(len(data)):
        item = data[index]
        first.setdefault(int(item["label"]), item)
    items = [first[label] for label in range(len(MOTIONS))]
    return torch.stack([i["video"] for i in items]), camera_steps(torch.stack([i["camera"] for i in items]), FRAMES)


def test_estimate_camera_recovers_the_datasets_camera(clips):
    videos, asked = clips
    estimated = estimate_camera(videos)
    assert estimated.shape == asked.shape
    mean = estimated.mean(1)
    torch.testing.assert_close(mean[:, :2], asked[:, 0, :2], atol=0.25, rtol=0)  # pan, tilt px per step
    torch.testing.assert_close(mean[:, 2], asked[:, 0, 2], atol=0.01, rtol=0)  # zoom factor per step
    torch.testing.assert_close(mean[:, 3], asked[:, 0, 3], atol=0.75, rtol=0)  # roll degrees per step
    scores = camera_scores(videos, asked)
    assert scores["camera_error"].max() < 0.3
    assert scores["camera_direction"].tolist() == [1.0] * 4


def test_camera_scores_punish_the_opposite_move_and_skip_a_still_camera(clips):
    videos, asked = clips
    opposite = asked.clone()
    opposite[..., [0, 1, 3]] *= -1
    opposite[..., 2] = 1 / opposite[..., 2]
    scores = camera_scores(videos, opposite)
    assert scores["camera_error"].min() > 0.5
    assert scores["camera_direction"].tolist() == [0.0] * 4
    standing = camera_errors(asked, camera_steps(torch.zeros(4, 4), FRAMES), 32, 32)
    assert standing["camera_direction"].tolist() == [0.0] * 4  # not moving is not moving the asked way
    still = camera_scores(videos[:1], camera_steps(torch.zeros(1, 4), FRAMES))
    assert still["camera_error"][0] > 0.5 and torch.isnan(still["camera_direction"][0])
    with pytest.raises(KinemaError, match=r"\[4, 5, 4\]"):
        camera_scores(videos, asked[:, :4])
    with pytest.raises(KinemaError, match=r"T >= 2.*\(4, 3, 1, 32, 32\)"):
        estimate_camera(videos[:, :, :1])


def test_a_fast_pan_is_found_from_the_flow_fit():
    data = CameraMotion(CameraMotionConfig(num_frames=FRAMES, size=32, max_pan=4.0, motions=("pan",)), length=1,
                        seed=0)
    item = data[0]  # 2.9 px per frame over a photograph: too far for the alignment alone, from no motion
    asked = camera_steps(item["camera"][None], FRAMES)
    assert camera_scores(item["video"][None], asked)["camera_error"][0] < 0.1


def test_a_dim_low_contrast_copy_gives_the_same_estimate(clips):
    videos, _ = clips
    torch.testing.assert_close(estimate_camera(videos[:2] * 0.1 - 0.8, refine=False),
                               estimate_camera(videos[:2], refine=False), atol=1e-3, rtol=0)


def test_dominant_motion_is_the_largest_flow():
    steps = torch.tensor([[[0.3, 0.0, 1.05, 0.0]], [[0.3, -1.0, 1.0, 0.0]], [[0.2, 0.0, 1.0, -4.0]]])
    assert dominant_motion(steps, 32, 32).tolist() == [2, 1, 3]  # zoom 5% at 32 px outruns a 0.3 px pan


def test_a_moving_object_does_not_move_the_estimated_camera():
    pan = torch.tensor([1.5, 0.0, 0.0, 0.0])
    video = render_camera(noise_texture(128, np.random.default_rng(2)), (64.0, 64.0), pan, FRAMES, 32)
    for t in range(FRAMES):  # a yellow 5x5 square drifting down and left more slowly than the picture slides
        video[:, t, 4 + 2 * t : 9 + 2 * t, 20 - t : 25 - t] = torch.tensor([1.0, 0.9, 0.2])[:, None, None]
    estimated = estimate_camera(video[None])
    torch.testing.assert_close(estimated[0].mean(0), torch.tensor([1.5, 0.0, 1.0, 0.0]), atol=0.1, rtol=0)


def test_few_discs_over_black_give_the_pan_and_no_roll_they_cannot_show():
    """Flat black fits any motion: it must neither set the robust cut-off nor pull the estimate toward a still camera,
    and a lone disc, which looks the same turned, must not make up a roll."""
    texture = render_balls(np.array([[[56.0, 60.0], [66.0, 72.0], [74.0, 56.0], [24.0, 40.0]]]), np.full(4, 4.0),
                           np.array([BALL_COLORS[c] for c in ("red", "cyan", "white", "green")]), 128)[:, 0]
    pan = torch.tensor([0.0, 1.8, 0.0, 0.0])  # tilt down 1.8 px per frame: the discs slide up
    few = estimate_camera(render_camera(texture, (64.0, 64.0), pan, FRAMES, 32)[None])[0]
    torch.testing.assert_close(few.mean(0), torch.tensor([0.0, 1.8, 1.0, 0.0]), atol=0.1, rtol=0)
    lone = estimate_camera(render_camera(texture, (24.0, 36.0), pan, FRAMES, 16)[None])[0]  # the green disc alone
    torch.testing.assert_close(lone[:, 1].mean(), torch.tensor(1.8), atol=0.1, rtol=0)
    assert lone[:, 3].abs().max() < 1.0  # degrees
    pan = torch.tensor([1.5, 0.0, 0.0, 0.0])
    leaving = estimate_camera(render_camera(texture, (30.0, 40.0), pan, FRAMES, 16)[None])
    assert leaving[0, :, 3].abs().max() < 1.0  # a disc sliding out of view tells no roll either
