"""Synthetic datasets with ground truth: moving digits and camera motion over textures."""

import math

import numpy as np
import pytest
import torch

from kinema.config import load_config
from kinema.control.camera import camera_steps
from kinema.data.camera import MOTIONS, CameraMotion, CameraMotionConfig, render_camera
from kinema.data.physics_balls import BALL_COLORS
from kinema.data.digits import MovingDigits, MovingDigitsConfig
from kinema.data.registry import build_dataset
from kinema.errors import KinemaError
from kinema.metrics.camera import estimate_camera


def test_digits_are_drawn_where_the_ground_truth_says_and_bounce_off_walls():
    config = MovingDigitsConfig(num_frames=12, size=24, digit_size=8, min_digits=1, max_digits=1,
                                speed_range=(2.0, 3.0))
    dataset = MovingDigits(config, length=20, seed=0)
    bounced = 0
    for index in range(20):
        item = dataset[index]
        video, positions, velocities = item["video"], item["positions"][:, 0], item["velocities"][:, 0]
        assert video.shape == (3, 12, 24, 24) and video.min() >= -1 and video.max() <= 1
        for t in range(12):
            bright = torch.nonzero(video[0, t] > -0.5)
            x, y = np.rint(positions[t].numpy()).astype(int)
            assert bright[:, 1].min() >= x and bright[:, 1].max() < x + 8
            assert bright[:, 0].min() >= y and bright[:, 0].max() < y + 8
        assert positions.min() >= 0 and positions.max() <= 24 - 8
        steps = positions[1:] - positions[:-1]
        free = ~item["bounces"][1:, 0]
        assert torch.allclose(steps[free], velocities[:-1][free], atol=1e-4)  # constant speed between bounces
        bounced += int(item["bounces"].any())
        assert str(int(item["label"])) in item["caption"] and item["digits"][0] == item["label"]
        assert ("bounces" in item["caption"]) == bool(item["bounces"].any())
    assert bounced > 0


def blob_texture(offset=(10.0, 0.0), side=96) -> tuple[torch.Tensor, tuple[float, float]]:
    """A dark texture with one bright Gaussian blob `offset` px (x, y) from its centre."""
    centre = ((side - 1) / 2, (side - 1) / 2)
    ys, xs = torch.meshgrid(torch.arange(side).float(), torch.arange(side).float(), indexing="ij")
    blob = torch.exp(-((xs - centre[0] - offset[0]) ** 2 + (ys - centre[1] - offset[1]) ** 2) / 8)
    return (blob * 2 - 1).expand(3, -1, -1), centre


def blob_position(frame: torch.Tensor) -> tuple[float, float]:
    """Centroid (x, y) of the bright blob relative to the frame centre."""
    weight = (frame[0] + 1).clamp(min=0) ** 4
    ys, xs = torch.meshgrid(torch.arange(frame.shape[-2]).float(), torch.arange(frame.shape[-1]).float(), indexing="ij")
    centre = (frame.shape[-1] - 1) / 2
    return float((weight * xs).sum() / weight.sum() - centre), float((weight * ys).sum() / weight.sum() - centre)


@pytest.mark.parametrize("camera, expected", [
    ([2.0, 0, 0, 0], lambda t: (10 - 2 * t, 0)),  # camera pans right: the picture slides left
    ([0, 1.5, 0, 0], lambda t: (10, -1.5 * t)),  # camera tilts down: the picture slides up
    ([0, 0, math.log(1.25), 0], lambda t: (10 * 1.25**t, 0)),  # zoom in: the picture grows from the centre
    ([0, 0, 0, 30.0], lambda t: (10 * math.cos(math.radians(30 * t)), -10 * math.sin(math.radians(30 * t)))),
])
def test_camera_motion_moves_the_picture_by_its_parameters(camera, expected):
    texture, centre = blob_texture()
    video = render_camera(texture, centre, torch.tensor(camera), num_frames=4, size=64)
    for t in range(4):
        assert blob_position(video[:, t]) == pytest.approx(expected(t), abs=0.3)


def test_camera_dataset_labels_and_captions_match_the_motion():
    config = load_config(None, ["data.kind=camera", "data.num_frames=4", "data.size=16", "data.texture=noise"]).data
    dataset = build_dataset("camera", config, seed=0)
    seen = set()
    for index in range(24):
        item = dataset[index]
        motion = MOTIONS[int(item["label"])]
        speed = item["camera"][int(item["label"])].item()
        assert (item["camera"] != 0).sum() == 1 and speed != 0
        words = {"pan": ("right", "left"), "tilt": ("down", "up"), "zoom": ("in", "out"),
                 "roll": (" clockwise", "anticlockwise")}[motion]
        assert words[0 if speed > 0 else 1] in item["caption"]
        assert item["video"].shape == (3, 4, 16, 16) and item["video"].std() > 0.05
        seen.add(motion)
    assert seen == set(MOTIONS)
    photo = CameraMotion(CameraMotionConfig(num_frames=3, size=16), length=2, seed=0)[1]["video"]
    assert photo.shape == (3, 3, 16, 16)
    with pytest.raises(KinemaError, match="motions"):
        CameraMotionConfig(motions=("dolly",))


def test_disc_fields_are_palette_discs_over_black_whose_camera_the_estimator_recovers():
    data = CameraMotion(CameraMotionConfig(num_frames=4, size=32, motions=("pan", "tilt"), texture="discs"),
                        length=6, seed=0)
    items = [data[i] for i in range(6)]
    videos = (torch.stack([item["video"] for item in items]) + 1) / 2  # [N, 3, T, H, W] in [0, 1]
    pixels = videos.permute(0, 2, 3, 4, 1).reshape(-1, 3)
    assert 0.5 < (pixels.amax(dim=1) < 0.02).float().mean() < 0.97  # mostly black, never empty
    bright = pixels[pixels.amax(dim=1) > 0.98]  # inside a disc (its rim blends into black or a disc it overlaps)
    palette = torch.tensor(list(BALL_COLORS.values()))
    assert (torch.cdist(bright, palette).amin(dim=1) < 0.05).float().mean() > 0.9
    asked = camera_steps(torch.stack([item["camera"] for item in items]), 4)
    assert (estimate_camera(videos * 2 - 1) - asked)[..., :2].abs().mean() < 0.1  # px per frame


def test_camera_config_trains_with_the_trainer(tmp_path, text_encoder):
    from conftest import TINY_OVERRIDES

    from kinema.training.trainer import Trainer

    overrides = [o for o in TINY_OVERRIDES if not o.startswith("data.radius_range")]
    config = load_config(None, [*overrides, "data.kind=camera", "data.texture=noise", "train.steps=1",
                                "train.checkpoint_every=1", f"train.output_dir={tmp_path}"])
    assert Trainer(config, text_encoder=text_encoder, progress=False).train() is not None
